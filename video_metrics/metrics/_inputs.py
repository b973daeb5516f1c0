"""Argument handling shared by the metric classes (free checks only, see functional._checks)."""
from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from ..functional._checks import INPUTS, TASKS, check_choice, check_device, check_num_classes, check_scores, check_target
from ..functional.classification import prepare_rows
from .base import VideoMetric


class ScoresMetric(VideoMetric):
    """A metric fed with ``update(scores, target)``; owns ``num_classes``, ``task``, ``input``."""

    tasks = TASKS

    def __init__(
        self,
        num_classes: int,
        task: str = "multiclass",
        input: str = "logits",
        ignore_index: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_num_classes(num_classes)
        check_choice("task", task, self.tasks)
        check_choice("input", input, INPUTS)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"`ignore_index` must be None or an int, got {ignore_index!r}")
        if ignore_index is not None and task == "multilabel":
            raise ValueError("`ignore_index` is only supported for task='multiclass'")
        self.task = task
        self.input = input
        self.ignore_index = ignore_index

    def _prepare(self, scores: Tensor, target: Tensor):
        """Free checks (raise at once), then device-side value checks. Returns
        ``(scores_f32, target_safe, valid, counts)``; pass ``counts`` to ``_count_rows`` last."""
        check_scores(scores, self.num_classes)
        check_target(target, scores, self.task)
        check_device(scores, self)
        s, t, valid, bad_t, bad_s = prepare_rows(scores, target, self.task, self.input, self.num_classes, self.ignore_index)
        return s, t, valid, (valid, bad_t, bad_s)
