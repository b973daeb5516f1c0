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
import warnings
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .checks import Layout, check_choice, check_probability, check_row_counts, probabilities_warning


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
    wide = scores.double()
    if wide is scores:
        return scores.sigmoid()
    return wide.sigmoid_().to(scores.dtype)  # in place on the float64 copy: one temporary, not two


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
    """Map ranking scores (:func:`ranking_scores`) back to probabilities: ``exp`` of a log-softmax, ``sigmoid`` of a logit."""
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
    """(3, C) int64: true positives, false positives, false negatives per class, over the rows
    whose ``weight`` is nonzero (a row mask). Boolean work and int32 column sums (exact: a batch
    has fewer than 2**31 rows; ~40x faster than int64 sums of booleans on CPU), no int64 copy of
    the batch."""
    keep = weight.bool()[:, None]
    p = pred.bool() & keep
    t = target.bool() & keep
    tp = (p & t).sum(dim=0, dtype=torch.int32).long()
    return torch.stack([tp, p.sum(dim=0, dtype=torch.int32).long() - tp, t.sum(dim=0, dtype=torch.int32).long() - tp])


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


def prf_from_counts(
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


def balanced_accuracy_from_counts(tp: Tensor, pred_count: Tensor, support: Tensor, predicted_absent: str = "ignore") -> Tensor:
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


# ------------------------------------------------------- the label metrics and their functional API
# Each metric class of :mod:`video_metrics.metrics.classification` checks its options with the
# ``*_layout`` function below, counts a batch with the same update kernel and reduces its synced
# counts with the same reduction as the functional twin here does for all rows at once.

def valid_rows(layout: Layout, scores: Tensor, target: Tensor, owner: str, count_prob_like: bool = False):
    """A functional metric's rows: the free checks of :meth:`Layout.batch`, the value checks of
    :func:`prepare_rows`, and the error of a metric class's ``compute()`` (bad rows, no valid row)
    raised at once. Returns ``(scores_f32, target_safe, valid)`` in the kernels' layout."""
    s, t = layout.batch(scores, target)
    count = count_prob_like and layout.input == "logits"
    s, t, valid, bad_t, bad_s, prob_like = prepare_rows(s, t, layout.rows_task, layout.input, layout.columns,
                                                        layout.ignore_index, count_prob_like=count)
    n = int(valid.sum())
    check_row_counts(owner, layout.rules(), int(bad_t), int(bad_s), n, functional=True)
    if count and int(prob_like) == n:
        warnings.warn(probabilities_warning(owner, n, layout.task), UserWarning, stacklevel=3)
    return s, t, valid


def top_k_layout(num_classes, k, average, ignore_index, task, input) -> Layout:
    """The options of :class:`~video_metrics.metrics.TopKAccuracy` and :func:`top_k_accuracy`."""
    if task == "multilabel":
        raise ValueError("TopKAccuracy does not support task='multilabel': top-k accuracy has no single "
                         "multi-label definition. Use MeanAveragePrecision (ranking quality) or "
                         "PrecisionRecallF1(task='multilabel') (thresholded labels) instead")
    layout = Layout.of(num_classes, task, input, ignore_index, "two_class", ("multiclass", "binary"))
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive int, got {k!r}")
    if task == "binary" and k != 1:
        raise ValueError(f"`k` must be 1 for task='binary' (two classes), got {k}")
    if k > layout.num_classes:
        raise ValueError(f"`k`={k} is larger than `num_classes`={layout.num_classes}: every sample would be a hit")
    check_choice("average", average, ("micro", "macro"))
    return layout


def top_k_counts(s: Tensor, t: Tensor, valid: Tensor, k: int, num_classes: int) -> Tuple[Tensor, Tensor]:
    """``(hits, support)`` per target class, int64 (no host sync): the update of top-k accuracy.
    ``k = 1``: the first maximum is the target (ties to the lower index, as :func:`target_rank`)."""
    hit = ((argmax_lowest(s) == t) if k == 1 else (target_rank(s, t) < k)) & valid
    return scatter_count(t, hit, num_classes), scatter_count(t, valid, num_classes)


def top_k_value(hits: Tensor, support: Tensor, average: str) -> Tensor:
    """Micro: hits over rows; macro: the mean per-class hit rate over the classes with a row."""
    if average == "micro":
        return safe_div(hits.sum(), support.sum())
    return safe_div(hits, support)[support > 0].mean()


def top_k_accuracy(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, k: int = 1,
                   average: str = "micro", ignore_index: Optional[int] = None, task: str = "multiclass",
                   input: str = "logits") -> Tensor:
    """Top-k accuracy of all rows at once: the twin of :class:`~video_metrics.metrics.TopKAccuracy`
    (same options, ties to the lower class index, ``average="macro"`` over the classes present).

    >>> scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    >>> top_k_accuracy(scores, torch.tensor([1, 2, 0]), num_classes=3, input="probs")
    tensor(0.3333, dtype=torch.float64)
    >>> top_k_accuracy(scores, torch.tensor([1, 2, 0]), num_classes=3, k=2, input="probs")
    tensor(0.6667, dtype=torch.float64)
    """
    layout = top_k_layout(num_classes, k, average, ignore_index, task, input)
    s, t, valid = valid_rows(layout, scores, target, "top_k_accuracy")
    return top_k_value(*top_k_counts(s, t, valid, k, layout.columns), average)


def label_counts(s: Tensor, t: Tensor, valid: Tensor, task: str, input: str, threshold: float,
                 num_classes: int) -> Tensor:
    """``(3, C)`` int64 true positives, predicted and support per class (no host sync): from the
    top-1 prediction (multiclass) or from ``p > threshold`` (multilabel, one-label binary)."""
    if task == "multiclass":
        pred = argmax_lowest(s)
        return torch.stack([scatter_count(t, valid & (pred == t), num_classes), scatter_count(pred, valid, num_classes),
                            scatter_count(t, valid, num_classes)])
    tp, fp, fn = multilabel_counts(probabilities(s, task, input) > threshold, t, valid)
    return torch.stack([tp, tp + fp, tp + fn])


def prf_layout(num_classes, task, average, threshold, input, ignore_index, beta, zero_division) -> Layout:
    """The options of :class:`~video_metrics.metrics.PrecisionRecallF1` and :func:`precision_recall_f1`."""
    check_choice("average", average, ("macro", "micro", "weighted", "none"))
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"`beta` must be a number >= 0 (inf for recall), got {beta!r}")
    if isinstance(zero_division, bool) or not isinstance(zero_division, (int, float)) or not (
            zero_division in (0, 1) or zero_division != zero_division):
        raise ValueError(f"`zero_division` must be 0, 1 or float('nan') (as scikit-learn), got {zero_division!r}")
    check_probability("threshold", threshold)
    return Layout.of(num_classes, task, input, ignore_index)


