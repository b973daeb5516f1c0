"""What the analyses need to know about a suite: its options, frozen, never its states.

The levels (:mod:`video_metrics.levels`), the bootstrap, slices, views, temperature scaling,
comparisons and the class-sharded compute take a :class:`SuiteConfig` (the suite's ``config``)
and the rows they evaluate, instead of reaching into the suite object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["SuiteConfig"]


@dataclass(frozen=True)
class SuiteConfig:
    """A suite's options as the analyses read them.

    ``task``: ``"multiclass"``, ``"multilabel"`` or ``"binary"``; ``num_classes`` (binary: 1);
    ``input``: ``"logits"``/``"probs"``; ``top_k`` (multiclass; empty otherwise);
    ``video_reduction``; the policies (``predicted_absent``, ``ap_empty_class``,
    ``auroc_empty_class``, ``empty_videos``, ``ap_mode``, ``threshold``, ``calibration_bins``);
    ``preset``; expected videos (``expected_video_ids``, ``missing``, ``expected_clips``); the
    bootstrap (``bootstrap``, ``ci``, ``bootstrap_unit``, ``seed``); slices (``slices``: group
    column names, ``class_sets``: ``((name, value), classes)`` pairs, ``min_slice_size``);
    histogram mode (``bins``, ``bin_range``); ``class_names``.

    >>> from video_metrics import VideoClassificationMetrics
    >>> cfg = VideoClassificationMetrics(10, video_reduction="mean_logits").config
    >>> cfg.task, cfg.columns, cfg.row_task, cfg.top_k, cfg.video_reduction
    ('multiclass', 10, 'multiclass', (1, 5), 'mean_logits')
    """

    task: str
    num_classes: int
    input: str = "logits"
    top_k: Tuple[int, ...] = ()
    video_reduction: Optional[str] = None
    calibration_bins: int = 15
    threshold: float = 0.5
    ap_mode: str = "step"
    ap_empty_class: str = "skip"
    auroc_empty_class: str = "skip"
    predicted_absent: str = "ignore"
    empty_videos: str = "keep"
    preset: Optional[str] = None
    missing: str = "ignore"
    expected_video_ids: Optional[Tuple[int, ...]] = None
    expected_clips: Optional[int] = None
    bootstrap: int = 0
    ci: float = 0.95
    bootstrap_unit: str = "video"
    seed: int = 0
    slices: Tuple[str, ...] = ()
    class_sets: Tuple[Tuple[Tuple[str, str], Tuple[int, ...]], ...] = ()
    min_slice_size: int = 30
    bins: Optional[int] = None
    bin_range: float = 20.0
    class_names: Tuple[str, ...] = field(default=(), repr=False)

    @property
    def columns(self) -> int:
        """Score columns of a row (binary rows keep one column: the positive class)."""
        return 1 if self.task == "binary" else self.num_classes

    @property
    def row_task(self) -> str:
        """The task of a row's columns: binary rows are one multilabel column."""
        return "multilabel" if self.task == "binary" else self.task

    def expected_ids(self, device) -> Optional[Tensor]:
        """``expected_video_ids`` as an int64 tensor on ``device`` (None when not given)."""
        if self.expected_video_ids is None:
            return None
        return torch.tensor(self.expected_video_ids, dtype=torch.long, device=device)

    def class_set_dict(self) -> Dict[Tuple[str, str], List[int]]:
        """The class sets as a dict ``{(level, name): class indices}``."""
        return {k: list(v) for k, v in self.class_sets}
