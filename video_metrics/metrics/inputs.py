"""Argument handling shared by the metric classes (free checks only, see functional.checks).

``task="binary"``: scores ``(N,)`` (one logit or probability of the positive class per row) and
targets ``(N,)`` in {0, 1}. Internally a binary batch takes one of two layouts, chosen by the
metric class (``binary_layout``):

* ``"one_label"`` (ranking, calibration, precision/recall/F1): a multilabel problem with one
  label — AP, AUROC and PR curve of the positive class, ECE of P(y=1) against the label
  (scikit-learn's ``calibration_curve``, torchmetrics' ``BinaryCalibrationError``), precision,
  recall and F1 of the positive class with ``p > threshold`` (scikit-learn's ``average="binary"``);
* ``"two_class"`` (top-1 accuracy, balanced accuracy, confusion matrix): a two-class problem
  with logits ``[0, x]`` or probabilities ``[1 - p, p]``, so the prediction is 1 exactly when
  ``p > 0.5`` (a tie goes to the lower class, 0).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ..functional.checks import TASKS, Layout, check_device
from ..functional.classification import prepare_rows
from .base import VideoMetric


class ScoresMetric(VideoMetric):
    """A metric fed with ``update(scores, target)``; owns ``num_classes``, ``task``, ``input``
    (read through a :class:`~video_metrics.functional.checks.Layout`, as its functional twin)."""

    tasks = TASKS
    binary_layout = "one_label"
    #: whether the value depends on ``input`` (logits vs probabilities): such metrics count the
    #: rows that look like probabilities and warn at compute() when every row does (input="logits")
    uses_probabilities = True

    def __init__(
        self,
        num_classes: Optional[int] = None,
        task: str = "multiclass",
        input: str = "logits",
        ignore_index: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._layout = Layout.of(num_classes, task, input, ignore_index, self.binary_layout, self.tasks)
        self.num_classes, self.task, self.input, self.ignore_index = self._layout.num_classes, task, input, ignore_index
        self._task, self._c = self._layout.rows_task, self._layout.columns  # the layout the kernels see
        if self.uses_probabilities and input == "logits":
            self.add_sum_state("n_prob_like", torch.zeros((), dtype=torch.long))

    def _check_batch(self, scores: Tensor, target: Tensor):
        """Free (shape, dtype, device) checks, raised at once; returns the batch in the kernels'
        layout (see :class:`~video_metrics.functional.checks.Layout`)."""
        scores, target = self._layout.batch(scores, target)
        check_device(scores, self)
        return scores, target

    def _prepare(self, scores: Tensor, target: Tensor):
        """Free checks (raise at once), then device-side value checks. Returns
        ``(scores_f32, target_safe, valid, counts)``; pass ``counts`` to ``_count_rows`` last."""
        scores, target = self._check_batch(scores, target)
        count = self.uses_probabilities and self.input == "logits"
        s, t, valid, bad_t, bad_s, prob_like = prepare_rows(scores, target, self._task, self.input, self._c,
                                                            self.ignore_index, count_prob_like=count)
        if count:
            self.n_prob_like += prob_like
        return s, t, valid, (valid, bad_t, bad_s)
