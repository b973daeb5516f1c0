"""Seeded synthetic video clips: a shape moving over a noisy background, with its true box.

The class is ``shape x direction`` (``square``, ``disk``, ``cross`` x ``right``, ``left``, ``down``,
``up`` = 12 classes), so a model has to use time (one frame cannot tell ``right`` from ``left``).
Every frame comes with the object's box, so explanations can be scored (pointing game). Clips
of one video follow the same trajectory at different start times, with their own noise: clip-
and video-level numbers differ as with real multi-clip testing. The multi-label variant puts two
objects of different classes in each clip; its target is multi-hot.

``missing_evidence`` makes multi-clip testing realistic: in that fraction of the clips the object
is occluded for a run of frames, appears late, leaves (is hidden from some frame on), or is
absent from the whole clip (a quarter each), so single clips can be undecidable while their video
is not. ``ClipSet.visible`` says in which frames each object is drawn; hidden frames have empty
boxes ``(0, 0, 0, 0)``.

Vectorised with torch (no Python loop over clips or frames): thousands of 16 x 64 x 64 clips in
a few seconds, stored as ``uint8`` (``MovingObjectClips`` converts items to float in [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SHAPES", "DIRECTIONS", "CLASS_NAMES", "ClipSet", "moving_object_clips", "MovingObjectClips"]

SHAPES = ("square", "disk", "cross")
DIRECTIONS = ("right", "left", "down", "up")
CLASS_NAMES = [f"{s}_{d}" for s in SHAPES for d in DIRECTIONS]
_DIR = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # (dx, dy) per frame, in units of speed


@dataclass
class ClipSet:
    """``clips``: (N, 3, T, H, W) uint8 RGB (layout NCTHW); ``target``: (N,) int64 class or
    (N, C) multi-hot; ``boxes``: (N, K, T, 4) int64 ``x0, y0, x1, y1`` (exclusive ends) of each
    of the ``K`` objects in every frame; ``labels``: (N, K) class of each object; ``video_ids``,
    ``clip_ids``: (N,) int64; ``class_names``; ``visible``: (N, K, T) bool, frames where each
    object is drawn (all True without ``missing_evidence``)."""

    clips: Tensor
    target: Tensor
    boxes: Tensor
    labels: Tensor
    video_ids: Tensor
    clip_ids: Tensor
    class_names: List[str]
    visible: Optional[Tensor] = None

    def __len__(self) -> int:
        return self.clips.shape[0]

    def float_clips(self, idx=slice(None)) -> Tensor:
        """Clips ``idx`` as float32 in [0, 1], ``(N, 3, T, H, W)``."""
        return self.clips[idx].float().div_(255.0)


def _masks(shape: Tensor, cx: Tensor, cy: Tensor, r: Tensor, size: int) -> Tensor:
    """(N, T, H, W) bool masks of shapes centred at (cx, cy) (N, T) with half-size r (N,)."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = coords[None, None, None, :] - cx[..., None, None]
    dy = coords[None, None, :, None] - cy[..., None, None]
    rr = r[:, None, None, None]
    adx, ady = dx.abs(), dy.abs()
    square = (adx <= rr) & (ady <= rr)
    disk = dx * dx + dy * dy <= rr * rr
    arm = rr / 2.5
    cross = square & ((adx <= arm) | (ady <= arm))
    s = shape[:, None, None, None]
    return torch.where(s == 0, square, torch.where(s == 1, disk, cross))


