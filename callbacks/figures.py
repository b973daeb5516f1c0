"""Send a figure to whatever loggers a Lightning trainer has.

Lightning has no generic image API, so :func:`log_figure` dispatches on the logger's class
*name* (so that ``pytorch_lightning`` and ``lightning.pytorch`` loggers, and subclasses, are
recognised alike):

==================  ===========================================================================
logger              what is written
==================  ===========================================================================
TensorBoardLogger   ``experiment.add_image(tag, rgb, step, dataformats="HWC")``
WandbLogger         ``logger.log_image(key=tag, images=[rgb], step=step)`` (an RGB array: no
                    pyplot needed; the ``trainer/global_step`` axis stays aligned with scalars)
MLFlowLogger        ``experiment.log_figure(run_id, figure, "figures/<tag>/step_<step>.png")``
CSVLogger           ``<log_dir>/figures/<tag>/step_<step>.png``
anything else       the same PNG under the logger's ``log_dir`` (or ``save_dir``), with a one-time
                    warning; register a handler with :func:`register_figure_handler` instead
==================  ===========================================================================

:func:`log_video` does the same for an animation (``(T, H, W, 3)`` uint8 frames): W&B gets a
``wandb.Video`` of a GIF, TensorBoard ``add_video`` when its optional dependency (``moviepy``) is
importable, MLflow an artifact, CSV and any other logger a GIF file under
``<log_dir>/videos/<tag>/step_<step>.gif`` (TensorBoard without ``moviepy`` too).

The figure is rendered once to an RGB array (only if some logger needs it). Callers render
and log on global rank zero only (``logger.experiment`` is a silent no-op elsewhere) and pass
the step Lightning used for the epoch's scalars (:func:`scalar_step`).
"""
from __future__ import annotations

import importlib.util
import os
import re
import tempfile
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from video_metrics.explain.overlay import write_gif
from video_metrics.plots import figure_to_array

__all__ = ["log_figure", "log_video", "log_pr_curves", "register_figure_handler", "scalar_step", "loggers_of"]


