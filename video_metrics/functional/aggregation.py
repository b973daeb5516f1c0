"""Clip -> video aggregation kernels (vectorised over videos with index_add / scatter_reduce).

All reductions accumulate in float64. For each reduction the kernel returns, per video:

* ``probs``: video probabilities (multiclass rows sum to 1 for ``mean_logits``/``mean_probs``);
* ``rank``: scores that order videos within a class exactly as ``probs`` but without fp
  saturation (log-probabilities, or logits for multilabel ``mean_logits``/``max``);
* ``key``: the score whose argmax / top-k is the video prediction.

Reductions:

* ``mean_logits`` (mmaction2 ``average_clips='score'``): softmax/sigmoid of the mean logits;
* ``mean_probs`` (mmaction2 ``'prob'``, PySlowFast and torchvision's softmax sum): mean of the
  clip probabilities, computed as ``logsumexp(log p) - log n`` so nothing underflows;
* ``max`` (PySlowFast's Charades choice): per class, max over clips of the probabilities — no
  sentinel initial value, so logits far below zero aggregate correctly;
* ``vote``: majority of clip argmaxes; ties by the higher mean probability, then the lower class
  index. ``key = votes + mean_prob / 2`` realises that order (a vote outweighs any probability).

:func:`aggregate_blocks` reads the clip rows block by block (a callable returning an iterator of
``(start, rows)``), so no float64 copy of every clip row is ever made: the float64 temporaries
are ``(videos, classes)`` (one or two of them) plus one block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .checks import Layout, check_choice, check_ids
from .workspace import Workspace

REDUCTIONS = ("mean_logits", "mean_probs", "max", "vote")
#: values in one block of rows read by the aggregation (the suite's own blocks: :func:`video_metrics.levels.block_sizes`)
ROW_BLOCK_VALUES = 1 << 22

Blocks = Callable[[], Iterator[Tuple[int, Tensor]]]


def group_rows(video_ids: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(unique_ids (V,), inverse (N,), counts (V,))`` with ids sorted ascending."""
    uniq, inverse, counts = torch.unique(video_ids, sorted=True, return_inverse=True, return_counts=True)
    return uniq, inverse, counts


def video_values(values: Tensor, inverse: Tensor, num_videos: int) -> Tuple[Tensor, Tensor]:
    """One value per video from int64 row ``values`` ``(N,)`` or ``(N, G)`` that every row of a video
    should share (targets, group columns): ``(per-video value (the rows' max), the number of
    videos whose rows disagree)``, the count per column for ``(N, G)``."""
    idx = inverse.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    shape = (num_videos, *values.shape[1:])
    lo = torch.full(shape, 2**62, dtype=torch.long, device=values.device).scatter_reduce_(0, idx, values, "amin")
    hi = torch.full(shape, -2**62, dtype=torch.long, device=values.device).scatter_reduce_(0, idx, values, "amax")
    return hi, (lo != hi).sum(0)


def video_targets(t: Tensor, inverse: Tensor, num_videos: int, block_rows: int = 1 << 16) -> Tuple[Tensor, Tensor]:
    """One target per video from its clips' targets: ``(targets, differs)``. Multiclass ``t``
    ``(N,)``: ``targets`` ``(V,)`` int64, ``differs`` ``(V,)`` (clips of the video disagree);
    multilabel ``t`` ``(N, C)``: ``targets`` ``(V, C)`` bool, ``differs`` ``(V, C)`` (the clips
    disagree on that class), read ``block_rows`` rows at a time as uint8 (no int64 copy of a
    clips x classes matrix). The one agreement check of the suite and its class shards."""
    if t.dim() == 1:
        vt, _ = video_values(t, inverse, num_videos)
        lo = torch.full((num_videos,), 2**62, dtype=torch.long, device=t.device).scatter_reduce_(0, inverse, t, "amin")
        return vt, lo != vt
    c = t.shape[1]
    tmin = torch.full((num_videos, c), 2, dtype=torch.uint8, device=t.device)
    tmax = torch.zeros((num_videos, c), dtype=torch.uint8, device=t.device)
    for lo in range(0, t.shape[0], block_rows):
        tb = t[lo:lo + block_rows].to(torch.uint8)
        idx = inverse[lo:lo + block_rows, None].expand_as(tb)
        tmin.scatter_reduce_(0, idx, tb, "amin")
        tmax.scatter_reduce_(0, idx, tb, "amax")
    return tmax.bool(), tmin != tmax


