"""Label-based kernels: input normalisation, valid-row masks, top-k ranks, confusion counts,
precision/recall/F1 and balanced accuracy from counts.

Conventions (shared by every metric in the package):

* Scores are ``(N, C)`` floats of any floating dtype and are computed in fp32. Whether they are
  logits or probabilities is said by the caller (``input=``), never guessed from the values.
* Ties between class scores go to the **lower class index**, both for the argmax and for top-k,
  so top-1 accuracy always equals ``trace(confusion) / N``.
* Rows with invalid values are not dropped (that would need a data-dependent shape); they get
  weight 0 and are counted, so the caller can raise at ``compute()``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor


def prepare_rows(
    scores: Tensor,
    target: Tensor,
    task: str,
    input: str,
    num_classes: int,
    ignore_index: Optional[int] = None,
    count_prob_like: bool = True,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Validate values on the device, without a host sync.

    Returns ``(scores_f32, target_safe, valid, bad_target, bad_score, prob_like)``:

    * ``scores_f32``: fp32 scores with NaN and +-inf replaced by zeros (so that sums stay finite;
      invalid rows are left out through ``valid``);
    * ``target_safe``: int64 targets with invalid rows replaced by class 0 (so that scatter
      indices stay in range); multilabel targets become int64 ``{0,1}``;
    * ``valid``: ``(N,)`` bool, rows that may enter the state;
    * ``bad_target`` / ``bad_score``: int64 scalars, rows rejected for their label / their
      scores (NaN, inf, or for ``input="probs"`` a value outside [0, 1]). Rows whose target
      equals ``ignore_index`` are neither valid nor bad;
    * ``prob_like``: int64 scalar, valid rows that look like probabilities (every value in
      [0, 1] and, for multiclass, a sum within 1e-3 of 1); only used to warn when
      ``input="logits"`` (the input is never guessed); 0 when ``count_prob_like=False``.

    The row's min and max decide finiteness (NaN and +-inf propagate into them) and the [0, 1]
    range at once: a few passes over the batch instead of one per check.
    """
    s = scores.float()
    if s.shape[0] == 0 or s.shape[1] == 0:
        lo = hi = torch.zeros(s.shape[0], dtype=s.dtype, device=s.device)
    else:  # (amin and amax are faster than one aminmax for floats on CPU; the reverse for ints)
        lo, hi = s.amin(dim=1), s.amax(dim=1)
    count = input == "logits" and count_prob_like
    row_sum = s.sum(dim=1) if count and task == "multiclass" else None
    if task == "multiclass":
        t = target.long()
        label_ok = None
    else:
        t = target
        label_ok = multilabel_target_ok(t)
    valid, bad_target, bad_score, prob_like = check_row_values(lo, hi, t, task, input, num_classes, ignore_index,
                                                               label_ok, row_sum, count)
    if task == "multiclass":
        target_safe = torch.where(valid, t, torch.zeros_like(t))
    else:
        target_safe = torch.where(valid[:, None], t.long(), torch.zeros((), dtype=torch.long, device=t.device))
    s = s.nan_to_num(0.0, 0.0, 0.0)  # 4x cheaper than a row-masked where; invalid rows carry weight 0
    return s, target_safe, valid, bad_target, bad_score, prob_like


def multilabel_target_ok(t: Tensor) -> Tensor:
    """``(N,)`` bool: the row's multilabel target is all 0 or 1 (one ``aminmax``, no host sync)."""
    if t.dtype == torch.bool or t.shape[0] == 0 or t.shape[1] == 0:
        return torch.ones(t.shape[0], dtype=torch.bool, device=t.device)
    tlo, thi = torch.aminmax(t, dim=1)
    return (tlo >= 0) & (thi <= 1)


