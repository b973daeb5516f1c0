from .base import NoDataError, VideoMetric, count_collectives
from .calibration import CalibrationError
from .classification import BalancedAccuracy, ConfusionMatrix, PrecisionRecallF1, TopKAccuracy
from .ranking import AUROC, MeanAveragePrecision, PRCurve

__all__ = [
    "VideoMetric", "NoDataError", "count_collectives", "TopKAccuracy", "PrecisionRecallF1", "BalancedAccuracy",
    "ConfusionMatrix", "MeanAveragePrecision", "AUROC", "PRCurve", "CalibrationError",
]