def dedup_clips(video_ids: Tensor, clip_ids: Tensor) -> Tensor:
    """Indices of the first row (in row order) of every distinct ``(video_id, clip_id)`` pair,
    sorted by (video, clip). Rows repeated by a padding sampler are dropped. Two stable 1-D
    sorts (``torch.unique(dim=0)`` on the pairs is ~10x slower)."""
    return duplicate_pairs(video_ids, clip_ids)[0]


def duplicate_pairs(video_ids: Tensor, clip_ids: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(first, dup, dup_first)``: ``first`` as :func:`dedup_clips`; ``dup`` the rows that repeat
    an earlier row's ``(video_id, clip_id)`` and ``dup_first`` the row each repeats (sorted by
    (video, clip), then row order)."""
    n = video_ids.numel()
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=video_ids.device)
        return empty, empty, empty
    o1 = torch.argsort(clip_ids, stable=True)
    order = o1[torch.argsort(video_ids[o1], stable=True)]  # by (video, clip); equal pairs in row order
    v, c = video_ids[order], clip_ids[order]
    start = torch.ones(n, dtype=torch.bool, device=video_ids.device)
    start[1:] = (v[1:] != v[:-1]) | (c[1:] != c[:-1])
    first = order[start]
    group = torch.cumsum(start.long(), 0) - 1
    return first, order[~start], first[group[~start]]


def rows_at(chunks: Sequence[Tensor], index: Tensor) -> Tensor:
    """Rows ``index`` (into the row-concatenation of ``chunks``) without concatenating the chunks."""
    sizes = torch.tensor([x.shape[0] for x in chunks], dtype=torch.long)
    ends = torch.cumsum(sizes, 0)
    index = index.to("cpu")
    which = torch.searchsorted(ends, index, right=True)
    out = None
    for k, x in enumerate(chunks):
        sel = torch.nonzero(which == k).squeeze(1)
        if sel.numel() == 0:
            continue
        local = (index[sel] - (ends[k] - sizes[k])).to(x.device)
        part = x.index_select(0, local)
        if out is None:
            out = torch.empty((index.numel(), *x.shape[1:]), dtype=x.dtype, device=x.device)
        out[sel.to(x.device)] = part
    if out is None:
        ref = chunks[0] if len(chunks) else torch.zeros(0)
        out = torch.empty((0, *ref.shape[1:]), dtype=ref.dtype, device=ref.device)
    return out


_PRIMES = (2147483647, 2147483629)  # two primes below 2**31: products of residues stay below 2**62


def _int_bits(x: Tensor) -> Tensor:
    """The bits of each value as int64 (integers and bools as they are)."""
    if x.is_floating_point():
        width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
        return x.contiguous().view(width).long()
    return x.long()


def row_fingerprints(*columns: Tensor) -> Tensor:
    """A 62-bit fingerprint of each row of the given tensors (``(N,)`` or ``(N, K)``: scores,
    targets): rows equal bit for bit give equal fingerprints, others differ except with probability
    about ``2**-62``. Integer arithmetic only (residues below ``2**31``), so the result does not
    depend on the device, the batch or the order of the sums."""
    parts = [_int_bits(c if c.dim() == 2 else c[:, None]) for c in columns]
    bits = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
    k = torch.arange(bits.shape[1], dtype=torch.long, device=bits.device)
    out = torch.zeros(bits.shape[0], dtype=torch.long, device=bits.device)
    for j, p in enumerate(_PRIMES):
        mult = torch.remainder(k * (40503 + 7919 * j) + 12345 + 977 * j, p - 1) + 1
        h = torch.remainder(torch.remainder(bits, p) * mult, p).sum(1)
        out = out * p + torch.remainder(h, p)
    return out


def log_probabilities(x: Tensor, task: str, input: str) -> Tensor:
    """Clip log-probabilities in float64: log-softmax (multiclass) or log-sigmoid (multilabel) of logits, or the
    logarithm of given probabilities.
    """
    xd = x.double()
    if task == "multiclass":
        return xd - xd.logsumexp(1, keepdim=True) if input == "logits" else xd.clamp_min(0).log()
    return torch.nn.functional.logsigmoid(xd) if input == "logits" else xd.clamp_min(0).log()


def _segment_max(blocks: Blocks, inverse: Tensor, v: int, c: int, value: Callable[[Tensor], Tensor],
                 ws: Workspace) -> Tensor:
    out = ws.full((v, c), -math.inf, torch.float64, inverse.device)
    for start, x in blocks():
        y = value(x)
        idx = inverse[start:start + x.shape[0], None].expand_as(y)
        out.scatter_reduce_(0, idx, y, reduce="amax", include_self=True)
    return out


def aggregate_blocks(blocks: Blocks, inverse: Tensor, counts: Tensor, num_classes: int, task: str, input: str,
                     reduction: str, log_probs: Optional[Callable[[Tensor], Tensor]] = None,
                     workspace: Optional[Workspace] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Aggregate clip rows (``blocks()`` yields ``(start, rows (b, C))`` in row order; ``inverse``
    maps each row to its video) into ``(rank (V, C) float64, votes (V, C) float64 or None)``;
    see :func:`video_probs` and :func:`video_key` for the probabilities and prediction keys.

    ``log_probs``: the clips' log-probabilities from a block (default: from the scores; a class
    shard of multiclass rows passes them precomputed from the whole rows). ``workspace``: where the
    ``(V, C)`` arrays are carved from (:class:`~video_metrics.functional.workspace.Workspace`)."""
    v, c = counts.numel(), num_classes
    ws = workspace if workspace is not None else Workspace()
    dev = inverse.device
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "vote" and task != "multiclass":
        raise ValueError("`reduction='vote'` is defined for task='multiclass' only")
    votes = None
    lp = log_probs if log_probs is not None else (lambda x: log_probabilities(x, task, input))
    if reduction == "mean_logits":
        rank = ws.zeros((v, c), torch.float64, dev)
        for start, x in blocks():
            rank.index_add_(0, inverse[start:start + x.shape[0]], x.double())
        rank /= counts[:, None].double()
        if task == "multiclass":  # log-softmax in place, a few hundred videos at a time
            for i in range(0, v, 256):
                part = rank[i:i + 256]
                part.sub_(part.logsumexp(1, keepdim=True))
    elif reduction == "max":
        if task == "multilabel" and input == "logits":  # sigmoid is monotone: max logit, no saturation
            rank = _segment_max(blocks, inverse, v, c, lambda x: x.double(), ws)
        else:
            rank = _segment_max(blocks, inverse, v, c, lp, ws)
    else:  # mean_probs, vote: log of the mean clip probability, without underflow
        rank = _segment_max(blocks, inverse, v, c, lp, ws)
        # a class with probability 0 in every clip of a video has max -inf: shift it by 0 instead
        # (-inf - -inf would be NaN); its mean is then exp(-inf) = 0
        rank.masked_fill_(~torch.isfinite(rank), 0)
        total = ws.zeros((v, c), torch.float64, dev)
        for start, x in blocks():
            inv = inverse[start:start + x.shape[0]]
            total.index_add_(0, inv, (lp(x) - rank[inv]).exp_())
        rank += total.log_().sub_(counts[:, None].double().log())
        del total
        if reduction == "vote":
            votes = ws.zeros((v, c), torch.float64, dev)
            for start, x in blocks():
                inv = inverse[start:start + x.shape[0]]
                pred = x.argmax(1)
                votes.index_put_((inv, pred), torch.ones_like(pred, dtype=torch.float64), accumulate=True)
    return rank, votes