def check_row_values(lo: Tensor, hi: Tensor, target: Tensor, task: str, input: str, num_classes: int,
                     ignore_index: Optional[int] = None, label_ok: Optional[Tensor] = None,
                     row_sum: Optional[Tensor] = None, count_prob_like: bool = False):
    """The value checks of every row from its min ``lo`` and max ``hi`` (NaN and +-inf propagate
    into them), its target (multiclass class indices; multilabel: ``label_ok`` given) and, for
    the multiclass probabilities count, its sum. Returns ``(valid, bad_target, bad_score,
    prob_like)`` as in :func:`prepare_rows`; used per batch there and once over all kept rows by
    the exact ranking metrics."""
    in_unit = (lo >= 0) & (hi <= 1)  # False for NaN
    score_ok = in_unit if input == "probs" else torch.isfinite(lo) & torch.isfinite(hi)
    ignored = torch.zeros_like(score_ok)
    if task == "multiclass":
        in_range = (target >= 0) & (target < num_classes)
        if ignore_index is not None:
            ignored = target == ignore_index
        label_ok = in_range | ignored
        valid = in_range & score_ok & ~ignored
    else:
        valid = label_ok & score_ok
    bad_target = (~label_ok).sum()
    bad_score = (~score_ok & ~ignored).sum()
    if count_prob_like:
        like = in_unit if task != "multiclass" else in_unit & ((row_sum - 1).abs() <= 1e-3)
        prob_like = (like & valid).sum()
    else:
        prob_like = torch.zeros((), dtype=torch.long, device=lo.device)
    return valid, bad_target, bad_score, prob_like


def probabilities(scores: Tensor, task: str, input: str) -> Tensor:
    """Probabilities in the scores' dtype: softmax (multiclass) or sigmoid (multilabel) of logits,
    or the input. The sigmoid is taken in float64 and rounded: the CPU kernel of an fp32 sigmoid
    differs by an ulp between its vectorised body and its tail, so the value of an element would
    depend on where its batch starts (and results on the world size)."""
    if input == "probs":
        return scores
    if task == "multiclass":
        return scores.softmax(dim=1)
    return scores.double().sigmoid().to(scores.dtype)


def ranking_scores(scores: Tensor, task: str, input: str) -> Tensor:
    """Scores to rank samples within a class (AP, AUROC, PR curves).

    They order exactly as the probabilities do, but keep resolution where fp32 probabilities
    would underflow or saturate into spurious ties: log-softmax for multiclass logits, the raw
    logit for multilabel logits (sigmoid is monotone), the probability itself for
    ``input="probs"``. Use :func:`ranking_to_probability` to map thresholds back.
    """
    if input == "probs":
        return scores
    return log_softmax_rows(scores) if task == "multiclass" else scores


def log_softmax_rows(x: Tensor, lse: Optional[Tensor] = None) -> Tensor:
    """``x - logsumexp(x)`` per row, in ``x``'s dtype. Unlike ``log_softmax``, each value is one
    exactly rounded subtraction from the row's log-sum-exp, so a class shard of the rows, given the
    rows' log-sum-exps, reproduces it bit for bit (:mod:`video_metrics.sharded`)."""
    if lse is None:
        lse = x.logsumexp(1, keepdim=True)
    return x - lse


def rowwise_f64(fn, x: Tensor, rows: int = 256) -> Tensor:
    """``fn(x.double())`` for a row-wise ``fn`` (one value per row), a few hundred rows at a
    time: the same values, without a float64 copy of every row at once (a large fresh allocation
    is page-faulted in on every call)."""
    if x.shape[0] <= rows:
        return fn(x.double())
    return torch.cat([fn(x[i:i + rows].double()) for i in range(0, x.shape[0], rows)])


def ranking_to_probability(values: Tensor, task: str, input: str) -> Tensor:
    if input == "probs":
        return values
    return values.exp() if task == "multiclass" else values.sigmoid()


def target_rank(scores: Tensor, target: Tensor) -> Tensor:
    """Rank (0 = best) of each row's target score, ties to the lower class index.

    ``rank < k`` is "target in the top k". O(N·C) comparisons, no sort and no one-hot.
    """
    st = scores.gather(1, target[:, None])
    idx = torch.arange(scores.shape[1], device=scores.device)
    greater = (scores > st).sum(dim=1)
    tied_before = ((scores == st) & (idx[None, :] < target[:, None])).sum(dim=1)
    return greater + tied_before


def argmax_lowest(scores: Tensor) -> Tensor:
    """Argmax with ties to the lowest index: the index of the first maximum (``max(1).indices``
    guarantees it as ``argmax`` does, and is ~1.6x faster on CPU)."""
    return scores.max(dim=1).indices


