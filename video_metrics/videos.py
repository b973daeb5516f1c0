"""Clip rows -> videos: the exact aggregation behind :class:`~video_metrics.suite.VideoAggregator`
and the suite's video level (:func:`aggregate_videos`), and :class:`EvalContext`, the suite's
gathered rows as the analyses read them (bootstrap intervals, slices, comparisons).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .functional._checks import check_choice
from .functional.aggregation import (REDUCTIONS, aggregate_blocks, duplicate_pairs, group_rows, rows_at, video_key,
                                     video_probs, video_targets)
from .levels import Level, RowStore, block_sizes

__all__ = ["Coverage", "AggregatedVideos", "aggregate_videos", "check_reduction", "EvalContext", "kept_rows",
           "same_rows_in", "missing_video_ids"]


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
    with no clip; ``videos_with_fewer_clips``: videos with fewer than ``expected_clips`` clips."""

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
    probability / 2); ``votes``: clip-argmax counts (``vote`` only); ``num_clips`` per video."""

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
    check_choice(name, reduction, REDUCTIONS)
    if reduction == "mean_logits" and input == "probs":
        raise ValueError(f"`{name}='mean_logits'` needs input='logits'; with probabilities use 'mean_probs'")
    if reduction == "vote" and task != "multiclass":
        raise ValueError(f"`{name}='vote'` is defined for task='multiclass' only (task={task!r}: use 'mean_probs', "
                         "'mean_logits' or 'max')")


def aggregate_videos(rows, t, vid, dropped, task, input, reduction, expected_video_ids=None, expected_clips=None,
                     full: bool = True, workspace=None) -> AggregatedVideos:
    """Aggregate the kept clip rows (a :class:`RowStore`, or one ``(N, C)`` tensor) into videos.
    ``full=False`` (the suite) leaves ``scores`` and ``key`` to be derived block by block from
    ``rank`` (and ``votes``), so that only one ``(videos, classes)`` float64 array is kept;
    ``workspace`` (a :class:`~video_metrics.functional.workspace.Workspace`): memory to carve it from."""
    if isinstance(rows, Tensor):
        rows = RowStore([rows], None, rows.shape[1], block_sizes(rows.shape[0], rows.shape[1])[0])
    dev = t.device
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


class EvalContext:
    """The suite's kept rows after the sync (valid, de-duplicated), with the levels already
    computed from them, for the analyses that re-read them: every subset is a mask over the kept
    rows (``rows_mask``), and :meth:`clip_level` / :meth:`video_level` evaluate it as a fresh suite
    would."""

    def __init__(self, config, rows: RowStore, t: Tensor, vid: Tensor, clip_ids: Optional[Tensor], dropped: int,
                 has_video_ids: bool, clip: Level, video: Optional[Level] = None, video_ids: Optional[Tensor] = None,
                 groups: Optional[Tensor] = None) -> None:
        self.config, self.rows, self.t, self.vid, self.clip_ids = config, rows, t, vid, clip_ids
        self.dropped, self.has_video_ids = dropped, has_video_ids
        self.clip, self.video, self.video_ids = clip, video, video_ids
        self.groups = groups  # (kept rows, G) int64, or None
        self.warned: set = set()  # warnings already given for this evaluation

    def subset_rows(self, rows_mask: Tensor) -> RowStore:
        """A :class:`RowStore` over the kept rows selected by ``rows_mask``."""
        stored = self.rows.mask
        kept = torch.nonzero(stored).squeeze(1) if stored is not None else None
        n_stored = stored.numel() if stored is not None else self.rows.n
        full = torch.zeros(n_stored, dtype=torch.bool, device=rows_mask.device)
        full[kept[rows_mask] if kept is not None else rows_mask] = True
        return RowStore(self.rows.chunks, full, self.rows.c, block_sizes(int(rows_mask.sum()), self.rows.c)[0])

    def clip_level(self, rows_mask: Optional[Tensor] = None) -> Level:
        if rows_mask is None:
            return self.clip
        return Level.of_rows(self.config, "clip", self.subset_rows(rows_mask), self.t[rows_mask])

    def missing_ids(self, seen: Tensor) -> Optional[Tensor]:
        cfg = self.config
        if cfg.expected_video_ids is None or cfg.missing != "count_as_wrong":
            return None
        return missing_video_ids(cfg.expected_ids(seen.device), seen)

    def video_level(self, rows_mask: Optional[Tensor] = None) -> Tuple[Level, Tensor, Optional[Tensor]]:
        """``(level, video ids, missing ids)``; a subset's videos have no missing ones."""
        cfg = self.config
        if rows_mask is None:
            return self.video, self.video_ids, self.missing_ids(self.video_ids)
        t, vid = self.t[rows_mask], self.vid[rows_mask]
        agg = aggregate_videos(self.subset_rows(rows_mask), t, vid, 0, cfg.row_task, cfg.input, cfg.video_reduction,
                               full=False)
        return Level.of_videos(cfg, cfg.video_reduction, agg), agg.video_ids, None