def video_probs(rank: Tensor, task: str, input: str, reduction: str) -> Tensor:
    """Video probabilities from the ranking scores of :func:`aggregate_blocks` (rows or a block)."""
    if task == "multilabel" and (reduction == "mean_logits" or (reduction == "max" and input == "logits")):
        return rank.sigmoid()
    return rank.exp()


def video_key(rank: Tensor, votes: Optional[Tensor], task: str, input: str, reduction: str) -> Tensor:
    """What the video prediction is the argmax / top-k of."""
    if reduction == "vote":
        return votes + video_probs(rank, task, input, reduction) / 2
    return rank


class RowStore:
    """The kept rows of a ``(N, C)`` score matrix, held as the metric stores them: row chunks
    (the state's list, or the one gathered tensor after a sync) and a mask of the rows to keep
    (valid rows, first occurrence of each ``(video, clip)``). Rows are read block by block; no
    copy of every row is made."""

    def __init__(self, chunks, keep: Optional[Tensor], num_classes: int, block_rows: int) -> None:
        self.chunks = [x for x in chunks if x.shape[0]]
        #: the mask over every stored row (None: all kept), for the analyses that subset the rows
        self.mask = keep
        self.keep = None if keep is None or bool(keep.all()) else keep
        self.c = num_classes
        self.block_rows = max(1, block_rows)
        self.n = int(keep.sum()) if keep is not None else sum(x.shape[0] for x in self.chunks)

    def blocks(self, columns: Optional[slice] = None) -> Iterator[Tuple[int, Tensor]]:
        """``(start, rows)``: consecutive kept rows, ``start`` their index among the kept rows;
        ``columns``: only those columns of them (a view, or a copy of the kept rows' columns)."""
        pos = off = 0
        for x in self.chunks:
            for part in (x.split(self.block_rows) if x.shape[0] > self.block_rows else (x,)):
                b = part.shape[0]
                if columns is not None:
                    part = part[:, columns]
                if self.keep is not None:
                    part = part[self.keep[off:off + b]]
                off += b
                if part.shape[0]:
                    yield pos, part
                    pos += part.shape[0]