def prf_value(counts: Tensor, rows_task: str, average: str, beta: float, zero_division: float) -> dict:
    """Precision, recall and F-beta from :func:`label_counts` (multiclass: the macro mean over the
    classes present in the targets or the predictions, as scikit-learn)."""
    tp, pc, su = counts[0], counts[1], counts[2]
    labels = (su > 0) | (pc > 0) if rows_task == "multiclass" else None
    return prf_from_counts(tp, pc, su, average, labels, float(beta), float(zero_division))


def precision_recall_f1(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, task: str = "multiclass",
                        average: str = "macro", threshold: float = 0.5, input: str = "logits",
                        ignore_index: Optional[int] = None, beta: float = 1.0, zero_division: float = 0.0) -> dict:
    """``{"precision", "recall", "f1"}`` of all rows: the twin of
    :class:`~video_metrics.metrics.PrecisionRecallF1` (multiclass: the top-1 prediction; multilabel
    and binary: ``p > threshold``; scikit-learn's ``precision_recall_fscore_support``).

    >>> scores = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    >>> out = precision_recall_f1(scores, torch.tensor([0, 0, 0, 1]), num_classes=2)
    >>> [round(float(out[k]), 4) for k in ("precision", "recall", "f1")]
    [0.75, 0.8333, 0.7333]
    """
    layout = prf_layout(num_classes, task, average, threshold, input, ignore_index, beta, zero_division)
    s, t, valid = valid_rows(layout, scores, target, "precision_recall_f1", count_prob_like=layout.rows_task != "multiclass")
    counts = label_counts(s, t, valid, layout.rows_task, input, float(threshold), layout.columns)
    return prf_value(counts, layout.rows_task, average, beta, zero_division)


def precision(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, **options) -> Tensor:
    """Precision (the options of :func:`precision_recall_f1`), the twin of :class:`~video_metrics.metrics.Precision`.

    >>> precision(torch.tensor([0.9, 0.8, 0.2]), torch.tensor([1, 0, 0]), task="binary", input="probs")
    tensor(0.5000, dtype=torch.float64)
    """
    return precision_recall_f1(scores, target, num_classes, **options)["precision"]


def recall(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, **options) -> Tensor:
    """Recall (the options of :func:`precision_recall_f1`), the twin of :class:`~video_metrics.metrics.Recall`.

    >>> recall(torch.tensor([0.9, 0.8, 0.2]), torch.tensor([1, 0, 1]), task="binary", input="probs")
    tensor(0.5000, dtype=torch.float64)
    """
    return precision_recall_f1(scores, target, num_classes, **options)["recall"]


