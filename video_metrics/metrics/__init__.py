from .base import NoDataError, VideoMetric, count_collectives
from .calibration import CalibrationError
from .classification import BalancedAccuracy, ConfusionMatrix, F1Score, Precision, PrecisionRecallF1, Recall, TopKAccuracy
from .ranking import AUROC, MeanAveragePrecision, PRCurve
from .youtube8m import YouTube8MMetrics

__all__ = [
    "VideoMetric", "NoDataError", "count_collectives", "TopKAccuracy", "PrecisionRecallF1", "Precision", "Recall", "F1Score", "BalancedAccuracy",
    "ConfusionMatrix", "MeanAveragePrecision", "AUROC", "PRCurve", "CalibrationError", "YouTube8MMetrics",
]
