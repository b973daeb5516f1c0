"""Saliency -> proxy bounding boxes (per frame), with ``scipy.ndimage`` connected components.

These are *proxy* boxes: where a heatmap is high, not detections. Coarse maps (a 3D CNN's last
block is often 1/8 or 1/16 of the input) make them loose; score explanations with
:func:`~video_metrics.explain.pointing_game` rather than box IoU unless objects are large.
"""
from __future__ import annotations

from typing import List, NamedTuple

import numpy as np
from scipy import ndimage
from torch import Tensor

__all__ = ["Box", "saliency_to_boxes"]

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


class Box(NamedTuple):
    """A box in pixel coordinates of the frame: columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``
    (``x1``, ``y1`` exclusive, like slicing ``frame[y0:y1, x0:x1]``); ``score`` is the peak
    heatmap value inside the component (in [0, 1] for normalised maps).

    >>> from video_metrics.explain import Box
    >>> b = Box(x0=3, y0=2, x1=7, y1=5, score=1.0)
    >>> (b.x1 - b.x0) * (b.y1 - b.y0)
    12
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float


def saliency_to_boxes(heatmaps: Tensor, threshold: float = 0.2, mode: str = "largest") -> List[List[List[Box]]]:
    """Boxes around salient regions, ``boxes[clip][frame]`` = list of :class:`Box`.

    Per frame, pixels ``>= threshold * (max of the clip)`` (the *clip's* max, so frames without
    salient content get no box, as in the CAM paper's 20% rule) are grouped into 8-connected
    components; ``mode="largest"`` keeps the component with most pixels (ties: the higher peak),
    ``"all"`` keeps every component, by decreasing peak. ``heatmaps``: ``(N, T, H, W)``.

    >>> import torch
    >>> from video_metrics.explain import saliency_to_boxes
    >>> maps = torch.zeros(1, 1, 8, 8)
    >>> maps[0, 0, 2:5, 3:7] = 1.0
    >>> saliency_to_boxes(maps)
    [[[Box(x0=3, y0=2, x1=7, y1=5, score=1.0)]]]
    """
    if mode not in ("largest", "all"):
        raise ValueError(f"`mode` must be 'largest' or 'all', got {mode!r}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold!r}")
    if heatmaps.dim() != 4:
        raise ValueError(f"`heatmaps` must be (N, T, H, W), got shape {tuple(heatmaps.shape)}")
    maps = heatmaps.detach().float().cpu().numpy()
    out: List[List[List[Box]]] = []
    for clip in maps:
        peak = float(clip.max())
        frames: List[List[Box]] = []
        for frame in clip:
            if peak <= 0:
                frames.append([])
                continue
            labels, k = ndimage.label(frame >= threshold * peak, structure=_EIGHT)
            if k == 0:
                frames.append([])
                continue
            idx = np.arange(1, k + 1)
            sizes = ndimage.sum_labels(np.ones_like(frame), labels, idx)
            peaks = ndimage.maximum(frame, labels, idx)
            slices = ndimage.find_objects(labels)
            boxes = [Box(int(sl[1].start), int(sl[0].start), int(sl[1].stop), int(sl[0].stop), float(pk))
                     for sl, pk in zip(slices, peaks)]
            if mode == "largest":
                best = max(range(k), key=lambda i: (sizes[i], peaks[i]))
                frames.append([boxes[best]])
            else:
                frames.append(sorted(boxes, key=lambda b: -b.score))
        out.append(frames)
    return out
