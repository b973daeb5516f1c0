"""YouTube-8M's evaluation (google/youtube-8m ``eval_util.py``, ``average_precision_calculator.py``,
``mean_average_precision_calculator.py``) from each video's top predictions only.

Definitions, as the official code computes them (``eval.py``: ``top_k=20``, ``top_n=None``):

* **Hit@1**: the share of videos whose highest score is a true label (ties: the lowest class
  index, as ``numpy.argmax``).
* **PERR**: per video with ``k`` labels, the share of its ``k`` highest scores that are true labels
  *and* above 0, averaged over all videos; a video without a label counts 0 (the official loop then
  takes every class as "top 0" and finds no label).
* **GAP**: every video's ``top_k`` (score, hit) pairs pooled into one list, ranked by score; AP
  whose denominator is every positive label of every video, including those outside the top
  ``top_k`` (the precision of each hit, summed, over all positives).
* **mAP**: per class, the same AP over the class's entries among the videos' top ``top_k`` with
  the class's positives as denominator (0 for a class with positives and no entry); the mean over
  the classes with at least one positive (``filter_empty_classes``).

**Ties** (the official code leaves them to ``argpartition`` and to a seeded shuffle): the top ``k``
of a video are its ``k`` highest scores, ties to the lower class index; equal scores in a ranked
list form one threshold and each hit among them gets the precision at the end of the group
(scikit-learn's rule, deterministic and independent of the order and number of processes). With
distinct scores every value is the official one.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .checks import Layout, check_row_counts
from .classification import check_row_values, multilabel_target_ok
from .ranking import sorted_values

#: the official ``eval.py``'s number of predictions kept per video
TOP_K = 20
#: the keys of the results, in order
KEYS = ("gap", "hit_at_1", "perr", "map", "num_videos")


def ranked_top_k(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The ``k`` highest scores of each row and their classes, ranked: score descending, ties to the
    lower class index (exactly the row's first ``k`` under that order, including at the ``k``-th
    score). No host sync, two ``topk`` passes over the row and comparisons: the ``k``-th score,
    the classes above it (from the first ``topk``), the lowest classes equal to it (a ``topk`` of
    their negated index), then a sort of the ``2k`` candidates.

    >>> ranked_top_k(torch.tensor([[0.2, 0.9, 0.2, 0.5, 0.2]]), 3)
    (tensor([[0.9000, 0.5000, 0.2000]]), tensor([[1, 3, 0]]))
    """
    n, c = scores.shape
    k = min(k, c)
    vals, idx = torch.topk(scores, k, dim=1)
    kth = vals[:, -1:]
    above = vals > kth  # every score above the k-th is among the first topk's
    room = k - above.sum(1, keepdim=True)  # places left for scores equal to the k-th
    # the lowest classes whose score equals the k-th: a topk of (c - index) over them (exact in fp32 below 2**24)
    dtype = torch.float32 if c < 2**24 else torch.float64
    rev = torch.arange(c, 0, -1, dtype=dtype, device=scores.device)
    tied = c - torch.topk(torch.where(scores == kth, rev, 0), k, dim=1).values.long()
    take = torch.arange(k, device=scores.device)[None, :] < room
    cand_cls = torch.cat([torch.where(above, idx, c), torch.where(take, tied, c)], 1)
    cand_val = torch.cat([vals, kth.expand(n, k)], 1)
    unused = cand_cls == c
    # rank the candidates: used first, then score descending, then class ascending (three stable sorts)
    order = torch.argsort(cand_cls, dim=1, stable=True)
    order = order.gather(1, torch.argsort(cand_val.gather(1, order), dim=1, descending=True, stable=True))
    order = order.gather(1, torch.argsort(unused.gather(1, order).to(torch.uint8), dim=1, stable=True))[:, :k]
    return cand_val.gather(1, order), cand_cls.gather(1, order)


def first_labels(positive: Tensor, width: int) -> Tensor:
    """The first ``width`` positive classes of each row, ascending, padded with -1 (int64, no sync).

    >>> first_labels(torch.tensor([[False, True, False, True]]), 3)
    tensor([[ 1,  3, -1]])
    """
    c = positive.shape[1]
    dtype = torch.float32 if c < 2**24 else torch.float64  # class indices exact
    rev = torch.arange(c, 0, -1, dtype=dtype, device=positive.device)
    top = torch.topk(torch.where(positive, rev, 0), min(width, c), dim=1).values.long()
    out = torch.where(top > 0, c - top, -1)
    if width > c:
        out = torch.cat([out, out.new_full((out.shape[0], width - c), -1)], 1)
    return out