def kept_rows(id_counts: Tuple[int, int, int], valid: Tensor, vid: Tensor, cid: Tensor,
              same_rows: Optional[Callable[[Tensor, Tensor], Tensor]] = None, registry=None) -> Tuple[Tensor, int]:
    """``(keep, dropped)``: the valid rows, less repeated ``(video_id, clip_id)`` pairs (sampler
    padding; the first occurrence in row order is kept) when clip ids were given. The same
    decision on every process of a sync (the suite's full gather and its class shards).

    ``same_rows(rows, firsts)`` says which repeated rows equal the row they repeat (scores and
    target): padding duplicates are identical rows, so a repeated pair with different scores or
    targets means the ids are wrong, and raises (naming the count and the pair of the earliest such
    row). Only
    the rows the de-duplication found are compared. ``id_counts``: ``(rows seen, rows with clip
    ids, rows with video ids)`` (synced); ``registry``: names the video in the error."""
    n_total, n_clip_ids, n_vid = id_counts
    if 0 < n_clip_ids < n_total:
        raise ValueError("`clip_ids` were given for some batches only: pass them for every batch or for none")
    if 0 < n_vid < n_total:
        raise ValueError("`video_ids` were given for some batches only: pass them for every batch or for none")
    if not n_clip_ids:
        return valid, 0
    idx = torch.nonzero(valid).squeeze(1)
    first, dup, dup_first = duplicate_pairs(vid[idx], cid[idx])
    if dup.numel() and same_rows is not None:
        same = same_rows(idx[dup], idx[dup_first])
        bad = torch.nonzero(~same).squeeze(1)
        if bad.numel():
            row = idx[dup[bad]].min()  # the earliest conflicting row
            v, c = int(vid[row]), int(cid[row])
            name = repr(registry.name(v)) if registry is not None and v in registry else str(v)
            raise ValueError(f"{bad.numel()} row(s) repeat the (video_id, clip_id) of another row with different "
                             f"scores or targets (first: video {name}, clip {c}): rows repeated by a padding sampler "
                             "are identical, so different rows under one (video_id, clip_id) mean the ids are wrong; "
                             "clip_id must tell the clips of a video apart")
    keep = torch.zeros_like(valid)
    keep[idx[first]] = True
    return keep, idx.numel() - first.numel()


