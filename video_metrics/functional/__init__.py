"""The functional API: every metric of :mod:`video_metrics.metrics` (and the clip-to-video
aggregation of :class:`~video_metrics.suite.VideoAggregator`) as a function of all rows at once,
``functional.<metric>(scores, target, ...)``, with the class's options and conventions (each
class counts its batches with the same kernels and reduces its synced state with the same
reduction). Bad rows raise at once, with the message ``compute()`` would give.

>>> import torch
>>> from video_metrics import functional as F
>>> scores = torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 1.5], [0.3, 2.2, 0.4], [1.1, 0.9, 0.2]])
>>> target = torch.tensor([0, 2, 1, 1])
>>> F.top_k_accuracy(scores, target, num_classes=3)
tensor(0.7500, dtype=torch.float64)
>>> F.confusion_matrix(scores, target, num_classes=3)
tensor([[1, 0, 0],
        [1, 1, 0],
        [0, 0, 1]])

Below this API, the submodules hold the kernels the classes, the suite and the analyses share
(:mod:`~video_metrics.functional.classification`, :mod:`~video_metrics.functional.ranking`,
:mod:`~video_metrics.functional.calibration`, :mod:`~video_metrics.functional.aggregation`, ...).
"""
from .aggregation import aggregate_videos
from .calibration import calibration_error, fit_temperature, reliability
from .classification import (
    balanced_accuracy,
    confusion_matrix,
    f1_score,
    precision,
    precision_recall_f1,
    recall,
    top_k_accuracy,
)
from .rank_metrics import auroc, average_precision, mean_average_precision, pr_curve
from .youtube8m import youtube8m_metrics

__all__ = [
    "top_k_accuracy", "precision_recall_f1", "precision", "recall", "f1_score", "balanced_accuracy",
    "confusion_matrix", "average_precision", "mean_average_precision", "auroc", "pr_curve", "calibration_error",
    "reliability", "aggregate_videos", "fit_temperature", "youtube8m_metrics",
]
