"""video_metrics: the evaluation layer for video classification.

GPU-resident, distributed-safe metrics (``torchmetrics.Metric`` subclasses) checked against
scikit-learn, clip-to-video aggregation, explanations and Lightning callbacks.
"""
from .functional.calibration import ReliabilityData
from .functional.ranking import PRCurveData
from .metrics import (
    AUROC,
    BalancedAccuracy,
    CalibrationError,
    ConfusionMatrix,
    MeanAveragePrecision,
    PRCurve,
    PrecisionRecallF1,
    TopKAccuracy,
    VideoMetric,
    count_collectives,
)

__version__ = "0.1.0"

__all__ = [
    "TopKAccuracy", "PrecisionRecallF1", "BalancedAccuracy", "ConfusionMatrix", "MeanAveragePrecision",
    "AUROC", "PRCurve", "CalibrationError", "VideoMetric", "count_collectives", "ReliabilityData", "PRCurveData",
]