def video_perr(hits: Tensor, num_labels: Tensor, counted: Tensor) -> Tensor:
    """Each video's PERR from the hits of its ranked top predictions ``(N, K)``, its number of labels
    and which predictions count (``counted``: scores above 0 for probabilities). ``K`` must be at
    least the number of labels of the videos whose PERR is used. (Hit@1 is ``hits[:, 0]``.)"""
    position = torch.arange(hits.shape[1], device=hits.device)
    within = hits & counted & (position[None, :] < num_labels[:, None])
    return within.sum(1).double() / num_labels.clamp_min(1).double()


def sparse_ap(scores: Tensor, classes: Optional[Tensor], hits: Tensor, positives: Tensor) -> Tensor:
    """Per-class AP of a list of ``(score, class, hit)`` entries, each class's entries ranked by
    score (ties: one threshold, see the module doc), over ``positives[c]`` (all positives of the
    class, in the list or not): ``sum over hits of the precision at the hit / positives``, where a
    hit's precision is the share of hits among the class's entries scoring at least as high. 0 for
    a class with positives and no hit listed, NaN for a class without positives. float64 ``(C,)``.
    ``classes=None``: one list (``positives`` of shape ``(1,)``), the GAP.

    Memory: one int64 key an entry, ``class << 32 | code`` (``code``: the score's order-preserving
    32-bit pattern; for float64 scores its dense rank), sorted in place, values only; then two
    binary searches a hit. Sums are taken in key order: the result depends on the entries, not on
    their order (nor on the number of processes that held them).

    >>> sparse_ap(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 0]), torch.tensor([True, False, True]),
    ...           torch.tensor([3]))  # (1/1 + 2/3) / 3 positives, one of them not listed
    tensor([0.5556], dtype=torch.float64)
    """
    c, n = positives.numel(), scores.numel()
    ap = torch.zeros(c, dtype=torch.float64, device=scores.device)
    if n:
        key = class_score_keys(scores, classes)
        hk = sorted_values(key[hits.reshape(-1)])
        key = sorted_values(key, inplace=True)
        end = ((hk >> 32) + 1) << 32  # the first key of the next class
        at_least = torch.searchsorted(key, end) - torch.searchsorted(key, hk)  # the class's entries scoring >= the hit
        hits_at_least = torch.searchsorted(hk, end) - torch.searchsorted(hk, hk)
        del key
        ap.index_add_(0, hk >> 32, hits_at_least.double() / at_least.double())
    total = positives.double()
    return torch.where(total > 0, ap / total.clamp_min(1), torch.full_like(ap, float("nan")))