def f1_score(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, **options) -> Tensor:
    """F-beta (``beta=1``: F1; the options of :func:`precision_recall_f1`), the twin of
    :class:`~video_metrics.metrics.F1Score`.

    >>> f1_score(torch.tensor([0.9, 0.8, 0.2]), torch.tensor([1, 0, 1]), task="binary", input="probs")
    tensor(0.5000, dtype=torch.float64)
    """
    return precision_recall_f1(scores, target, num_classes, **options)["f1"]


def balanced_layout(num_classes, predicted_absent, ignore_index, task, input) -> Layout:
    """The options of :class:`~video_metrics.metrics.BalancedAccuracy` and :func:`balanced_accuracy`."""
    check_choice("predicted_absent", predicted_absent, ("ignore", "zero"))
    if task == "multilabel":
        raise ValueError("BalancedAccuracy does not support task='multilabel' (mean class accuracy of a top-1 "
                         "prediction); use PrecisionRecallF1(task='multilabel', average='macro') for mean recall")
    return Layout.of(num_classes, task, input, ignore_index, "two_class", ("multiclass", "binary"))


def balanced_accuracy(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, predicted_absent: str = "ignore",
                      ignore_index: Optional[int] = None, task: str = "multiclass", input: str = "logits") -> Tensor:
    """Mean per-class recall of the top-1 prediction, the twin of
    :class:`~video_metrics.metrics.BalancedAccuracy` (``"ignore"``: scikit-learn's
    ``balanced_accuracy_score``; ``"zero"``: mmaction2's ``mean_class_accuracy``).

    >>> s = torch.eye(5)[[2, 2, 2, 4]]
    >>> balanced_accuracy(s, torch.tensor([2, 2, 2, 3]), num_classes=5, input="probs")
    tensor(0.5000, dtype=torch.float64)
    >>> balanced_accuracy(s, torch.tensor([2, 2, 2, 3]), num_classes=5, predicted_absent="zero", input="probs")
    tensor(0.3333, dtype=torch.float64)
    """
    layout = balanced_layout(num_classes, predicted_absent, ignore_index, task, input)
    s, t, valid = valid_rows(layout, scores, target, "balanced_accuracy")
    counts = label_counts(s, t, valid, "multiclass", input, 0.5, layout.columns)
    return balanced_accuracy_from_counts(counts[0], counts[1], counts[2], predicted_absent)


def confusion_layout(num_classes, normalize, ignore_index, task, input) -> Layout:
    """The options of :class:`~video_metrics.metrics.ConfusionMatrix` and :func:`confusion_matrix`."""
    if task == "multilabel":
        raise ValueError("ConfusionMatrix does not support task='multilabel' (one C x C matrix of top-1 "
                         "predictions); use PrecisionRecallF1(task='multilabel', average='none') for per-label counts")
    check_choice("normalize", normalize, (None, "true", "pred", "all"))
    return Layout.of(num_classes, task, input, ignore_index, "two_class", ("multiclass", "binary"))


def normalize_confusion(cm: Tensor, normalize: Optional[str]) -> Tensor:
    """int64 counts (``None``), or float64 over true classes (rows, ``"true"``), predicted classes
    (columns, ``"pred"``) or everything (``"all"``), 0 where a row or column is empty (as sklearn)."""
    if normalize is None:
        return cm.clone()
    if normalize == "true":
        return safe_div(cm, cm.sum(1, keepdim=True).expand_as(cm))
    if normalize == "pred":
        return safe_div(cm, cm.sum(0, keepdim=True).expand_as(cm))
    return safe_div(cm, cm.sum().expand_as(cm))


def top_confusions(cm: Tensor, n: int) -> list:
    """The ``n`` largest off-diagonal cells as ``(true, predicted, count)``, count > 0, largest
    first, ties in row-major order.

    >>> top_confusions(torch.tensor([[5, 2, 0], [3, 4, 2], [0, 0, 1]]), 2)
    [(1, 0, 3), (0, 1, 2)]
    """
    c = cm.shape[0]
    off = cm.clone()
    off.fill_diagonal_(0)
    flat = off.reshape(-1)
    order = torch.argsort(-flat, stable=True)[:min(int(n), flat.numel())]  # stable: row-major among ties
    return [(i // c, i % c, int(k)) for i, k in zip(order.tolist(), flat[order].tolist()) if k > 0]


def confusion_matrix(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, normalize: Optional[str] = None,
                     ignore_index: Optional[int] = None, task: str = "multiclass", input: str = "logits") -> Tensor:
    """``(C, C)`` confusion matrix of the top-1 prediction (rows true, columns predicted), the twin
    of :class:`~video_metrics.metrics.ConfusionMatrix`.

    >>> confusion_matrix(torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 0, 1]), num_classes=2)
    tensor([[1, 1],
            [1, 0]])
    """
    layout = confusion_layout(num_classes, normalize, ignore_index, task, input)
    s, t, valid = valid_rows(layout, scores, target, "confusion_matrix")
    return normalize_confusion(confusion_counts(argmax_lowest(s), t, valid, layout.columns), normalize)