def target_rank_at_compute(scores: Tensor, target: Tensor, k_max: Optional[int] = None,
                           pred: Optional[Tensor] = None) -> Tensor:
    """:func:`target_rank` for ``compute()`` (it reads values on the host): the classes scoring
    above the target's (one pass), plus the classes of lower index tied with it, counted only in
    the rows where they can matter: with ``k_max``, rows with fewer than ``k_max`` classes above
    (elsewhere the rank is only known to be ``>= k_max``, enough for every ``rank < k``,
    ``k <= k_max``); with ``pred`` (the first maximum), not in the rows where it is the target
    (rank 0). The second pass reads a copy of those rows only."""
    st = scores.gather(1, target[:, None])
    rank = (scores > st).sum(1, dtype=torch.int32).long()
    need = rank < k_max if k_max is not None else torch.ones_like(rank, dtype=torch.bool)
    if pred is not None:
        need &= pred != target
    rows = torch.nonzero(need).squeeze(1)
    if rows.numel():
        idx = torch.arange(scores.shape[1], device=scores.device)
        rank[rows] += ((scores[rows] == st[rows]) & (idx[None, :] < target[rows, None])).sum(1)
    return rank


class MulticlassRows(NamedTuple):
    """Per-row multiclass quantities of a block of rows (:func:`multiclass_rows`)."""

    pred: Tensor  #: (b,) int64, the first maximum of the prediction key
    rank: Tensor  #: (b,) int64, the target's rank in the key (ties: lower class first; ``>= k_max`` when not below it)
    conf: Optional[Tensor]  #: (b,) the predicted class's probability (the probabilities' dtype)
    nll: Optional[Tensor]  #: (b,) float64, ``-log p(target)``
    brier: Optional[Tensor]  #: (b,) float64, ``sum_c (p_c - y_c)^2``
    lse: Optional[Tensor]  #: (b,) the rows' log-sum-exp (logits only)


def logsumexp_from_max(key: Tensor, row_max: Tensor) -> Tensor:
    """Each row's log-sum-exp from its maximum (``logsumexp(1)``'s values; one exponential pass)."""
    m = row_max.masked_fill(row_max.abs() == math.inf, 0)
    return (key - m[:, None]).exp_().sum(1).log_().add_(m)


def multiclass_rows(key: Tensor, target: Tensor, probs: Optional[Tensor] = None, log_probs: Optional[Tensor] = None,
                    losses: bool = True, k_max: Optional[int] = None) -> MulticlassRows:
    """Argmax, target rank, confidence, NLL and Brier term of each row (for ``compute()``: it reads
    values on the host); one definition for the suite's levels, its class-sharded path and the
    bootstrap.

    * Logits (``probs`` None): ``key`` are the rows' logits. The max pass gives the argmax and
      the log-sum-exp (bit for bit ``key.logsumexp(1)``, without its own max pass); the NLL is
      ``lse - x_t``; the confidence, ``p_t`` and ``sum_c p_c^2`` come from ``softmax`` (the
      confidence is then the one the standalone metrics and histogram mode bin).
    * Otherwise ``key`` is the prediction key, ``probs`` the probabilities and ``log_probs`` their
      logarithms (``probs`` input; aggregated videos).

    ``losses=False``: only ``pred``, ``rank`` (and ``lse`` for logits). Squares are summed in
    float64, a few hundred rows at a time. ``k_max``: the rank is exact below it, ``>= k_max``
    otherwise (:func:`target_rank_at_compute`)."""
    lse = None
    if probs is None:
        row_max, pred = key.max(1)  # the first maximum: argmax_lowest
        lse = logsumexp_from_max(key, row_max)
        if losses:
            probs = key.softmax(1)
            log_p_t = key.gather(1, target[:, None]).squeeze(1) - lse
    else:
        pred = argmax_lowest(key)
        if losses:
            log_p_t = log_probs.gather(1, target[:, None]).squeeze(1)
    rank = target_rank_at_compute(key, target, k_max, pred)
    if not losses:
        return MulticlassRows(pred, rank, None, None, None, lse)
    conf = probs.gather(1, pred[:, None]).squeeze(1)
    p_t = probs.gather(1, target[:, None]).squeeze(1).double()
    p2 = rowwise_f64(lambda d: torch.linalg.vecdot(d, d), probs)
    return MulticlassRows(pred, rank, conf, -log_p_t.double(), p2 - 2 * p_t + 1, lse)


