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
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .workspace import Workspace

REDUCTIONS = ("mean_logits", "mean_probs", "max", "vote")

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