def same_rows_in(chunks: Sequence[Tensor], *columns: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """``same_rows`` for :func:`kept_rows` over stored score ``chunks`` and whole row ``columns``
    (targets): exact comparison of the repeated rows and the rows they repeat."""
    def same(a: Tensor, b: Tensor) -> Tensor:
        eq = (rows_at(chunks, a) == rows_at(chunks, b)).reshape(a.numel(), -1).all(1)
        for col in columns:
            eq &= (col[a] == col[b]).reshape(a.numel(), -1).all(1)
        return eq
    return same


@dataclass
class Coverage:
    """How complete the video-level evaluation is. ``duplicates_dropped``: rows whose
    ``(video_id, clip_id)`` was already seen (sampler padding); ``missing_videos``: expected ids
    with no clip; ``videos_with_fewer_clips``: videos with fewer than ``expected_clips`` clips.

    >>> import torch
    >>> from video_metrics.functional import aggregate_videos
    >>> agg = aggregate_videos(torch.zeros(3, 2), torch.tensor([0, 0, 1]), torch.tensor([3, 3, 5]), num_classes=2,
    ...                        expected_video_ids=[3, 5, 8])
    >>> agg.coverage.num_videos, agg.coverage.missing_video_ids
    (2, [8])
    """

    num_videos: int
    num_clips: int
    duplicates_dropped: int
    min_clips: int
    max_clips: int
    missing_videos: int = 0
    missing_video_ids: List[int] = field(default_factory=list)
    videos_with_fewer_clips: int = 0


@dataclass
class AggregatedVideos:
    """Result of :class:`VideoAggregator`: one row per video, ids ascending.

    ``scores``: video probabilities (float64; for ``vote``, the mean clip probabilities);
    ``rank``: scores ordering videos as ``scores`` without fp saturation (log-probabilities or
    logits); ``key``: what the video prediction is the argmax of (for ``vote``: votes + mean
    probability / 2); ``votes``: clip-argmax counts (``vote`` only); ``num_clips`` per video.

    >>> import torch
    >>> from video_metrics.functional import aggregate_videos
    >>> agg = aggregate_videos(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]), torch.tensor([3, 3]),
    ...                        num_classes=2, reduction="mean_logits")
    >>> agg.scores  # softmax of the mean logits [1, 1]
    tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """

    video_ids: Tensor
    scores: Tensor
    rank: Tensor
    key: Tensor
    target: Tensor
    num_clips: Tensor
    coverage: Coverage
    votes: Optional[Tensor] = None


def missing_video_ids(expected: Tensor, seen: Tensor) -> Tensor:
    """The expected video ids without any clip among ``seen`` (the one definition the suite, its
    class shards and the bootstrap share)."""
    return expected[~torch.isin(expected, seen)]


def check_reduction(reduction, task, input, name: str = "reduction") -> None:
    """Check a video reduction against the task and input (``mean_logits`` needs logits, ``vote`` a multiclass task)."""
    check_choice(name, reduction, REDUCTIONS)
    if reduction == "mean_logits" and input == "probs":
        raise ValueError(f"`{name}='mean_logits'` needs input='logits'; with probabilities use 'mean_probs'")
    if reduction == "vote" and task != "multiclass":
        raise ValueError(f"`{name}='vote'` is defined for task='multiclass' only (task={task!r}: use 'mean_probs', "
                         "'mean_logits' or 'max')")


def aggregate_rows(rows, t, vid, dropped, task, input, reduction, expected_video_ids=None, expected_clips=None,
                   full: bool = True, workspace=None) -> AggregatedVideos:
    """Aggregate the kept clip rows (a :class:`RowStore`, or one ``(N, C)`` tensor) into videos.
    ``full=False`` (the suite) leaves ``scores`` and ``key`` to be derived block by block from
    ``rank`` (and ``votes``), so that only one ``(videos, classes)`` float64 array is kept;
    ``workspace`` (a :class:`~video_metrics.functional.workspace.Workspace`): memory to carve it from."""
    if isinstance(rows, Tensor):
        rows = RowStore([rows], None, rows.shape[1], max(16, ROW_BLOCK_VALUES // max(rows.shape[1], 1)))
    uniq, inverse, counts = group_rows(vid)
    v = uniq.numel()
    # one target per video: every clip must agree
    vt, differs = video_targets(t, inverse, v, rows.block_rows)
    bad = int(differs.reshape(v, -1).any(1).sum())
    if bad:
        raise ValueError(f"{bad} video(s) have clips with different targets; every clip of a video must share its target")
    # a quarter of the row block at a time: the float64 copies of a block stay below the size that
    # the allocator maps fresh (and page-faults) on every call
    small = RowStore(rows.chunks, rows.mask, rows.c, max(1, rows.block_rows // 4))
    rank, votes = aggregate_blocks(small.blocks, inverse, counts, rows.c, task, input, reduction, workspace=workspace)
    probs = key = None
    if full:
        probs = video_probs(rank, task, input, reduction)
        key = video_key(rank, votes, task, input, reduction)
    missing_ids: List[int] = []
    if expected_video_ids is not None:
        missing_ids = missing_video_ids(expected_video_ids.to(uniq.device), uniq).tolist()
    fewer = int((counts < expected_clips).sum()) if expected_clips is not None else 0
    cov = Coverage(
        num_videos=v, num_clips=int(counts.sum()), duplicates_dropped=int(dropped),
        min_clips=int(counts.min()) if v else 0, max_clips=int(counts.max()) if v else 0,
        missing_videos=len(missing_ids), missing_video_ids=missing_ids, videos_with_fewer_clips=fewer,
    )
    return AggregatedVideos(uniq, probs, rank, key, vt, counts, cov, votes)


def check_expected_clips(expected_clips) -> None:
    """``expected_clips``: None or a positive int."""
    if expected_clips is not None and (isinstance(expected_clips, bool) or not isinstance(expected_clips, int)
                                       or expected_clips < 1):
        raise ValueError(f"`expected_clips` must be None or a positive int, got {expected_clips!r}")


def aggregate_videos(scores: Tensor, target: Tensor, video_ids: Tensor, clip_ids: Optional[Tensor] = None,
                     num_classes: Optional[int] = None, task: str = "multiclass", reduction: str = "mean_probs",
                     input: str = "logits", expected_video_ids: Optional[Sequence[int]] = None,
                     expected_clips: Optional[int] = None) -> AggregatedVideos:
    """Clip rows to video rows, the twin of :class:`~video_metrics.suite.VideoAggregator`:
    rows repeated under one ``(video_id, clip_id)`` count once (and must be identical), every clip
    of a video must share its target, and ``reduction`` is ``mean_logits``, ``mean_probs``,
    ``max`` or ``vote`` (see the module doc). Videos come out in ascending id order.

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 3.0]])
    >>> agg = aggregate_videos(logits, torch.tensor([0, 0, 1, 1]), torch.tensor([7, 7, 9, 9]),
    ...                        clip_ids=torch.tensor([0, 1, 0, 0]), num_classes=2)
    >>> agg.video_ids.tolist(), agg.num_clips.tolist(), agg.coverage.duplicates_dropped
    ([7, 9], [2, 1], 1)
    >>> agg.scores.argmax(1).tolist()
    [0, 1]
    """
    from .classification import valid_rows

    layout = Layout.of(num_classes, task, input)
    check_reduction(reduction, task, input)
    s, t = layout.batch(scores, target)
    for name, ids in (("video_ids", video_ids), ("clip_ids", clip_ids)):
        check_ids(ids, s.shape[0], s.device, name)
    check_expected_clips(expected_clips)
    _, _, valid = valid_rows(layout, scores, target, "aggregate_videos", count_prob_like=True)
    rows = s.float()
    t = t.long() if layout.rows_task == "multiclass" else (t if t.dtype == torch.bool else t != 0)
    n, vid = rows.shape[0], video_ids.long()
    cid = clip_ids.long() if clip_ids is not None else torch.zeros_like(vid)
    keep, dropped = kept_rows((n, n if clip_ids is not None else 0, n), valid, vid, cid, same_rows_in([rows], t))
    store = RowStore([rows], keep, layout.columns, max(16, ROW_BLOCK_VALUES // max(layout.columns, 1)))
    expected = None if expected_video_ids is None else torch.as_tensor(list(expected_video_ids), dtype=torch.long)
    return aggregate_rows(store, t[keep], vid[keep], dropped, layout.rows_task, input, reduction, expected, expected_clips)
