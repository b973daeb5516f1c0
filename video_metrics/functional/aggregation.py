"""Clip -> video aggregation kernels (vectorised over videos with index_add / scatter_reduce).

All reductions accumulate in float64. For each reduction the kernel returns, per video:

* ``probs``: video probabilities (multiclass rows sum to 1 for ``mean_logits``/``mean_probs``);
* ``rank``: scores that order videos within a class exactly as ``probs`` but without fp
  saturation (log-probabilities, or logits for multilabel ``mean_logits``/``max``);
* ``key``: the score whose argmax / top-k is the video prediction.

Reductions:

* ``mean_logits`` (mmaction2 ``average_clips='score'``): softmax/sigmoid of the mean logits;
* ``mean_probs`` (mmaction2 ``'prob'``, PySlowFast and torchvision's softmax sum): mean of the
  clip probabilities, computed as ``logsumexp(log p) - log n`` so nothing underflows;
* ``max`` (PySlowFast's Charades choice): per class, max over clips of the probabilities — no
  sentinel initial value, so logits far below zero aggregate correctly;
* ``vote``: majority of clip argmaxes; ties by the higher mean probability, then the lower class
  index. ``key = votes + mean_prob / 2`` realises that order (a vote outweighs any probability).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

REDUCTIONS = ("mean_logits", "mean_probs", "max", "vote")


def group_rows(video_ids: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(unique_ids (V,), inverse (N,), counts (V,))`` with ids sorted ascending."""
    uniq, inverse, counts = torch.unique(video_ids, sorted=True, return_inverse=True, return_counts=True)
    return uniq, inverse, counts


def dedup_clips(video_ids: Tensor, clip_ids: Tensor) -> Tensor:
    """Indices of the first row (in row order) of every distinct ``(video_id, clip_id)`` pair,
    sorted by (video, clip). Rows repeated by a padding sampler are dropped."""
    n = video_ids.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=video_ids.device)
    pairs = torch.stack([video_ids, clip_ids], 1)
    _, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=video_ids.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=video_ids.device), reduce="amin")
    return first


def _segment_mean(x: Tensor, inverse: Tensor, counts: Tensor) -> Tensor:
    out = torch.zeros(counts.numel(), x.shape[1], dtype=torch.float64, device=x.device)
    out.index_add_(0, inverse, x.double())
    return out / counts[:, None].double()


def _segment_max(x: Tensor, inverse: Tensor, v: int) -> Tensor:
    out = torch.full((v, x.shape[1]), -math.inf, dtype=torch.float64, device=x.device)
    idx = inverse[:, None].expand_as(x)
    return out.scatter_reduce_(0, idx, x.double(), reduce="amax", include_self=True)


def _segment_logmeanexp(logp: Tensor, inverse: Tensor, counts: Tensor) -> Tensor:
    v = counts.numel()
    m = _segment_max(logp, inverse, v)
    shifted = (logp.double() - m[inverse]).exp()
    s = torch.zeros(v, logp.shape[1], dtype=torch.float64, device=logp.device).index_add_(0, inverse, shifted)
    return m + s.log() - counts[:, None].double().log()


def aggregate(scores: Tensor, inverse: Tensor, counts: Tensor, task: str, input: str, reduction: str):
    """Aggregate clip ``scores`` (logits or probabilities, (N, C)) into videos.

    Returns ``(probs, rank, key, votes)`` per video (``votes`` is None except for ``vote``)."""
    s = scores.double()
    v = counts.numel()
    if task == "multiclass":
        logp = s.log_softmax(1) if input == "logits" else s.clamp_min(0).log()
    else:
        logp = torch.nn.functional.logsigmoid(s) if input == "logits" else s.clamp_min(0).log()
    votes = None
    if reduction == "mean_logits":
        mean = _segment_mean(s, inverse, counts)
        if task == "multiclass":
            rank = mean.log_softmax(1)
            probs = rank.exp()
        else:
            rank, probs = mean, mean.sigmoid()
        key = rank
    elif reduction == "mean_probs":
        rank = _segment_logmeanexp(logp, inverse, counts)
        probs = rank.exp()
        key = rank
    elif reduction == "max":
        if task == "multilabel" and input == "logits":
            rank = _segment_max(s, inverse, v)  # sigmoid is monotone: max logit, no saturation
            probs = rank.sigmoid()
        else:
            rank = _segment_max(logp, inverse, v)
            probs = rank.exp()
        key = rank
    elif reduction == "vote":
        if task != "multiclass":
            raise ValueError("`reduction='vote'` is defined for task='multiclass' only")
        pred = s.argmax(1)
        votes = torch.zeros(v, s.shape[1], dtype=torch.float64, device=s.device)
        votes.index_put_((inverse, pred), torch.ones_like(pred, dtype=torch.float64), accumulate=True)
        rank = _segment_logmeanexp(logp, inverse, counts)
        probs = rank.exp()
        key = votes + probs / 2
    else:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
    return probs, rank, key, votes