def class_score_keys(scores: Tensor, classes: Optional[Tensor]) -> Tensor:
    """int64 keys ordering entries by class, then score ascending, equal scores equal keys:
    ``class << 32 | code``, ``code`` the score's IEEE pattern made order-preserving (fp32; -0.0 as
    +0.0) or, for float64 scores, their dense rank. For fp32 the key is the only (n,) array made.

    >>> k = class_score_keys(torch.tensor([0.5, -1.0, 0.5, 2.0]), torch.tensor([1, 0, 0, 0]))
    >>> (k[1] < k[2] < k[3] < k[0]).item(), (k[0] - k[2]).item() == 1 << 32
    (True, True)
    """
    n = scores.numel()
    if classes is None:
        key = torch.zeros(n, dtype=torch.long, device=scores.device)
    else:  # a copy even of int64 classes: the key is written in place
        key = classes.reshape(-1).to(torch.long, copy=True).bitwise_left_shift_(32)
    if scores.dtype == torch.float64:
        ranked, order = torch.sort(scores.reshape(-1))
        new = torch.ones(n, dtype=torch.bool, device=scores.device)
        new[1:] = ranked[1:] != ranked[:-1]
        del ranked
        code = torch.empty(n, dtype=torch.long, device=scores.device)
        code[order] = new.cumsum(0)
        key += code
        return key
    flat = scores.reshape(-1)
    for lo in range(0, n, 1 << 20):  # a chunk at a time: no (n,) temporary besides the key
        bits = (flat[lo:lo + (1 << 20)].float() + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0
        key[lo:lo + (1 << 20)] += torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    key += 1 << 31
    return key


class VideoRows(NamedTuple):
    """What YouTube-8M's evaluation keeps of each video (:func:`video_rows`): its ``top_k`` ranked
    predictions (``scores``, ``classes`` (-1: none), ``hits``), its PERR, the first labels
    (``labels``, -1 padded), its number of labels, and the row checks (``valid``, ``bad_target``,
    ``bad_score``)."""

    scores: Tensor
    classes: Tensor
    hits: Tensor
    perr: Tensor
    labels: Tensor
    num_labels: Tensor
    valid: Tensor
    bad_target: Tensor
    bad_score: Tensor


def video_rows(scores: Tensor, target: Tensor, top_k: int, max_labels: int, input: str = "probs") -> VideoRows:
    """Each video's quantities from dense ``scores`` and multi-hot ``target`` ``(N, C)``, on the
    device and without a host sync. Rows are ranked in the scores' precision (fp16/bf16 as fp32);
    a row with a NaN or inf (or, for probabilities, a value outside [0, 1]) or a target not in
    {0, 1} is not valid. PERR needs each video's ``k``-th score for its ``k`` labels: the top
    ``max(top_k, max_labels)`` are ranked; rows with more than ``max_labels`` labels keep a wrong
    PERR and must be refused by the caller (``num_labels``)."""
    x = scores if scores.dtype == torch.float64 else scores.float()
    c = x.shape[1]
    lo, hi = (x.amin(1), x.amax(1)) if x.numel() else (x.new_zeros(x.shape[0]),) * 2
    valid, bad_t, bad_s, _ = check_row_values(lo, hi, target, "multilabel", input, c,
                                              label_ok=multilabel_target_ok(target))
    positive = target if target.dtype == torch.bool else target > 0  # an invalid row's labels masked below
    x = x.nan_to_num(0.0, 0.0, 0.0)
    # (an int32 sum of bools is ~40x faster than the default int64 one on CPU)
    num_labels = torch.where(valid, positive.sum(1, dtype=torch.int32), 0).long()
    vals, cls = ranked_top_k(x, max(top_k, min(max_labels, c)))
    hits = positive.gather(1, cls) & valid[:, None]
    counted = vals > 0 if input == "probs" else torch.ones_like(hits)
    perr = video_perr(hits, num_labels, counted)
    k = min(top_k, c)
    labels = torch.where(valid[:, None], first_labels(positive, max_labels), -1)
    return VideoRows(vals[:, :k], cls[:, :k], hits[:, :k], perr, labels, num_labels, valid, bad_t, bad_s)


def listed_rows(scores: Tensor, classes: Tensor, target: Tensor, top_k: int, max_labels: int,
                input: str = "probs") -> VideoRows:
    """:func:`video_rows` from each video's listed predictions only (a submission's top ``K``:
    ``scores`` and ``classes`` ``(N, K)`` in any order, class -1 for no prediction) and its
    multi-hot ``target`` ``(N, C)``. A class not listed is a prediction below every listed one:
    PERR counts the labels among the listed predictions it ranks in the top ``k``, GAP and mAP
    see the listed ones. A row with a class outside ``[-1, C)``, a class listed twice or a bad
    listed score is not valid (``bad_score``). No host sync."""
    c = target.shape[1]
    x = scores if scores.dtype == torch.float64 else scores.float()
    listed = (classes >= 0) & (classes < c)  # others make the row bad (class_ok)
    finite_or_pad = torch.where(listed, x, torch.zeros_like(x))
    lo = finite_or_pad.amin(1) if x.shape[1] else x.new_zeros(x.shape[0])
    hi = finite_or_pad.amax(1) if x.shape[1] else x.new_zeros(x.shape[0])
    class_key = torch.where(listed, classes.long(), c)  # the listed classes, then the others after them
    by_class = torch.argsort(class_key, dim=1, stable=True)
    ordered = class_key.gather(1, by_class)
    repeated = ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] < c)).any(1)
    class_ok = ((classes >= -1) & (classes < c)).all(1) & ~repeated
    in_unit = (lo >= 0) & (hi <= 1)
    score_ok = (in_unit if input == "probs" else torch.isfinite(lo) & torch.isfinite(hi)) & class_ok
    label_ok = multilabel_target_ok(target)
    valid = label_ok & score_ok
    bad_t, bad_s = (~label_ok).sum(), (~score_ok).sum()
    positive = target if target.dtype == torch.bool else target > 0  # an invalid row's labels masked below
    key = torch.where(listed & valid[:, None], x.nan_to_num(0.0, 0.0, 0.0), float("-inf"))
    order = by_class.gather(1, torch.argsort(key.gather(1, by_class), dim=1, descending=True, stable=True))
    vals, cls = key.gather(1, order), torch.where(listed, class_key, -1).gather(1, order)
    hits = positive.gather(1, cls.clamp_min(0)) & (cls >= 0) & valid[:, None]
    counted = (vals > 0 if input == "probs" else torch.isfinite(vals)) & (cls >= 0)
    num_labels = torch.where(valid, positive.sum(1, dtype=torch.int32), 0).long()
    perr = video_perr(hits, num_labels, counted)
    vals, cls, hits = _width(vals, cls, hits, top_k)
    labels = torch.where(valid[:, None], first_labels(positive, max_labels), -1)
    return VideoRows(vals, cls, hits, perr, labels, num_labels, valid, bad_t, bad_s)


