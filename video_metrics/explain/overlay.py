"""Heatmaps blended over clip frames, with proxy boxes, as a matplotlib figure and an RGB array."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.patches import Rectangle
from torch import Tensor

from ..plots import figure_to_array, new_figure

__all__ = ["overlay_frames", "frame_indices"]


def frame_indices(t: int, max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced frame indices of ``t`` (first and last included)."""
    if t <= max_frames:
        return np.arange(t)
    return np.unique(np.round(np.linspace(0, t - 1, max_frames)).astype(int))


def overlay_frames(clip: Tensor, heatmaps: Tensor, boxes: Optional[Sequence[Sequence]] = None, max_frames: int = 8,
                   mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                   layout: str = "CTHW", title: Optional[str] = None, alpha: float = 0.45):
    """One clip's frames in a row with its heatmap blended (``jet``, the clip-normalised map, so
    frames are comparable) and proxy boxes drawn; returns ``(figure, rgb_uint8)``.

    ``clip``: ``(3, T, H, W)`` (``layout="CTHW"``) or ``(T, 3, H, W)`` (``"TCHW"``), RGB; ``mean``
    and ``std`` undo the model's input normalisation (``x * std + mean``) for display.
    ``heatmaps``: ``(T, H, W)`` in [0, 1]. ``boxes``: per frame, a list of
    :class:`~video_metrics.explain.Box` (as :func:`~video_metrics.explain.saliency_to_boxes`
    returns for one clip). ``title``: e.g. the true and predicted class names with scores."""
    if layout not in ("CTHW", "TCHW"):
        raise ValueError(f"`layout` must be 'CTHW' or 'TCHW', got {layout!r}")
    x = clip.detach().float().cpu()
    if x.dim() != 4:
        raise ValueError(f"`clip` must be 4-D ({layout}), got shape {tuple(x.shape)}")
    if layout == "CTHW":
        x = x.transpose(0, 1)  # (T, 3, H, W)
    if x.shape[1] != 3:
        raise ValueError(f"`clip` must have 3 (RGB) channels, got {x.shape[1]}")
    if std is not None:
        x = x * torch.as_tensor(std, dtype=torch.float32)[None, :, None, None]
    if mean is not None:
        x = x + torch.as_tensor(mean, dtype=torch.float32)[None, :, None, None]
    frames = x.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    h = heatmaps.detach().float().cpu().clamp(0, 1).numpy()
    if h.shape != frames.shape[:3]:
        raise ValueError(f"`heatmaps` must be (T, H, W) = {frames.shape[:3]}, got {h.shape}")
    idx = frame_indices(frames.shape[0], max_frames)
    jet = colormaps["jet"]
    fig = new_figure(1.9 * len(idx), 2.3)
    for j, t in enumerate(idx):
        ax = fig.add_subplot(1, len(idx), j + 1)
        blend = (1 - alpha) * frames[t] + alpha * jet(h[t])[..., :3]
        ax.imshow(blend, interpolation="nearest")
        for b in (boxes[t] if boxes is not None and t < len(boxes) else []):
            ax.add_patch(Rectangle((b.x0 - 0.5, b.y0 - 0.5), b.x1 - b.x0, b.y1 - b.y0, fill=False, edgecolor="white",
                                   linewidth=1.5, linestyle="--"))
        ax.set_title(f"t={t}", fontsize=8)
        ax.axis("off")
    suffix = " (dashed: proxy boxes from saliency)" if boxes is not None else ""
    fig.suptitle((title or "") + suffix, fontsize=9)
    fig.tight_layout()
    return fig, figure_to_array(fig)
