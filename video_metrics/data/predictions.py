"""Seeded, generated per-clip predictions of a video classifier (no model, no download).

Each video has a true class (or a set of classes for multi-label) and a per-video "difficulty";
each clip's logits are the video's signal plus clip noise, so aggregating clips into videos
helps, as it does with real multi-view testing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor


@dataclass
class SyntheticPredictions:
    """Per-clip ``scores`` (logits, (N, C)), ``target`` ((N,) or (N, C)), ``video_ids``,
    ``clip_ids`` (int64, (N,)) and ``class_names``."""

    scores: Tensor
    target: Tensor
    video_ids: Tensor
    clip_ids: Tensor
    class_names: List[str]


def synthetic_predictions(num_videos: int = 300, clips_per_video: int = 4, num_classes: int = 20,
                          task: str = "multiclass", seed: int = 0, signal: float = 2.0) -> SyntheticPredictions:
    """Clip scores with a known signal for tests and examples: ``num_videos`` videos of ``clips_per_video`` clips,
    logits that favour each video's class by ``signal`` (multiclass) or its labels (multilabel).

    >>> p = synthetic_predictions(num_videos=5, clips_per_video=2, num_classes=4)
    >>> p.scores.shape, p.video_ids.tolist()
    (torch.Size([10, 4]), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    """
    g = torch.Generator().manual_seed(seed)
    c = num_classes
    if task == "multiclass":
        # long-tailed class frequencies, like most video datasets
        freq = 1.0 / torch.arange(1, c + 1, dtype=torch.float64) ** 0.5
        vt = torch.multinomial(freq, num_videos, replacement=True, generator=g)
        onehot = torch.nn.functional.one_hot(vt, c).float()
    else:
        prev = 0.02 + 0.2 * torch.rand(c, generator=g)
        onehot = (torch.rand(num_videos, c, generator=g) < prev).float()
        vt = onehot.long()
    difficulty = torch.rand(num_videos, 1, generator=g)
    video_logit = signal * (1.5 - difficulty) * onehot + 0.8 * torch.randn(num_videos, c, generator=g)
    reps = clips_per_video
    scores = video_logit.repeat_interleave(reps, 0) + 1.2 * torch.randn(num_videos * reps, c, generator=g)
    target = vt.repeat_interleave(reps, 0)
    video_ids = torch.arange(num_videos, dtype=torch.long).repeat_interleave(reps)
    clip_ids = torch.arange(reps, dtype=torch.long).repeat(num_videos)
    names = [f"class_{i:03d}" for i in range(c)]
    return SyntheticPredictions(scores.float(), target, video_ids, clip_ids, names)
