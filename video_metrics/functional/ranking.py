"""Exact ranking metrics (AP, AUROC, PR curves) for all classes at once.

One kernel serves every class: each (sample, class) score becomes an int64 key
``class << 33 | order(score) << 1 | label`` where ``order`` is an order-preserving map of the
fp32 bit pattern. A single *values-only* sort of the flat keys then yields, for every class, the
samples in score order together with their labels; ties (equal scores) are grouped exactly as
scikit-learn's ``_binary_clf_curve`` groups them. The sort is NumPy's on CPU (it is ~7x faster
than ``torch.sort``, which always builds indices) and ``torch.sort`` on other devices. There is
no Python loop over classes and no per-class host sync.

Definitions (scikit-learn's, for each class with P positives and Nn negatives among N rows):

* step AP (``average_precision_score``): ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds
  in decreasing order;
* interpolated AP (VOC 2010+, ActivityNet): precision replaced by its running maximum from the
  right (the precision envelope) before the same sum;
* VOC 11-point AP (VOC 2007): mean over recall levels 0, 0.1, ..., 1 of the envelope at the first
  point reaching that recall;
* AUROC (``roc_auc_score``): trapezoidal area under (FPR, TPR) through all distinct thresholds,
  i.e. the Mann-Whitney statistic with ties counted one half.

A class with P = 0 has no AP; a class with P = 0 or Nn = 0 has no AUROC: those entries are NaN
and ``defined`` is False. What to do with them (skip/nan/zero) is decided by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

_LABEL_BITS = 1
_SCORE_BITS = 32


def order_keys(scores: Tensor) -> Tensor:
    """Map fp32 values to int64 keys in [0, 2**32) with the same order (and -0.0 == +0.0)."""
    s = scores.float() + 0.0  # folds -0.0 into +0.0
    bits = s.view(torch.int32).to(torch.int64)
    flipped = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return flipped + 2**31


@dataclass
class RankingCurves:
    """Per-class operating points at each distinct threshold, flattened over classes.

    Points of class ``c`` are ``slice(offsets[c], offsets[c+1])``, in decreasing score order.
    """

    cls: Tensor  # (M,) int64 class of each point
    tp: Tensor  # (M,) int64 true positives at or above the threshold
    fp: Tensor  # (M,) int64 false positives at or above the threshold
    key: Tensor  # (M,) int64 order key of the threshold score
    first: Tensor  # (M,) bool, first point of its class
    positives: Tensor  # (C,) int64
    negatives: Tensor  # (C,) int64
    offsets: Tensor  # (C+1,) int64


def ranking_curves(scores: Tensor, positive: Tensor) -> RankingCurves:
    """Operating points of every class. ``scores`` (N, C) finite floats, ``positive`` (N, C) bool."""
    n, c = scores.shape
    device = scores.device
    if c >= 2**30:
        raise ValueError("ranking_curves supports fewer than 2**30 classes")
    cls = torch.arange(c, device=device, dtype=torch.int64)
    # ascending sort of these keys = classes ascending, scores descending within a class
    inv_order = (2**_SCORE_BITS - 1) - order_keys(scores.T)
    keys = (cls[:, None] << (_SCORE_BITS + _LABEL_BITS)) | (inv_order << _LABEL_BITS) | positive.T.long()
    srt = _sort_rows(keys.reshape(-1))
    lab = srt & 1
    sk = srt >> _LABEL_BITS  # class and score: equal => same threshold group
    m = srt.numel()
    ar = torch.arange(m, device=device)
    cum = torch.cumsum(lab, 0)
    if n > 0:
        block_start_cum = torch.cat([cum.new_zeros(1), cum[n - 1 : m - 1 : n]])
        tp_all = cum - block_start_cum[ar // n]
        fp_all = ar % n + 1 - tp_all
        positives = tp_all[n - 1 :: n].clone()
    else:
        tp_all = fp_all = cum
        positives = torch.zeros(c, dtype=torch.long, device=device)
    end = torch.ones(m, dtype=torch.bool, device=device)
    if m > 1:
        end[:-1] = sk[:-1] != sk[1:]
    idx = torch.nonzero(end).squeeze(1)
    pcls = sk[idx] >> _SCORE_BITS
    first = torch.ones(idx.numel(), dtype=torch.bool, device=device)
    if idx.numel() > 1:
        first[1:] = pcls[1:] != pcls[:-1]
    counts = torch.zeros(c, dtype=torch.long, device=device).index_add_(0, pcls, torch.ones_like(pcls))
    offsets = torch.zeros(c + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    key = (2**_SCORE_BITS - 1) - (sk[idx] & (2**_SCORE_BITS - 1))
    return RankingCurves(
        cls=pcls, tp=tp_all[idx], fp=fp_all[idx], key=key, first=first,
        positives=positives, negatives=n - positives, offsets=offsets,
    )


def _prev(x: Tensor, first: Tensor) -> Tensor:
    """Value at the previous point of the same class (0 before the first point)."""
    p = torch.roll(x, 1)
    return torch.where(first, torch.zeros_like(x), p)


def _per_class_sum(values: Tensor, cls: Tensor, c: int) -> Tensor:
    return torch.zeros(c, dtype=values.dtype, device=values.device).index_add_(0, cls, values)


def _envelope(precision: Tensor, curves: RankingCurves) -> Tensor:
    """Running max of precision from the right within each class (the VOC precision envelope)."""
    # reversed, the layout is classes descending; an offset growing with the reversed position of
    # the class keeps one global cummax from crossing a class boundary (precision is in [0, 1]).
    offset = 2.0 * (curves.positives.numel() - 1 - curves.cls).double()
    rev = (precision + offset).flip(0)
    env = torch.cummax(rev, 0).values.flip(0) - offset
    return env


def curves_average_precision(curves: RankingCurves, mode: str = "step") -> Tensor:
    """(C,) float64 AP per class; NaN where a class has no positive."""
    c = curves.positives.numel()
    pos = curves.positives.double()
    tp = curves.tp.double()
    prec = tp / (curves.tp + curves.fp).double()
    d_tp = (curves.tp - _prev(curves.tp, curves.first)).double()
    if mode == "step":
        ap = _per_class_sum(d_tp * prec, curves.cls, c) / pos
    elif mode == "interpolated":
        ap = _per_class_sum(d_tp * _envelope(prec, curves), curves.cls, c) / pos
    elif mode == "voc11":
        env = _envelope(prec, curves)
        recall = tp / pos[curves.cls].clamp_min(1)
        levels = torch.arange(11, dtype=torch.float64, device=tp.device) / 10
        # recall is non-decreasing within a class: add 2*class so that it is sorted globally
        flat = recall + 2.0 * curves.cls.double()
        queries = (levels[None, :] + 2.0 * torch.arange(c, device=tp.device, dtype=torch.float64)[:, None])
        hit = torch.searchsorted(flat.contiguous(), queries.reshape(-1).contiguous())
        inside = hit < curves.offsets[1:].repeat_interleave(11)
        vals = torch.where(inside, env[hit.clamp_max(max(env.numel() - 1, 0))], torch.zeros_like(queries.reshape(-1)))
        ap = vals.view(c, 11).mean(1)
    else:
        raise ValueError(f"`ap_mode` must be one of ('step', 'interpolated', 'voc11'), got {mode!r}")
    return torch.where(curves.positives > 0, ap, torch.full_like(ap, float("nan")))


@dataclass
class PRCurveData:
    """Per-class precision-recall curves, as ``sklearn.metrics.precision_recall_curve``.

    ``precision[c]``, ``recall[c]`` have one more entry than ``thresholds[c]``: the curve ends at
    (recall 0, precision 1); thresholds increase, recall decreases. Thresholds are in
    probability space. A class with no positive gets recall 1 everywhere (sklearn's choice).

    >>> import torch
    >>> from video_metrics.functional import pr_curve
    >>> curve = pr_curve(torch.tensor([0.9, 0.6, 0.1]), torch.tensor([1, 0, 1]), task="binary", input="probs")
    >>> [round(t, 2) for t in curve.thresholds[0].tolist()]
    [0.1, 0.6, 0.9]
    """

    precision: List[Tensor]
    recall: List[Tensor]
    thresholds: List[Tensor]


def key_to_value(key: Tensor) -> Tensor:
    """Inverse of :func:`order_keys`: int64 keys back to fp32 values."""
    k = key - 2**31
    bits = torch.where(k < 0, k ^ 0x7FFFFFFF, k).to(torch.int32)
    return bits.view(torch.float32)


def pr_curves(curves: RankingCurves, to_probability=None) -> PRCurveData:
    """Per-class precision-recall curves from the ranking curves, in scikit-learn's layout (``to_probability``: maps thresholds)."""
    tp = curves.tp.double()
    prec = tp / (curves.tp + curves.fp).double()
    pos = curves.positives.double()[curves.cls]
    recall = torch.where(pos > 0, tp / pos.clamp_min(1), torch.ones_like(tp))
    thr = key_to_value(curves.key)
    if to_probability is not None:
        thr = to_probability(thr)
    sizes = (curves.offsets[1:] - curves.offsets[:-1]).tolist()
    one = torch.ones(1, dtype=torch.float64, device=tp.device)
    zero = torch.zeros(1, dtype=torch.float64, device=tp.device)
    ps = torch.split(prec, sizes)
    rs = torch.split(recall, sizes)
    ts = torch.split(thr, sizes)
    return PRCurveData(
        precision=[torch.cat([p.flip(0), one]) for p in ps],
        recall=[torch.cat([r.flip(0), zero]) for r in rs],
        thresholds=[t.flip(0) for t in ts],
    )


def reduce_classes(
    values: Tensor, defined: Tensor, average: str, empty_class: str, weights: Optional[Tensor] = None
) -> Tensor:
    """Reduce a per-class value vector under an empty-class policy.

    ``empty_class``: ``"skip"`` leaves undefined classes out of the mean (the Charades
    convention); ``"nan"`` makes the mean NaN if any class is undefined (sklearn's behaviour for
    AUROC); ``"zero"`` counts them as 0 (torchmetrics' behaviour, sklearn's multilabel AP).
    ``average="none"`` returns the vector with undefined entries NaN (``skip``/``nan``) or 0
    (``zero``). ``weights`` (``average="weighted"``: the positives per class) weight the mean.

    When nothing is left to average (every class undefined under ``skip``, or all weights 0 —
    e.g. weighted AP with no positive at all), the result is NaN, except under ``"zero"``, where
    it is 0 (sklearn's ``average_precision_score(average="weighted")`` returns 0 there).
    """
    v = values.double()
    if empty_class == "zero":
        v = torch.where(defined, v, torch.zeros_like(v))
    if average == "none":
        return v
    # over the last dimension; leading dimensions (bootstrap replicates) are kept
    use = torch.ones_like(defined) if empty_class == "zero" else defined
    w = use.double() if weights is None else weights.double() * use.double()
    den = w.sum(-1)
    vv = torch.where(use, v, torch.zeros_like(v))
    out = (vv * w).sum(-1) / den.clamp_min(1e-300)
    fill = 0.0 if empty_class == "zero" else float("nan")
    out = torch.where(den > 0, out, torch.full_like(out, fill))
    if empty_class == "nan":
        out = torch.where(defined.all(-1), out, torch.full_like(out, float("nan")))
    return out


def reduce_pooled(value: Tensor, defined, empty_class: str) -> Tensor:
    """``average="micro"``: the pooled (sample, class) pairs form one ranking; when it is
    undefined (no positive pair; for AUROC also no negative pair) the result is 0 under
    ``empty_class="zero"`` (sklearn) and NaN otherwise. ``defined``: a bool, or a bool tensor
    shaped like ``value`` (bootstrap replicates)."""
    value = value.double()
    fill = torch.full_like(value, 0.0 if empty_class == "zero" else float("nan"))
    if isinstance(defined, Tensor):
        return torch.where(defined, value, fill)
    return value if defined else fill


def per_row_ap_auroc(scores: Tensor, positive: Tensor):
    """Step AP and AUROC of each **row** (a sample ranking its labels), for ``average="samples"``.

    Same definitions as :func:`exact_ap_auroc`, applied along dimension 1 with static shapes and
    no host sync (one sort of the rows, one of the positives, three batched ``searchsorted``), so
    it runs inside ``update()``. Returns ``(ap, auroc, ap_defined, auroc_defined)`` per row: AP
    needs a positive label, AUROC a positive and a negative one.
    """
    n, c = scores.shape
    x = scores.float().contiguous()
    inf = torch.full((), float("inf"), dtype=x.dtype, device=x.device)
    srt = torch.sort(x, dim=1).values
    pos_sorted = torch.sort(torch.where(positive, x, inf), dim=1).values
    lt = torch.searchsorted(srt, x, right=False)
    le = torch.searchsorted(srt, x, right=True)
    lt_pos = torch.searchsorted(pos_sorted, x, right=False)
    p = positive.sum(1)
    prec = (p[:, None] - lt_pos).double() / (c - lt).clamp_min(1).double()
    ap = torch.where(positive, prec, torch.zeros_like(prec)).sum(1) / p.clamp_min(1).double()
    ranks2 = torch.where(positive, lt + le, torch.zeros_like(lt)).sum(1)
    neg = c - p
    den = 2 * p * neg
    auc = (ranks2 - p * p).double() / den.clamp_min(1).double()
    return ap, auc, p > 0, den > 0


def copy_transposed(dst: Tensor, src: Tensor, tile: int = 1024) -> Tensor:
    """``dst.copy_(src.T)`` for a ``(C, b)`` destination (e.g. a column slice of a ``(C, N)``
    matrix) from ``(b, C)`` rows, ``tile`` rows at a time: each tile's transposed write stays in
    cache (~3.5x faster on CPU than one strided copy of the whole block)."""
    if src.device.type != "cpu":
        return dst.copy_(src.T)
    for i in range(0, src.shape[0], tile):
        dst[:, i:i + tile].copy_(src[i:i + tile].T)
    return dst


def sub_transposed(dst: Tensor, src: Tensor, row_values: Tensor, tile: int = 1024) -> Tensor:
    """``dst.copy_(src.T - row_values)`` (``row_values`` one per row of ``src``) in one pass, tile by
    tile as :func:`copy_transposed`: e.g. log-probabilities ``x - logsumexp(x)`` written straight
    into a ``(C, N)`` ranking matrix, with the same values as the subtraction in row layout."""
    if src.device.type != "cpu":
        return torch.sub(src.T, row_values[None, :], out=dst)
    for i in range(0, src.shape[0], tile):
        j = min(src.shape[0], i + tile)
        torch.sub(src[i:j].T, row_values[None, i:j], out=dst[:, i:j])
    return dst


def transpose_rows(chunks, num_classes: int, fn=None, block: int = 4096) -> Tensor:
    """The ``(C, N)`` contiguous transpose of row chunks ``(n_i, C)`` stacked, each chunk first
    mapped by ``fn`` (a row-wise function, e.g. log-softmax). One cache-sized transposed copy per
    chunk (a large chunk is cut into ``block`` rows): on CPU ~3x faster than ``cat`` then
    ``.T.contiguous()``, and no ``(N, C)`` temporary beyond one block."""
    parts = []
    for x in chunks:
        parts.extend(x.split(block) if x.shape[0] > block else [x])
    if not parts:
        return torch.zeros((num_classes, 0), dtype=torch.float32)
    n = sum(x.shape[0] for x in parts)
    out = None
    off = 0
    for x in parts:
        y = fn(x) if fn is not None else x
        if out is None:
            out = torch.empty((num_classes, n), dtype=y.dtype, device=y.device)
        b = y.shape[0]
        copy_transposed(out[:, off:off + b], y)
        off += b
    return out


_POOL = None  # (pid, executor, workers): a pool made before a fork has no threads in the child


def _pool(threads: int):
    """This process's thread pool for row sorts and searches (re-made after a fork, where the
    parent's worker threads do not exist and a submitted job would wait forever)."""
    global _POOL
    import os
    from concurrent.futures import ThreadPoolExecutor

    pid = os.getpid()
    if _POOL is None or _POOL[0] != pid or _POOL[2] < threads:
        _POOL = (pid, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="video_metrics_sort"), threads)
    return _POOL[1]