def _width(vals: Tensor, cls: Tensor, hits: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The first ``k`` ranked entries, padded (class -1, score -inf, no hit) when fewer are listed."""
    have = vals.shape[1]
    if have >= k:
        return vals[:, :k], cls[:, :k], hits[:, :k]
    pad = k - have
    return (torch.cat([vals, vals.new_full((vals.shape[0], pad), float("-inf"))], 1),
            torch.cat([cls, cls.new_full((cls.shape[0], pad), -1)], 1),
            torch.cat([hits, hits.new_zeros((hits.shape[0], pad))], 1))


def youtube8m_value(scores: Tensor, classes: Tensor, hits: Tensor, perr: Tensor, positives: Tensor) -> Dict[str, Tensor]:
    """The official quantities from the kept videos' ranked top predictions ``(V, K)`` (class -1:
    no prediction), their PERR ``(V,)`` and every class's positives ``(C,)``: ``gap``,
    ``hit_at_1``, ``perr``, ``map``, ``num_videos`` and ``per_class_ap`` ``(C,)`` (NaN for a class
    without positives). Sums are taken over sorted values: the result depends on the set of
    videos only, not on their order or the number of processes."""
    v = hits.shape[0]
    listed = classes >= 0
    if bool(listed.all()):
        s, cl, h = scores.reshape(-1), classes.reshape(-1), hits.reshape(-1)
    else:
        s, cl, h = scores[listed], classes[listed], hits[listed]
    total = positives.sum().reshape(1)
    gap = sparse_ap(s, None, h, total)[0] if int(total) else torch.zeros((), dtype=torch.float64)
    per_class = sparse_ap(s, cl, h, positives)
    has = positives > 0
    return {
        "gap": gap,
        "hit_at_1": hits[:, 0].double().mean() if v else torch.tensor(float("nan"), dtype=torch.float64),
        "perr": torch.sort(perr.double()).values.sum() / max(v, 1),
        "map": torch.sort(per_class[has]).values.mean(),
        "num_videos": torch.tensor(v),
        "per_class_ap": per_class,
    }


def youtube8m_metrics(scores: Tensor, target: Tensor, top_k: int = TOP_K, input: str = "probs") -> Dict[str, Tensor]:
    """YouTube-8M's official evaluation (module doc) of dense ``scores`` and a multi-hot
    ``target`` ``(N, C)``, as :class:`~video_metrics.YouTube8MMetrics` computes it from all rows.

    >>> scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.7], [0.6, 0.5, 0.1]])
    >>> target = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 1, 0]])
    >>> out = youtube8m_metrics(scores, target, top_k=2)
    >>> {k: round(float(out[k]), 4) for k in ("gap", "hit_at_1", "perr", "map")}
    {'gap': 0.7333, 'hit_at_1': 0.3333, 'perr': 0.3333, 'map': 0.8333}
    """
    layout = Layout.of(scores.shape[1] if scores.ndim == 2 else None, "multilabel", input)
    check_top_k(top_k)
    scores, target = layout.batch(scores, target)
    rows = video_rows(scores, target, top_k, int(target.shape[1]) if target.ndim == 2 else 1, input)
    check_row_counts("youtube8m_metrics", layout.rules(), int(rows.bad_target), int(rows.bad_score), int(rows.valid.sum()),
                     functional=True)
    keep = rows.valid
    positives = (target[keep] > 0).sum(0)
    return summary(youtube8m_value(rows.scores[keep], rows.classes[keep], rows.hits[keep], rows.perr[keep], positives))


def summary(values: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The reported keys of :func:`youtube8m_value` (``num_videos`` as float64, as every value)."""
    return {k: values[k].double() for k in KEYS}


def check_top_k(top_k) -> int:
    """``top_k``: a positive int (the official ``k``)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive int (YouTube-8M's official value is {TOP_K}), got {top_k!r}")
    return top_k
