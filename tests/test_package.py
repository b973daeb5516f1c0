"""Packaging: the callbacks folder is importable as video_metrics.callbacks."""
import importlib


def test_callbacks_mapped():
    mod = importlib.import_module("video_metrics.callbacks")
    assert mod.__file__.replace("\\", "/").endswith("callbacks/__init__.py")
