"""Clip rows -> videos: the exact aggregation behind :class:`~video_metrics.suite.VideoAggregator`
and the suite's video level (:func:`aggregate_videos`), and :class:`EvalContext`, the suite's
gathered rows as the analyses read them (bootstrap intervals, slices, comparisons).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .functional.aggregation import RowStore, aggregate_rows, missing_video_ids
from .levels import Level, block_sizes

__all__ = ["EvalContext"]


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
        """The clip level of a subset of the kept rows (all of them: the suite's own)."""
        if rows_mask is None:
            return self.clip
        return Level.of_rows(self.config, "clip", self.subset_rows(rows_mask), self.t[rows_mask])

    def missing_ids(self, seen: Tensor) -> Optional[Tensor]:
        """The expected video ids missing from ``seen`` when they count as wrong, else None."""
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
        agg = aggregate_rows(self.subset_rows(rows_mask), t, vid, 0, cfg.row_task, cfg.input, cfg.video_reduction,
                             full=False)
        return Level.of_videos(cfg, cfg.video_reduction, agg), agg.video_ids, None