def _split_rows(n_rows: int, threads: int, work) -> None:
    """Run ``work(lo, hi)`` over ``threads`` consecutive row ranges in this process's pool."""
    bounds = [round(i * n_rows / threads) for i in range(threads + 1)]
    pool = _pool(threads)
    for job in [pool.submit(work, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]:
        job.result()


def _sort_rows(x: Tensor, inplace: bool = False) -> Tensor:
    """Values-only ascending sort along the last dimension: NumPy's on CPU (its AVX-512 sort is
    ~7x faster than ``torch.sort``, which always builds indices), with the rows split over
    ``torch.get_num_threads()`` threads when there is enough work (NumPy releases the GIL while
    sorting); ``torch.sort`` elsewhere. ``inplace=True`` sorts ``x`` itself (CPU)."""
    if x.device.type != "cpu":
        return torch.sort(x, dim=-1).values
    a = x.contiguous().numpy()
    if not inplace or not x.is_contiguous():
        a = a.copy()
    threads = max(1, min(torch.get_num_threads(), a.shape[0] if a.ndim > 1 else 1))
    if threads > 1 and a.size >= 2**18:
        _split_rows(a.shape[0], threads, lambda lo, hi: a[lo:hi].sort(axis=-1))
    else:
        a.sort(axis=-1)
    return torch.from_numpy(a)


def _searchsorted_rows(srt: Tensor, q: Tensor) -> Tensor:
    """``torch.searchsorted(srt, q)`` (left). On CPU with many queries per row (multilabel: ~5 %
    of the rows are positives), NumPy's per-row search with sorted queries, rows split over
    torch's threads, is ~1.6x faster; with few queries per row torch's batched search wins."""
    threads = torch.get_num_threads()
    if srt.device.type != "cpu" or threads < 2 or q.shape[-1] < 256 or srt.numel() < 2**18 or srt.dim() != 2:
        return torch.searchsorted(srt, q, right=False)
    a, b = srt.contiguous().numpy(), q.contiguous().numpy()
    out = np.empty(b.shape, dtype=np.int64)

    def rows(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            out[i] = np.searchsorted(a[i], b[i])

    _split_rows(a.shape[0], threads, rows)
    return torch.from_numpy(out)


def _count_le(srt: Tensor, q: Tensor, lt: Tensor, mask: Tensor, max_steps: int = 8) -> Tensor:
    """``searchsorted(srt, q, right=True)`` given ``lt = searchsorted(srt, q)`` where each real
    query occurs in its row: walk over the run of values equal to ``q`` (usually of length 1;
    a few gathers of the queries' neighbours), and fall back to the second search when some run
    is longer than ``max_steps``."""
    n = srt.shape[1]
    le = lt + 1
    for step in range(1, max_steps + 1):
        idx = lt + step
        more = mask & (idx < n)
        more = more & (srt.gather(1, idx.clamp_max(max(n - 1, 0))) == q)
        if not bool(more.any()):
            return le
        le = le + more.long()
    return torch.searchsorted(srt, q, right=True)


def exact_ap_auroc(scores: Optional[Tensor], positive: Optional[Tensor] = None, target: Optional[Tensor] = None,
                   scores_t: Optional[Tensor] = None, overwrite: bool = False,
                   pos_index: Optional[Tuple[Tensor, Tensor]] = None):
    """Step AP and AUROC of every class from one values-only sort per class.

    For a class with P positives among N rows, with ``lt(s)``/``le(s)`` the number of rows
    scoring below / at most ``s`` and ``lt_pos(s)`` the positives scoring below ``s``:

    * ``AP = (1/P) * sum_{positives} (P - lt_pos(s)) / (N - lt(s))`` — each positive contributes
      the precision at its own (tie-grouped) threshold, which is sklearn's step AP;
    * ``AUROC = (sum_{positives} (lt(s) + le(s)) - P**2) / (2 P (N - P))`` — the Mann-Whitney
      statistic with ties counted one half (mid-ranks), which is sklearn's trapezoidal AUROC.

    ``lt`` comes from one batched ``searchsorted`` of the positives' scores into the sorted rows;
    ``le`` from the run of equal values that follows (a few steps of comparisons, then a search); ``lt_pos`` from the
    positives' own sorted order.

    Positives are given as a (N, C) bool matrix ``positive``, or, for multiclass one-vs-rest, as
    class indices ``target`` (N,), or as ``pos_index = (class, row)`` int64 vectors sorted by
    class. ``scores_t`` may give the scores already transposed, ``(C, N)``
    contiguous (then ``scores`` may be None); ``overwrite=True`` lets the kernel sort ``scores_t``
    in place (a temporary of the caller's). Only the positives are searched, so the cost is one
    sort of the (C, N) scores plus O(nnz log N). Returns ``(ap, auroc, positives)``; undefined
    entries are NaN.
    """
    if scores_t is None:
        scores_t = scores.T
    c, n = scores_t.shape
    device = scores_t.device
    dtype = torch.float64 if scores_t.dtype == torch.float64 else torch.float32  # video-level scores stay fp64
    st = scores_t.to(dtype).contiguous()  # -0.0 == +0.0 for sort and searchsorted: no folding needed
    if pos_index is not None:
        cls, sample = pos_index
    elif target is not None:
        order = torch.argsort(target, stable=True)
        cls, sample = target[order], order
    else:
        row, col = torch.nonzero(positive, as_tuple=True)  # row-major: sort by (class, row) below
        if device.type == "cpu" and row.numel():
            key = torch.from_numpy(np.sort((col * max(n, 1) + row).numpy()))
        else:
            key = torch.sort(col * max(n, 1) + row).values
        cls, sample = key // max(n, 1), key % max(n, 1)
    positives = torch.zeros(c, dtype=torch.long, device=device).index_add_(0, cls, torch.ones_like(cls))
    k = int(positives.max()) if c > 0 and n > 0 else 0
    nan = torch.full((c,), float("nan"), dtype=torch.float64, device=device)
    if k == 0:
        return nan, nan.clone(), positives
    offsets = torch.cumsum(positives, 0) - positives
    rank = torch.arange(cls.numel(), device=device) - offsets[cls]
    q = torch.full((c, k), float("inf"), dtype=dtype, device=device)
    q[cls, rank] = st[cls, sample]
    # the sums below do not depend on the order of the positives: sort them, so that the
    # positives scoring below one are its index in the row, back to the start of its tie group
    q = _sort_rows(q, inplace=True)  # padding (inf) last
    srt = _sort_rows(st, inplace=overwrite or st.data_ptr() != scores_t.data_ptr())  # st is not used after this
    lt = _searchsorted_rows(srt, q)
    mask = torch.arange(k, device=device)[None, :] < positives[:, None]
    le = _count_le(srt, q, lt, mask)
    j = torch.arange(k, device=device).expand(c, k)
    group_start = torch.ones((c, k), dtype=torch.bool, device=device)
    group_start[:, 1:] = q[:, 1:] != q[:, :-1]
    lt_pos = torch.where(group_start, j, torch.zeros_like(j)).cummax(1).values
    p = positives.double()
    prec = (p[:, None] - lt_pos.double()) / (n - lt).double().clamp_min(1)
    ap = torch.where(mask, prec, torch.zeros_like(prec)).sum(1) / p.clamp_min(1)
    ranks2 = torch.where(mask, lt + le, torch.zeros_like(lt)).sum(1)
    neg = n - positives
    den = 2 * positives * neg
    auc = (ranks2 - positives * positives).double() / den.clamp_min(1).double()
    ap = torch.where(positives > 0, ap, nan)
    auc = torch.where(den > 0, auc, nan)
    return ap, auc, positives


def sorted_values(x: Tensor, inplace: bool = False) -> Tensor:
    """The values of ``x`` (any shape) as one ascending 1-D tensor (NumPy's sort on CPU, see
    :func:`_sort_rows`); ``inplace=True`` sorts a contiguous ``x``'s own memory (CPU).

    >>> sorted_values(torch.tensor([[0.5, -1.0], [2.0, 0.0]]))
    tensor([-1.0000,  0.0000,  0.5000,  2.0000])
    """
    return _sort_rows(x.reshape(1, -1), inplace=inplace and x.is_contiguous())[0]


def pooled_ap(blocks: Iterable[Tensor], positive_scores: Tensor, total: int):
    """Step AP of every (sample, class) pair pooled into one ranking (``average="micro"``),
    without sorting all pairs at once: ``blocks`` are score blocks that together hold every pair
    once (e.g. class blocks of a ``(C, N)`` matrix), ``positive_scores`` the scores of the
    positive pairs, ``total`` the number of pairs. Each block is sorted flat and searched by the
    sorted positives; the counts of pairs below each positive add up over blocks (sklearn's
    tie-grouped step AP, as :func:`exact_ap_auroc`). Returns ``(ap, precision, recall)`` where the
    curve has one point per distinct positive score (descending recall) and ends at (0, 1)."""
    q = sorted_values(positive_scores)
    return pooled_ap_from_counts(q, pooled_counts(blocks, q), total)


def pooled_counts(blocks: Iterable[Tensor], q: Tensor, inplace: bool = False) -> Tensor:
    """For sorted positive scores ``q``: the number of pairs in ``blocks`` scoring below each (the
    counts of several disjoint sets of blocks add up: class shards on several processes).
    ``inplace=True``: each block (of ``q``'s dtype, contiguous) is sorted in its own memory, which
    the caller no longer reads (no copy of the block)."""
    lt = torch.zeros(q.numel(), dtype=torch.long, device=q.device)
    if q.numel() == 0:
        return lt
    for blk in blocks:
        if blk.numel() == 0:
            continue
        own = inplace and blk.dtype == q.dtype
        flat = sorted_values(blk if own else blk.to(q.dtype), inplace=own)
        lt += torch.searchsorted(flat, q, right=False)
    return lt


def pooled_ap_from_counts(q: Tensor, lt: Tensor, total: int):
    """:func:`pooled_ap` from the sorted positive scores and the pairs below each."""
    p = q.numel()
    dev = q.device
    if p == 0:
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=dev)
        return nan, torch.ones(1, dtype=torch.float64, device=dev), torch.zeros(1, dtype=torch.float64, device=dev)
    j = torch.arange(p, device=dev)
    start = torch.ones(p, dtype=torch.bool, device=dev)
    start[1:] = q[1:] != q[:-1]
    lt_pos = torch.where(start, j, torch.zeros_like(j)).cummax(0).values
    prec = (p - lt_pos).double() / (total - lt).double().clamp_min(1)
    ap = prec.sum() / p
    first = torch.nonzero(start).squeeze(1)
    one = torch.ones(1, dtype=torch.float64, device=dev)
    zero = torch.zeros(1, dtype=torch.float64, device=dev)
    precision = torch.cat([prec[first], one])
    recall = torch.cat([(p - lt_pos[first]).double() / p, zero])
    return ap, precision, recall


def block_ap_auroc(scores_t: Tensor, positive: Optional[Tensor] = None,
                   pos_index: Optional[Tuple[Tensor, Tensor]] = None, ap_mode: str = "step",
                   overwrite: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """AP, AUROC and positives of one block of classes: ``scores_t`` ``(k, n)`` ranking scores,
    the positives as a ``(n, k)`` bool matrix or as ``pos_index = (class in block, row)``.

    ``ap_mode``: ``"step"`` (sklearn's AP, from :func:`exact_ap_auroc`'s one sort; ``overwrite``
    lets it sort ``scores_t`` in place), ``"interpolated"`` or ``"voc11"`` (from the block's ranking
    curves; the block is then left as it was). The one class kernel of the levels, the class shards
    and the bootstrap's point estimates."""
    a, u, p = exact_ap_auroc(None, positive=positive, scores_t=scores_t, pos_index=pos_index,
                             overwrite=overwrite and ap_mode == "step")
    if ap_mode != "step":
        if positive is None:
            positive = torch.zeros(scores_t.shape[1], scores_t.shape[0], dtype=torch.bool, device=scores_t.device)
            positive[pos_index[1], pos_index[0]] = True
        a = curves_average_precision(ranking_curves(scores_t.T, positive), ap_mode)
    return a, u, p


def class_pass(num_classes: int, block_classes: int, block, positives, ap_mode: str = "step",
               overwrite: bool = False, rows: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-class ``(ap, auroc, positives)`` over every class, a block of ``block_classes`` classes at a
    time: ``block(c0, c1)`` gives the ``(c1 - c0, n)`` ranking scores of those classes and
    ``positives(c0, c1)`` their positives (a ``(n, c1 - c0)`` bool matrix, or a ``(class - c0, row)``
    index pair); ``rows`` restricts the ranking to those rows (Charades' ``empty_videos="exclude"``;
    matrix positives only). See :func:`block_ap_auroc`."""
    ap = auc = npos = None
    for c0 in range(0, num_classes, max(block_classes, 1)):
        c1 = min(num_classes, c0 + block_classes)
        st, pos = block(c0, c1), positives(c0, c1)
        if ap is None:
            ap = torch.full((num_classes,), float("nan"), dtype=torch.float64, device=st.device)
            auc = ap.clone()
            npos = torch.zeros(num_classes, dtype=torch.long, device=st.device)
        if rows is not None:
            st, pos = st[:, rows].contiguous(), pos[rows]
        if isinstance(pos, tuple):
            ap[c0:c1], auc[c0:c1], npos[c0:c1] = block_ap_auroc(st, pos_index=pos, ap_mode=ap_mode, overwrite=overwrite)
        else:
            ap[c0:c1], auc[c0:c1], npos[c0:c1] = block_ap_auroc(st, positive=pos, ap_mode=ap_mode, overwrite=overwrite)
    if ap is None:
        ap = torch.zeros(0, dtype=torch.float64)
        auc, npos = ap.clone(), torch.zeros(0, dtype=torch.long)
    return ap, auc, npos


def sorted_positives(target: Tensor, lo: int, hi: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Multiclass positives of classes ``[lo, hi)``: ``(class of each, row of each, starts)`` with
    the rows sorted by class and ``starts[k - lo]`` where class ``k`` begins."""
    order = torch.argsort(target, stable=True)
    cls = target[order]
    starts = torch.searchsorted(cls, torch.arange(lo, hi + 1, device=target.device))
    return cls, order, starts


def positive_index(cls: Tensor, rows: Tensor, starts: Tensor, lo: int):
    """``positives(c0, c1)`` for :func:`class_pass` from :func:`sorted_positives` (classes from ``lo``)."""
    def positives(c0: int, c1: int):
        a0, a1 = int(starts[c0]), int(starts[c1])
        return cls[a0:a1] - lo - c0, rows[a0:a1]
    return positives
