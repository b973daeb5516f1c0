"""Calibration error (ECE, RMS, MCE) with reliability-diagram data."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from ..functional.calibration import (
    ReliabilityData,
    bin_update,
    binned_calibration_error,
    binned_reliability,
    calibration_layout,
    calibration_rows,
    quantile_bins,
    uniform_edges,
)
from .inputs import ScoresMetric

__all__ = ["CalibrationError"]


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

    >>> import torch
    >>> from video_metrics import CalibrationError
    >>> metric = CalibrationError(task="binary", n_bins=2, input="probs")
    >>> metric.update(torch.tensor([0.9, 0.8, 0.3, 0.6]), torch.tensor([1, 1, 0, 0]))
    >>> metric.compute()  # bins (0, 0.5] and (0.5, 1]: gaps 0.3 (1 row) and 0.1 (3 rows)
    tensor(0.1500, dtype=torch.float64)
    >>> metric.reliability().count.tolist()
    [1, 3]
    """

    higher_is_better = False

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", n_bins: int = 15, norm: str = "l1",
                 binning: str = "uniform", input: str = "logits", ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        calibration_layout(num_classes, task, n_bins, norm, binning, input, ignore_index)
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        self.n_bins, self.norm, self.binning = n_bins, norm, binning
        if binning == "uniform":
            self.add_sum_state("bins", torch.zeros(3, n_bins, dtype=torch.float64))
        else:
            trailing = () if self._task == "multiclass" else (self._c,)
            self.add_cat_state("conf", torch.float64, trailing)
            self.add_cat_state("correct", torch.bool, trailing)
            self.add_cat_state("valid", torch.bool, ())

    def update(self, scores: Tensor, target: Tensor) -> None:
        """Add a batch: free checks raise at once; rows with bad values are counted and left out (no host sync)."""
        s, t, valid, counts = self._prepare(scores, target)
        conf, correct, w = calibration_rows(self._layout, scores, s, t, valid)
        if self.binning == "uniform":
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
        """The calibration error of every valid row so far, synced (float64)."""
        self._check_rows()
        sums, _ = self._sums_edges()
        return binned_calibration_error(sums, self.norm)

    def plot(self, val: Any = None, ax: Any = None) -> Tuple[Any, Any]:
        """The reliability diagram (``val=None`` or a :class:`ReliabilityData`), or, for a
        value or a list of values of ``compute()``, torchmetrics' scalar plot."""
        if val is not None and not isinstance(val, ReliabilityData):
            return self._plot(val, ax)
        from .draw import draw_reliability, figure_and_axes

        rel = self.reliability() if val is None else val
        fig, ax = figure_and_axes(ax, 6, 5)
        draw_reliability(ax, rel, title="Reliability diagram")
        return fig, ax

    def reliability(self) -> ReliabilityData:
        """Per-bin mean confidence, accuracy and count, edges, ECE and MCE (synced)."""

        def run():
            self._check_rows()
            return binned_reliability(*self._sums_edges())

        return self.synced(run)
