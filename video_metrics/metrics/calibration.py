"""Calibration error (ECE, RMS, MCE) with reliability-diagram data."""
from __future__ import annotations

from typing import Any, Optional, Tuple

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


def confidence_and_correct(s: Tensor, t: Tensor, task: str, input: str, raw: Optional[Tensor] = None,
                           valid: Optional[Tensor] = None):
    """Multiclass: top-label confidence and whether the top-1 prediction is right. Multilabel:
    the probability of every (sample, label) pair and whether the label is positive.

    ``raw``: the scores as given; when they are float64 the confidences are computed from them
    in float64 (``s`` is the fp32 copy, which decides the prediction), so that a probability
    given in float64 is binned as given."""
    if raw is not None and raw.dtype == torch.float64:
        keep = valid[:, None] if valid is not None else torch.ones((), dtype=torch.bool, device=raw.device)
        p = probabilities(torch.where(keep, raw, torch.zeros((), dtype=raw.dtype, device=raw.device)), task, input)
    else:
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
    Binary (scores ``(N,)``): P(y=1) against the label, as scikit-learn's ``calibration_curve``
    and torchmetrics' ``BinaryCalibrationError``. A confidence exactly on a bin edge ``m/M``
    falls in bin ``m`` (decided on the real numbers, in the dtype given; see
    :func:`~video_metrics.functional.calibration.bin_index`).
    ``binning="uniform"`` uses ``n_bins`` equal-width bins ``(lo, hi]`` (0 in the first bin, a
    confidence of exactly 1.0 in the last) with O(bins) state; ``"quantile"`` uses equal-mass
    bins and keeps every confidence. ``reliability()`` returns
    :class:`~video_metrics.functional.calibration.ReliabilityData` for plotting.
    """

    higher_is_better = False

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", n_bins: int = 15, norm: str = "l1",
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
            trailing = () if self._task == "multiclass" else (self._c,)
            self.add_cat_state("conf", torch.float64, trailing)
            self.add_cat_state("correct", torch.bool, trailing)
            self.add_cat_state("valid", torch.bool, ())

    def update(self, scores: Tensor, target: Tensor) -> None:
        s, t, valid, counts = self._prepare(scores, target)
        raw = scores[:, None] if self.task == "binary" else scores
        conf, correct = confidence_and_correct(s, t, self._task, self.input, raw=raw, valid=valid)
        if self.binning == "uniform":
            w = valid if self._task == "multiclass" else valid[:, None].expand_as(conf)
            self.bins += bin_update(conf, correct, w, self.n_bins)
        else:
            self.conf.append(conf.double())
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

    def plot(self, val: Any = None, ax: Any = None) -> Tuple[Any, Any]:
        """The reliability diagram (``val=None`` or a :class:`ReliabilityData`), or, for a
        value or a list of values of ``compute()``, torchmetrics' scalar plot."""
        if val is not None and not isinstance(val, ReliabilityData):
            return self._plot(val, ax)
        from ._draw import draw_reliability, figure_and_axes

        rel = self.reliability() if val is None else val
        fig, ax = figure_and_axes(ax, 6, 5)
        draw_reliability(ax, rel, title="Reliability diagram")
        return fig, ax

    def reliability(self) -> ReliabilityData:
        """Per-bin mean confidence, accuracy and count, edges, ECE and MCE (synced)."""

        def run():
            self._check_rows()
            return reliability(*self._sums_edges())

        return self.synced(run)
