"""Heatmaps blended over clip frames, with proxy boxes: a strip of frames (matplotlib figure and
RGB array) and an animated overlay (RGB frames, written as a GIF with Pillow)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.patches import Rectangle
from torch import Tensor

from ..plots import figure_to_array, new_figure

__all__ = ["overlay_frames", "frame_indices", "overlay_animation", "write_gif"]


def frame_indices(t: int, max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced frame indices of ``t`` (first and last included).

    >>> from video_metrics.explain import frame_indices
    >>> frame_indices(16, 4).tolist(), frame_indices(3, 8).tolist()
    ([0, 5, 10, 15], [0, 1, 2])
    """
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
    returns for one clip). ``title``: e.g. the true and predicted class names with scores.

    >>> import torch
    >>> from video_metrics.explain import overlay_frames
    >>> fig, rgb = overlay_frames(torch.rand(3, 8, 32, 32), torch.rand(8, 32, 32), max_frames=4)
    >>> len(fig.axes), rgb.dtype.name, rgb.shape[2]
    (4, 'uint8', 3)
    """
    frames, h = _display(clip, heatmaps, mean, std, layout)
    idx = frame_indices(frames.shape[0], max_frames)
    jet = colormaps["jet"]
    fig = new_figure(1.9 * len(idx), 2.3)
    for j, t in enumerate(idx):
        ax = fig.add_subplot(1, len(idx), j + 1)
        ax.imshow(_blend(frames[t], h[t], alpha, jet), interpolation="nearest")
        for b in (boxes[t] if boxes is not None and t < len(boxes) else []):
            ax.add_patch(Rectangle((b.x0 - 0.5, b.y0 - 0.5), b.x1 - b.x0, b.y1 - b.y0, fill=False, edgecolor="white",
                                   linewidth=1.5, linestyle="--"))
        ax.set_title(f"t={t}", fontsize=8)
        ax.axis("off")
    suffix = " (dashed: proxy boxes from saliency)" if boxes is not None else ""
    fig.suptitle((title or "") + suffix, fontsize=9)
    fig.tight_layout()
    return fig, figure_to_array(fig)


def _display(clip: Tensor, heatmaps: Tensor, mean, std, layout: str) -> Tuple[np.ndarray, np.ndarray]:
    """Frames ``(T, H, W, 3)`` in [0, 1] (normalisation undone) and the map ``(T, H, W)`` in [0, 1]."""
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
    return frames, h


def _blend(frame: np.ndarray, heat: np.ndarray, alpha: float, cmap) -> np.ndarray:
    return (1 - alpha) * frame + alpha * cmap(heat)[..., :3]


def overlay_animation(clip: Tensor, heatmaps: Tensor, boxes: Optional[Sequence[Sequence]] = None,
                      mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                      layout: str = "CTHW", alpha: float = 0.45, min_size: int = 128) -> np.ndarray:
    """Every frame of one clip with its heatmap blended (``jet``, clip-normalised) and proxy boxes
    drawn (white), as ``(T, H', W', 3)`` uint8, enlarged by an integer factor (nearest) to at least
    ``min_size`` pixels on the short side. Arguments as :func:`overlay_frames`."""
    frames, h = _display(clip, heatmaps, mean, std, layout)
    jet = colormaps["jet"]
    out = np.stack([_blend(frames[t], h[t], alpha, jet) for t in range(frames.shape[0])])
    out = (out * 255).round().clip(0, 255).astype(np.uint8)
    for t in range(out.shape[0]):
        for b in (boxes[t] if boxes is not None and t < len(boxes) else []):
            y0, y1 = max(int(b.y0), 0), min(int(b.y1), out.shape[1]) - 1
            x0, x1 = max(int(b.x0), 0), min(int(b.x1), out.shape[2]) - 1
            if y1 < y0 or x1 < x0:
                continue
            out[t, y0, x0:x1 + 1] = out[t, y1, x0:x1 + 1] = 255
            out[t, y0:y1 + 1, x0] = out[t, y0:y1 + 1, x1] = 255
    k = max(1, -(-min_size // max(1, min(out.shape[1], out.shape[2]))))
    if k > 1:
        out = out.repeat(k, axis=1).repeat(k, axis=2)
    return out


def write_gif(frames: np.ndarray, path: str, fps: float = 4.0) -> str:
    """Write ``(T, H, W, 3)`` uint8 frames as a looping GIF (Pillow); returns ``path``."""
    from PIL import Image

    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"`frames` must be (T, H, W, 3) uint8, got shape {frames.shape}")
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=max(int(1000 / fps), 20),
                   loop=0)
    return path
