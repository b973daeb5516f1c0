"""Lightning integration for video_metrics, installed as ``video_metrics.callbacks``.

This folder is mapped onto ``video_metrics.callbacks`` by setuptools' ``package-dir`` (see
pyproject.toml).

* :class:`VideoMetricsCallback`: clip- and video-level metrics and figures at validation/test end.
* :func:`log_figure`: send a matplotlib figure (or an RGB array) to every logger of a trainer
  (TensorBoard, W&B, MLflow, CSV, others as PNG files); :func:`register_figure_handler` adds a
  logger type.
"""
from .figures import log_figure, log_pr_curves, register_figure_handler, scalar_step
from .metrics import VideoMetricsCallback

__all__ = ["VideoMetricsCallback", "log_figure", "log_pr_curves", "register_figure_handler", "scalar_step"]