class _Rendered:
    """A figure and its lazily rendered RGB array."""

    def __init__(self, fig: Optional[Figure], rgb: Optional[np.ndarray] = None) -> None:
        self.fig, self._rgb = fig, rgb

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = figure_to_array(self.fig)
        return self._rgb

    def save_png(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if self.fig is not None:
            self.fig.savefig(path, format="png")
        else:
            from matplotlib.image import imsave

            imsave(path, self.rgb, format="png")


def _safe(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", tag).strip("/")


def _png_path(root: str, tag: str, step: int) -> str:
    return os.path.join(root, "figures", *_safe(tag).split("/"), f"step_{int(step):07d}.png")


def _tensorboard(logger, tag: str, fig: _Rendered, step: int) -> None:
    logger.experiment.add_image(tag, fig.rgb, global_step=step, dataformats="HWC")


def _wandb(logger, tag: str, fig: _Rendered, step: int) -> None:
    logger.log_image(key=tag, images=[fig.rgb], step=step)


def _mlflow(logger, tag: str, fig: _Rendered, step: int) -> None:
    path = f"figures/{_safe(tag)}/step_{int(step):07d}.png"
    if fig.fig is not None:
        logger.experiment.log_figure(logger.run_id, fig.fig, path)
    else:
        logger.experiment.log_image(logger.run_id, fig.rgb, path)


def _log_dir(logger) -> Optional[str]:
    for attr in ("log_dir", "save_dir"):
        d = getattr(logger, attr, None)
        if isinstance(d, (str, os.PathLike)):
            return os.fspath(d)
    return None


def _png(logger, tag: str, fig: _Rendered, step: int) -> None:
    root = _log_dir(logger)
    if root is not None:
        fig.save_png(_png_path(root, tag, step))


_HANDLERS: Dict[str, Callable[[Any, str, _Rendered, int], None]] = {
    "TensorBoardLogger": _tensorboard,
    "WandbLogger": _wandb,
    "MLFlowLogger": _mlflow,
    "CSVLogger": _png,
}
_WARNED: set = set()


def register_figure_handler(logger_class_name: str, handler: Callable[[Any, str, np.ndarray, int], None]) -> None:
    """Teach :func:`log_figure` a logger type: ``handler(logger, tag, rgb_uint8_hwc, step)``.
    Looked up by class name along the logger's MRO.

    >>> import numpy as np
    >>> from video_metrics.callbacks import log_figure, register_figure_handler
    >>> class MyLogger:
    ...     pass
    >>> seen = []
    >>> register_figure_handler("MyLogger", lambda logger, tag, rgb, step: seen.append((tag, rgb.shape, step)))
    >>> log_figure([MyLogger()], "val/fig", np.zeros((4, 6, 3), np.uint8), step=1)
    >>> seen
    [('val/fig', (4, 6, 3), 1)]
    """
    _HANDLERS[logger_class_name] = lambda lg, tag, fig, step: handler(lg, tag, fig.rgb, step)


def _handler_for(logger):
    for cls in type(logger).__mro__:
        if cls.__name__ in _HANDLERS:
            return _HANDLERS[cls.__name__]
    return None


def loggers_of(trainer_or_loggers) -> List[Any]:
    """The loggers of a ``Trainer`` (its ``loggers``), or the given logger or list of loggers."""
    if hasattr(trainer_or_loggers, "loggers"):
        return list(trainer_or_loggers.loggers)
    if isinstance(trainer_or_loggers, (list, tuple)):
        return list(trainer_or_loggers)
    return [trainer_or_loggers]


def scalar_step(trainer) -> int:
    """The step at which Lightning logs epoch-end scalars (so figures line up with them).

    >>> from types import SimpleNamespace
    >>> from video_metrics.callbacks import scalar_step
    >>> scalar_step(SimpleNamespace(global_step=7))  # a trainer without Lightning's fit loop
    7
    """
    try:
        return int(trainer.fit_loop.epoch_loop._batches_that_stepped)
    except AttributeError:
        return int(getattr(trainer, "global_step", 0))


def log_figure(trainer_or_loggers, tag: str, figure, step: int) -> None:
    """Log ``figure`` (a matplotlib ``Figure`` or an ``(H, W, 3)`` uint8 array) as ``tag`` at
    ``step`` to every logger of a trainer (or to the given loggers). Call on global rank zero.

    >>> import os, tempfile
    >>> import numpy as np
    >>> from lightning.pytorch.loggers import CSVLogger
    >>> from video_metrics.callbacks import log_figure
    >>> folder = tempfile.mkdtemp()
    >>> log_figure(CSVLogger(folder, name="run"), "val/fig", np.zeros((4, 6, 3), np.uint8), step=3)
    >>> os.listdir(os.path.join(folder, "run", "version_0", "figures", "val", "fig"))
    ['step_0000003.png']
    """
    fig = _Rendered(figure, None) if isinstance(figure, Figure) else _Rendered(None, np.asarray(figure, dtype=np.uint8))
    for logger in loggers_of(trainer_or_loggers):
        handler = _handler_for(logger)
        if handler is None:
            name = type(logger).__name__
            if name not in _WARNED:
                _WARNED.add(name)
                where = _log_dir(logger)
                warnings.warn(
                    f"video_metrics: no figure handler for logger type {name!r}; "
                    + (f"writing PNG files under {where}/figures" if where else "its figures are skipped")
                    + " (see video_metrics.callbacks.register_figure_handler)", stacklevel=2)
            handler = _png
        handler(logger, tag, fig, step)


def log_pr_curves(trainer_or_loggers, tag: str, counts, classes: Sequence[int], class_names: Sequence[str],
                  step: int) -> None:
    """TensorBoard's native PR curves (``add_pr_curve_raw``) for the given classes from
    ``counts`` ``(C, T, 4)`` = ``tp, fp, tn, fn`` at ``T`` thresholds ascending (see
    :attr:`video_metrics.suite.LevelReport.pr_counts`). Other loggers get the PR figure only.

    >>> import os, tempfile
    >>> import torch
    >>> from lightning.pytorch.loggers import TensorBoardLogger
    >>> from video_metrics.callbacks import log_pr_curves
    >>> logger = TensorBoardLogger(tempfile.mkdtemp(), name="tb")
    >>> counts = torch.tensor([[[2, 2, 0, 0], [1, 0, 2, 1], [0, 0, 2, 2]]])  # one class, 3 thresholds
    >>> log_pr_curves(logger, "val/pr", counts, classes=[0], class_names=["dog"], step=0)
    >>> logger.experiment.flush()
    >>> any(name.startswith("events.out") for name in os.listdir(logger.log_dir))
    True
    """
    counts = counts.detach().cpu().double().numpy() if hasattr(counts, "detach") else np.asarray(counts, dtype=np.float64)
    t = counts.shape[1]
    for logger in loggers_of(trainer_or_loggers):
        if not any(c.__name__ == "TensorBoardLogger" for c in type(logger).__mro__):
            continue
        writer = logger.experiment
        for c in classes:
            tp, fp, tn, fn = (counts[c, :, k] for k in range(4))
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
                recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
            name = _safe(str(class_names[c])).replace("/", "_")
            writer.add_pr_curve_raw(f"{tag}/{name}", tp, fp, tn, fn, precision, recall, global_step=step,
                                    num_thresholds=t)


def _gif_path(root: str, tag: str, step: int) -> str:
    return os.path.join(root, "videos", *_safe(tag).split("/"), f"step_{int(step):07d}.gif")


def _has_loggers_class(logger, name: str) -> bool:
    return any(c.__name__ == name for c in type(logger).__mro__)


def log_video(trainer_or_loggers, tag: str, frames, step: int, fps: float = 4.0) -> List[str]:
    """Log an animation ``frames`` ``(T, H, W, 3)`` uint8 as ``tag`` at ``step`` to every logger
    (see the module docstring for what each gets). Returns the GIF files written. Call on global
    rank zero.

    >>> import os, tempfile
    >>> import numpy as np
    >>> from lightning.pytorch.loggers import CSVLogger
    >>> from video_metrics.callbacks import log_video
    >>> folder = tempfile.mkdtemp()
    >>> written = log_video(CSVLogger(folder, name="run"), "val/clip", np.zeros((3, 8, 8, 3), np.uint8), step=0)
    >>> [os.path.relpath(w, folder) for w in written]
    ['run/version_0/videos/val/clip/step_0000000.gif']
    """
    frames = np.asarray(frames, dtype=np.uint8)
    written: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_gif = None

        def gif() -> str:
            nonlocal tmp_gif
            if tmp_gif is None:
                tmp_gif = write_gif(frames, os.path.join(tmp, f"step_{int(step):07d}.gif"), fps)
            return tmp_gif

        for logger in loggers_of(trainer_or_loggers):
            if _has_loggers_class(logger, "WandbLogger"):
                logger.log_video(key=tag, videos=[gif()], step=step, format=["gif"])
                continue
            if _has_loggers_class(logger, "TensorBoardLogger") and importlib.util.find_spec("moviepy") is not None:
                import torch

                video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None]  # (1, T, 3, H, W)
                logger.experiment.add_video(tag, video, global_step=step, fps=fps)
                continue
            if _has_loggers_class(logger, "MLFlowLogger"):
                logger.experiment.log_artifact(logger.run_id, gif(), artifact_path=f"videos/{_safe(tag)}")
                continue
            root = _log_dir(logger)
            if root is None:
                continue
            path = _gif_path(root, tag, step)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            written.append(write_gif(frames, path, fps))
    return written
