"""video_metrics: the evaluation layer for video classification.

GPU-resident, distributed-safe metrics (``torchmetrics.Metric`` subclasses) checked against
scikit-learn, clip-to-video aggregation, explanations and Lightning callbacks.

Names are imported on first use (PEP 562): ``import video_metrics`` and the command line's
``--help`` do not pay for torchmetrics, Lightning, matplotlib or SciPy until something needs them.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Dict

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS: Dict[str, str] = {
    **{name: "metrics" for name in (
        "TopKAccuracy", "PrecisionRecallF1", "Precision", "Recall", "F1Score", "BalancedAccuracy", "ConfusionMatrix",
        "MeanAveragePrecision", "AUROC", "PRCurve", "CalibrationError", "YouTube8MMetrics", "VideoMetric",
        "count_collectives")},
    "ReliabilityData": "functional.calibration",
    "PRCurveData": "functional.ranking",
    "stable_id": "ids",
    "IdRegistry": "ids",
    **{name: "suite" for name in (
        "VideoAggregator", "AggregatedVideos", "Coverage", "VideoClassificationMetrics", "SuiteReport", "LevelReport",
        "PRESETS")},
    "Comparison": "compare",
    "SliceResult": "slices",
    "ActionMetrics": "actions",
    "write_report": "report",
    "summarize_runs": "runs",
    "RunSummary": "runs",
}

__all__ = list(_EXPORTS) + ["compare"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'video_metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``video_metrics.compare`` is the function :func:`~video_metrics.compare.compare`, although a
    submodule has that name: when the import system records the submodule on the package, the
    name keeps meaning the function (as it did when this package imported everything up front)."""

    @property
    def compare(self):
        return importlib.import_module(".compare", __name__).compare

    @compare.setter
    def compare(self, value) -> None:
        pass


sys.modules[__name__].__class__ = _Package
