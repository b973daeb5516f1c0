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
    F1Score,
    MeanAveragePrecision,
    PRCurve,
    Precision,
    PrecisionRecallF1,
    Recall,
    TopKAccuracy,
    VideoMetric,
    count_collectives,
)

__version__ = "0.1.0"

__all__ = [
    "TopKAccuracy", "PrecisionRecallF1", "Precision", "Recall", "F1Score", "BalancedAccuracy", "ConfusionMatrix", "MeanAveragePrecision",
    "AUROC", "PRCurve", "CalibrationError", "VideoMetric", "count_collectives", "ReliabilityData", "PRCurveData",
]

from .ids import IdRegistry, stable_id  # noqa: E402
from .suite import (  # noqa: E402
    PRESETS,
    AggregatedVideos,
    Coverage,
    LevelReport,
    SuiteReport,
    VideoAggregator,
    VideoClassificationMetrics,
)

__all__ += ["stable_id", "IdRegistry", "VideoAggregator", "AggregatedVideos", "Coverage", "VideoClassificationMetrics",
            "SuiteReport", "LevelReport", "PRESETS"]
from .compare import Comparison, compare  # noqa: E402
from .slices import SliceResult  # noqa: E402

__all__ += ["compare", "Comparison", "SliceResult"]
from .actions import ActionMetrics  # noqa: E402

__all__ += ["ActionMetrics"]