def moving_object_clips(num_videos: int, clips_per_video: int = 1, frames: int = 16, size: int = 64,
                        multilabel: bool = False, noise: float = 0.25, seed: int = 0,
                        missing_evidence: float = 0.0) -> ClipSet:
    """Generate ``num_videos * clips_per_video`` clips (see the module docstring).

    Object half-size is ``size/8``, speed ``size / (2.5 * frames)`` pixels per frame, so an object
    crosses about 40% of the frame within a clip; positions keep the whole object inside the frame.
    Colours are random (bright, one per object); the background is uniform noise of amplitude
    ``noise``. ``missing_evidence`` in [0, 1]: the fraction of clips with partly or wholly missing
    evidence (module doc); it draws from a generator of its own, so the clips are otherwise the
    same as without it.
    """
    if not 0.0 <= float(missing_evidence) <= 1.0:
        raise ValueError(f"`missing_evidence` must be in [0, 1], got {missing_evidence!r}")
    if num_videos < 1 or clips_per_video < 1 or frames < 2 or size < 16:
        raise ValueError("need num_videos >= 1, clips_per_video >= 1, frames >= 2 and size >= 16")
    g = torch.Generator().manual_seed(int(seed))
    k = 2 if multilabel else 1
    nv, n = num_videos, num_videos * clips_per_video
    c = len(CLASS_NAMES)
    if multilabel:
        first = torch.randint(0, c, (nv,), generator=g)
        second = (first + torch.randint(1, c, (nv,), generator=g)) % c  # a different class
        vlabels = torch.stack([first, second], 1)
    else:
        vlabels = torch.randint(0, c, (nv, 1), generator=g)
    shape, direction = vlabels // len(DIRECTIONS), vlabels % len(DIRECTIONS)
    r = torch.full((nv, k), size / 8.0)
    speed = size / (2.5 * frames)
    # the trajectory spans the clip plus the offsets of the later clips of the video
    span = speed * (frames - 1 + (clips_per_video - 1) * frames / 4)
    lo = r + 1.0
    hi = size - r - 1.0
    d = _DIR[direction]  # (nv, k, 2)
    start = torch.empty(nv, k, 2)
    for axis in range(2):
        u = torch.rand(nv, k, generator=g)
        moving = d[..., axis] != 0
        # moving axis: room for the whole span; other axis: anywhere
        s_lo = torch.where(moving & (d[..., axis] < 0), lo + span, lo)
        s_hi = torch.where(moving & (d[..., axis] > 0), hi - span, hi)
        start[..., axis] = s_lo + u * (s_hi - s_lo).clamp_min(0)
    vid = torch.arange(nv).repeat_interleave(clips_per_video)
    clip_in_video = torch.arange(clips_per_video).repeat(nv)
    t = clip_in_video[:, None].float() * (frames / 4) + torch.arange(frames).float()[None, :]  # (n, T)
    pos = start[vid][:, :, None, :] + d[vid][:, :, None, :] * speed * t[:, None, :, None]  # (n, k, T, 2)
    colours = 0.6 + 0.4 * torch.rand(nv, k, 3, generator=g)
    clips = torch.empty(n, 3, frames, size, size, dtype=torch.uint8)
    boxes = torch.zeros(n, k, frames, 4, dtype=torch.long)
    rn = r[vid]
    visible = _visibility(n, k, frames, float(missing_evidence), seed)
    ar = torch.arange(size)
    for s0 in range(0, n, 256):  # chunks bound the float working memory
        sl = slice(s0, min(s0 + 256, n))
        video = noise * torch.rand(sl.stop - sl.start, 3, frames, size, size, generator=g)
        for j in range(k):
            m = _masks(shape[vid[sl], j], pos[sl, j, :, 0], pos[sl, j, :, 1], rn[sl, j], size)  # (b, T, H, W)
            m &= visible[sl, j, :, None, None]
            col = colours[vid[sl], j][:, :, None, None, None]
            video = torch.where(m[:, None], col, video)
            # exact boxes of the drawn pixels: first/last column and row that hold the object
            cols, rows = m.any(2), m.any(3)  # (b, T, W), (b, T, H)
            big = size + 1
            boxes[sl, j, :, 0] = torch.where(cols, ar, big).amin(-1)
            boxes[sl, j, :, 1] = torch.where(rows, ar, big).amin(-1)
            boxes[sl, j, :, 2] = torch.where(cols, ar, -1).amax(-1) + 1
            boxes[sl, j, :, 3] = torch.where(rows, ar, -1).amax(-1) + 1
            boxes[sl, j] *= visible[sl, j, :, None]  # hidden frames: empty boxes
        clips[sl] = (video.clamp_(0, 1) * 255).round_().to(torch.uint8)
    labels = vlabels[vid]
    if multilabel:
        target = torch.zeros(n, c, dtype=torch.long)
        target.scatter_(1, labels, 1)
    else:
        target = labels[:, 0].clone()
    return ClipSet(clips, target, boxes, labels, vid, torch.arange(n), list(CLASS_NAMES), visible)


def _visibility(n: int, k: int, frames: int, fraction: float, seed: int) -> Tensor:
    """(n, k, T) bool: where each object is drawn. A ``fraction`` of the clips lose evidence, the
    same way for all their objects: occluded for a run of T/4 to T/2 frames, appearing at a frame
    in [T/4, 3T/4), leaving from such a frame on, or absent."""
    vis = torch.ones(n, k, frames, dtype=torch.bool)
    if fraction <= 0:
        return vis
    g = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    hit = torch.rand(n, generator=g) < fraction
    kind = torch.randint(0, 4, (n,), generator=g)
    q = max(1, frames // 4)
    cut = torch.randint(q, max(q + 1, frames - q), (n,), generator=g)  # in [T/4, 3T/4)
    run = torch.randint(q, max(q + 1, frames // 2 + 1), (n,), generator=g)
    start = (torch.rand(n, generator=g) * (frames - run + 1)).long()
    t = torch.arange(frames)[None, :]
    shown = torch.stack([
        (t < start[:, None]) | (t >= (start + run)[:, None]),  # occluded for a run of frames
        t >= cut[:, None],  # appears late
        t < cut[:, None],  # leaves
        torch.zeros(n, frames, dtype=torch.bool),  # absent
    ], 1)[torch.arange(n), kind]  # (n, T)
    shown = torch.where(hit[:, None], shown, torch.ones_like(shown))
    return vis & shown[:, None, :]


class MovingObjectClips(Dataset):
    """A ``Dataset`` over a :class:`ClipSet`: items are dicts with ``clip`` (3, T, H, W) float in
    [0, 1] (or (T, 3, H, W) with ``layout="NTCHW"``), ``target``, ``video_id``, ``clip_id`` and
    ``boxes`` (K, T, 4)."""

    def __init__(self, data: ClipSet, layout: str = "NCTHW") -> None:
        if layout not in ("NCTHW", "NTCHW"):
            raise ValueError(f"`layout` must be 'NCTHW' or 'NTCHW', got {layout!r}")
        self.data, self.layout = data, layout

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x = self.data.clips[i].float().div_(255.0)
        if self.layout == "NTCHW":
            x = x.transpose(0, 1)
        d = self.data
        return {"clip": x, "target": d.target[i], "video_id": d.video_ids[i], "clip_id": d.clip_ids[i], "boxes": d.boxes[i]}