def scatter_count(index: Tensor, weight: Tensor, size: int) -> Tensor:
    """``bincount`` without the host sync: int64 counts of ``index`` weighted by ``weight``."""
    out = torch.zeros(size, dtype=torch.long, device=index.device)
    return out.scatter_add_(0, index.reshape(-1), weight.reshape(-1).long())


def confusion_counts(pred: Tensor, target: Tensor, weight: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 confusion counts, rows = true class, columns = predicted class."""
    flat = scatter_count(target * num_classes + pred, weight, num_classes * num_classes)
    return flat.view(num_classes, num_classes)


def multilabel_counts(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """(3, C) int64: true positives, false positives, false negatives per class."""
    w = weight.long()[:, None]
    p = pred.long()
    t = target.long()
    tp = (p * t * w).sum(dim=0)
    fp = (p * (1 - t) * w).sum(dim=0)
    fn = ((1 - p) * t * w).sum(dim=0)
    return torch.stack([tp, fp, fn])


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den with 0 where den == 0 (sklearn's ``zero_division=0``), in float64."""
    return divide(num, den, 0.0)


def divide(num: Tensor, den: Tensor, zero_division: float = 0.0) -> Tensor:
    """num / den in float64 with ``zero_division`` (0, 1 or NaN) where den == 0, as sklearn's
    ``_prf_divide``."""
    num = num.double()
    den = den.double()
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float(zero_division)))


def _nanaverage(v: Tensor, w: Tensor) -> Tensor:
    """Weighted mean over the entries with weight > 0 that are not NaN (sklearn's
    ``_nanaverage``); NaN when no such entry is left. Over the last dimension (leading dimensions:
    e.g. bootstrap replicates)."""
    use = (w > 0) & ~torch.isnan(v)
    vv = torch.where(use, v, torch.zeros_like(v))
    ww = torch.where(use, w, torch.zeros_like(w))
    mean = (vv * ww).sum(-1) / ww.sum(-1).clamp_min(1e-300)
    return torch.where(use.any(-1), mean, torch.full_like(mean, float("nan")))


def precision_recall_f1(
    tp: Tensor, pred_count: Tensor, support: Tensor, average: str, labels_mask: Optional[Tensor] = None,
    beta: float = 1.0, zero_division: float = 0.0,
) -> dict:
    """Precision, recall and F-beta from per-class counts, as sklearn's
    ``precision_recall_fscore_support``.

    ``labels_mask`` selects the classes that enter the average (sklearn uses the labels present
    in ``y_true`` or ``y_pred`` for multiclass input and every column for multilabel input).
    ``average="micro"`` pools the counts of all those classes; ``"none"`` returns per-class
    vectors. Counts may carry leading dimensions (bootstrap replicates): classes are the last. ``F_beta = (1 + beta^2) tp / ((1 + beta^2) tp + beta^2 fn + fp)`` (``beta=inf``:
    recall, ``beta=0``: precision). ``zero_division`` (0, 1 or NaN) is the value of a ratio
    whose denominator is 0 (precision: nothing predicted; recall: no support; F: neither); NaN
    values are left out of the macro/weighted mean (sklearn's ``_nanaverage``), and a weighted
    mean whose weights are all 0 falls back to the unweighted one, as sklearn.
    """
    if labels_mask is None:
        labels_mask = torch.ones_like(support, dtype=torch.bool)
    if average == "micro":
        m = labels_mask.long()
        tp, pred_count, support = (tp * m).sum(-1), (pred_count * m).sum(-1), (support * m).sum(-1)
    p = divide(tp, pred_count, zero_division)
    r = divide(tp, support, zero_division)
    beta = float(beta)
    if math.isinf(beta):
        f = r
    elif beta == 0:
        f = p
    else:
        b2 = beta * beta
        f = divide((1 + b2) * tp.double(), b2 * support.double() + pred_count.double(), zero_division)
    if average in ("micro", "none"):
        return {"precision": p, "recall": r, "f1": f}
    if average == "macro":
        w = labels_mask.double()
    elif average == "weighted":
        w = support.double() * labels_mask.double()
        w = torch.where((w > 0).any(-1, keepdim=True), w, labels_mask.double().expand_as(w))
    else:  # pragma: no cover - checked by the callers
        raise ValueError(f"unknown average {average!r}")
    return {"precision": _nanaverage(p, w), "recall": _nanaverage(r, w), "f1": _nanaverage(f, w)}


