"""Calibration error (ECE, RMS, MCE) with reliability-diagram data."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ..functional._checks import check_choice
from ..functional.calibration import (
    ReliabilityData,
    bin_update,
    calibration_error,
    quantile_bins,
    reliability,
    uniform_edges,
)
from ..functional.classification import argmax_lowest, probabilities
from ._inputs import ScoresMetric

__all__ = ["CalibrationError"]


def confidence_and_correct(s: Tensor, t: Tensor, task: str, input: str):
    """Multiclass: top-label confidence and whether the top-1 prediction is right. Multilabel:
    the probability of every (sample, label) pair and whether the label is positive."""
    p = probabilities(s, task, input)
    if task == "multiclass":
        pred = argmax_lowest(s)
        conf = p.gather(1, pred[:, None]).squeeze(1)
        return conf, (pred == t)
    return p, t.bool()


class CalibrationError(ScoresMetric):
    """Expected (``norm="l1"``, ECE), root-mean-square (``"l2"``) or maximum (``"max"``, MCE)
    calibration error, Guo et al. 2017.

    Multiclass: top-label confidence against top-1 correctness. Multilabel: every (sample,
    label) pair's probability against the label (reliability of P(y=1)), pooled over pairs.
    ``binning="uniform"`` uses ``n_bins`` equal-width bins ``(lo, hi]`` (0 in the first bin, a
    confidence of exactly 1.0 in the last) with O(bins) state; ``"quantile"`` uses equal-mass
    bins and keeps every confidence. ``reliability()`` returns
    :class:`~video_metrics.functional.calibration.ReliabilityData` for plotting.
    """

    higher_is_better = False

    def __init__(self, num_classes: int, task: str = "multiclass", n_bins: int = 15, norm: str = "l1",
                 binning: str = "uniform", input: str = "logits", ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"`n_bins` must be a positive int, got {n_bins!r}")
        check_choice("norm", norm, ("l1", "l2", "max"))
        check_choice("binning", binning, ("uniform", "quantile"))
        self.n_bins, self.norm, self.binning = n_bins, norm, binning
        if binning == "uniform":
            self.add_sum_state("bins", torch.zeros(3, n_bins, dtype=torch.float64))
        else:
            trailing = () if task == "multiclass" else (num_classes,)
            self.add_cat_state("conf", torch.float32, trailing)
            self.add_cat_state("correct", torch.bool, trailing)
            self.add_cat_state("valid", torch.bool, ())

    def update(self, scores: Tensor, target: Tensor) -> None:
        s, t, valid, counts = self._prepare(scores, target)
        conf, correct = confidence_and_correct(s, t, self.task, self.input)
        if self.binning == "uniform":
            w = valid if self.task == "multiclass" else valid[:, None].expand_as(conf)
            self.bins += bin_update(conf, correct, w, self.n_bins)
        else:
            self.conf.append(conf)
            self.correct.append(correct)
            self.valid.append(valid)
        self._count_rows(*counts)

    def _sums_edges(self):
        if self.binning == "uniform":
            return self.bins, uniform_edges(self.n_bins, self.bins.device)
        valid = self._cat("valid")
        return quantile_bins(self._cat("conf")[valid].reshape(-1), self._cat("correct")[valid].reshape(-1), self.n_bins)

    def compute(self) -> Tensor:
        self._check_rows()
        sums, _ = self._sums_edges()
        return calibration_error(sums, self.norm)

    def reliability(self) -> ReliabilityData:
        """Per-bin mean confidence, accuracy and count, edges, ECE and MCE (synced)."""

        def run():
            self._check_rows()
            return reliability(*self._sums_edges())

        return self._synced(run)
