"""YouTube-8M's evaluation (google/youtube-8m ``eval_util.py``, ``average_precision_calculator.py``,
``mean_average_precision_calculator.py``) from each video's top predictions only.

Definitions, as the official code computes them (``eval.py``: ``top_k=20``, ``top_n=None``):

* **Hit@1**: the share of videos whose highest score is a true label (ties: the lowest class
  index, as ``numpy.argmax``).
* **PERR**: per video with ``k`` labels, the share of its ``k`` highest scores that are true labels
  *and* above 0, averaged over all videos; a video without a label counts 0 (the official loop then
  takes every class as "top 0" and finds no label).
* **GAP**: every video's ``top_k`` (score, hit) pairs pooled into one list, ranked by score; AP
  whose denominator is every positive label of every video, including those outside the top
  ``top_k`` (the precision of each hit, summed, over all positives).
* **mAP**: per class, the same AP over the class's entries among the videos' top ``top_k`` with
  the class's positives as denominator (0 for a class with positives and no entry); the mean over
  the classes with at least one positive (``filter_empty_classes``).

**Ties** (the official code leaves them to ``argpartition`` and to a seeded shuffle): the top ``k``
of a video are its ``k`` highest scores, ties to the lower class index; equal scores in a ranked
list form one threshold and each hit among them gets the precision at the end of the group
(scikit-learn's rule, deterministic and independent of the order and number of processes). With
distinct scores every value is the official one.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def ranked_top_k(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The ``k`` highest scores of each row and their classes, ranked: score descending, ties to the
    lower class index (exactly the row's first ``k`` under that order, including at the ``k``-th
    score). No host sync: the ``k``-th value from ``topk``, the boundary filled by class index, and a
    stable sort of the ``k`` kept.

    >>> ranked_top_k(torch.tensor([[0.2, 0.9, 0.2, 0.5, 0.2]]), 3)
    (tensor([[0.9000, 0.5000, 0.2000]]), tensor([[1, 3, 0]]))
    """
    c = scores.shape[1]
    k = min(k, c)
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    greater = scores > kth
    tied = scores == kth
    member = greater | (tied & (tied.cumsum(1) <= k - greater.sum(1, keepdim=True)))
    index = torch.arange(c, device=scores.device)
    # the members in ascending class order: the k largest keys c - index among them
    cls = c - torch.topk(torch.where(member, c - index, 0), k, dim=1).values
    vals, order = torch.sort(scores.gather(1, cls), dim=1, descending=True, stable=True)
    return vals, cls.gather(1, order)


def first_labels(positive: Tensor, width: int) -> Tensor:
    """The first ``width`` positive classes of each row, ascending, padded with -1 (int64, no sync).

    >>> first_labels(torch.tensor([[False, True, False, True]]), 3)
    tensor([[ 1,  3, -1]])
    """
    c = positive.shape[1]
    index = torch.arange(c, device=positive.device)
    top = torch.topk(torch.where(positive, c - index, 0), min(width, c), dim=1).values
    out = torch.where(top > 0, c - top, -1)
    if width > c:
        out = torch.cat([out, out.new_full((out.shape[0], width - c), -1)], 1)
    return out


def video_quantities(vals: Tensor, hits: Tensor, num_labels: Tensor, counted: Tensor) -> Tuple[Tensor, Tensor]:
    """``(hit@1, PERR)`` of each video from its ranked top predictions (``vals``, ``hits`` ``(N, K)``),
    its number of labels and which scores count for PERR (``counted``: above 0 for probabilities).
    ``K`` must be at least the number of labels of the videos whose PERR is used."""
    position = torch.arange(vals.shape[1], device=vals.device)
    within = hits & counted & (position[None, :] < num_labels[:, None])
    perr = within.sum(1).double() / num_labels.clamp_min(1).double()
    return hits[:, 0], perr


def sparse_ap(scores: Tensor, classes: Tensor, hits: Tensor, positives: Tensor) -> Tensor:
    """Per-class AP of a list of ``(score, class, hit)`` entries, each class's entries ranked by
    score (ties: one threshold, see the module doc), over ``positives[c]`` (all positives of the
    class, in the list or not): ``sum over hits of the precision at the hit / positives``. 0 for a
    class with positives and no hit listed, NaN for a class without positives. float64 ``(C,)``.

    >>> sparse_ap(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 0]), torch.tensor([True, False, True]),
    ...           torch.tensor([3]))  # (1/1 + 2/3) / 3 positives, one of them not listed
    tensor([0.5556], dtype=torch.float64)
    """
    c = positives.numel()
    n = scores.numel()
    ap = torch.zeros(c, dtype=torch.float64, device=scores.device)
    if n:
        order = torch.argsort(scores, descending=True, stable=True)
        order = order[torch.argsort(classes[order], stable=True)]  # by class, score descending within
        s, cl, h = scores[order], classes[order], hits[order].long()
        pos = torch.arange(n, device=s.device)
        start = torch.ones(n, dtype=torch.bool, device=s.device)
        start[1:] = cl[1:] != cl[:-1]
        first = torch.where(start, pos, 0).cummax(0).values  # where each entry's class begins
        cum = h.cumsum(0)
        before = torch.where(first > 0, cum[(first - 1).clamp_min(0)], torch.zeros_like(cum))
        end = torch.ones(n, dtype=torch.bool, device=s.device)  # the last entry of a tie group
        end[:-1] = start[1:] | (s[1:] != s[:-1])
        last = torch.where(end, pos, n).flip(0).cummin(0).values.flip(0)
        precision = (cum[last] - before[last]).double() / (last - first + 1).double()
        ap.index_add_(0, cl, torch.where(h.bool(), precision, torch.zeros_like(precision)))
    total = positives.double()
    return torch.where(total > 0, ap / total.clamp_min(1), torch.full_like(ap, float("nan")))
