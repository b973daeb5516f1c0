"""Lightning integration for video_metrics, installed as ``video_metrics.callbacks``.

This folder is mapped onto ``video_metrics.callbacks`` by setuptools' ``package-dir`` (see
pyproject.toml). The metric callback, the explain callback and the figure-to-logger fan-out
land here; for now, log ``VideoClassificationMetrics.compute()`` with ``self.log_dict``.
"""

__all__: list = []
