"""Lightning integration for video_metrics, installed as ``video_metrics.callbacks``.

This folder is mapped onto ``video_metrics.callbacks`` by setuptools' ``package-dir`` (see
pyproject.toml).

* :class:`VideoMetricsCallback`: clip- and video-level metrics and figures at validation/test end.
* :class:`ExplainCallback`: Grad-CAM / Grad-CAM++ / attention-rollout overlays of a few
  validation clips, with proxy boxes (and pointing-game scores when true boxes are given).
* :func:`log_figure`: send a matplotlib figure (or an RGB array) to every logger of a trainer
  (TensorBoard, W&B, MLflow, CSV, others as PNG files); :func:`register_figure_handler` adds a
  logger type.
"""
from .figures import log_figure, log_pr_curves, log_video, register_figure_handler, scalar_step
from .explain import ExplainCallback
from .metrics import VideoMetricsCallback

__all__ = ["VideoMetricsCallback", "ExplainCallback", "log_figure", "log_video", "log_pr_curves", "register_figure_handler",
           "scalar_step"]