def balanced_accuracy(tp: Tensor, pred_count: Tensor, support: Tensor, predicted_absent: str = "ignore") -> Tensor:
    """Mean per-class recall.

    ``"ignore"``: over the classes present in the targets (sklearn ``balanced_accuracy_score``).
    ``"zero"``: over the classes present in the targets **or** the predictions; a class that is
    predicted but never a target counts 0 (mmaction2 ``mean_class_accuracy``).
    """
    present = support > 0
    if predicted_absent == "zero":
        present = present | (pred_count > 0)
    recall = torch.where(present, safe_div(tp, support), torch.zeros((), dtype=torch.float64, device=tp.device))
    n = present.sum(-1)
    # over the last dimension; leading dimensions (bootstrap replicates) are kept
    return torch.where(n > 0, recall.sum(-1) / n.clamp_min(1), torch.full(n.shape, float("nan"), dtype=torch.float64, device=tp.device))


def binary_losses(y: Tensor, p: Tensor, logit: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Per-row binary cross-entropy and Brier score of P(y=1) in float64: from the logit when
    there is one (``softplus(-x)`` or ``softplus(x)``: no saturation), else from ``p`` (a
    probability of exactly 1 or 0 on the true side costs 0, on the wrong side ``inf``)."""
    if logit is not None:
        x = logit.double()
        nll = torch.nn.functional.softplus(torch.where(y, -x, x))
    else:
        pd = p.double()
        nll = -torch.where(y, pd.clamp_min(1e-300).log(), torch.log1p(-pd))
    return nll, (p.double() - y.double()) ** 2


def threshold_hist(probs: Tensor, positive: Tensor, num_thresholds: int) -> Tensor:
    """``(C, T, 2)`` int64 counts of positives and negatives per class and probability bucket
    ``[t/(T-1), (t+1)/(T-1))``: one scatter-add, summable over row blocks."""
    n, c = probs.shape
    t = int(num_thresholds)
    b = (probs.double().clamp(0, 1) * (t - 1)).floor().long().clamp_(0, t - 1)
    flat = (torch.arange(c, device=probs.device) * (2 * t))[None, :] + b * 2 + (~positive).long()
    hist = torch.zeros(c * t * 2, dtype=torch.int64, device=probs.device)
    hist.scatter_add_(0, flat.reshape(-1), torch.ones((), dtype=torch.int64, device=probs.device).expand(n * c))
    return hist.view(c, t, 2)


def counts_from_threshold_hist(hist: Tensor) -> Tensor:
    """``(C, T, 4)`` ``tp, fp, tn, fn`` when predicting positive for ``p >= t/(T-1)``."""
    at_least = hist.flip(1).cumsum(1).flip(1)  # [:, k] = count with bucket >= k, i.e. p >= k/(T-1)
    tp, fp = at_least[..., 0], at_least[..., 1]
    npos, nneg = tp[:, :1], fp[:, :1]
    return torch.stack([tp, fp, nneg - fp, npos - tp], dim=2)


def threshold_counts(probs: Tensor, positive: Tensor, num_thresholds: int) -> Tensor:
    """``(C, T, 4)`` int64 ``tp, fp, tn, fn`` per class when predicting positive for
    ``p >= t / (T - 1)``, ``t = 0..T-1``. One scatter-add histogram per class and a reverse
    cumulative sum: O(N*C + C*T), no (N, C, T) tensor."""
    return counts_from_threshold_hist(threshold_hist(probs, positive, num_thresholds))
