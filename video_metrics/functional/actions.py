"""Verb / noun / action kernels (EPIC-Kitchens style): an action is a (verb, noun) pair, ranked by
the product of the two heads' probabilities, and its top-k is found from the top-k of each head,
never from the ``V x N`` matrix of pairs.

Orders and ties (the official EPIC-Kitchens scripts rank with NumPy's unstable ``argsort`` read
backwards, which leaves ties unspecified; here they are fixed):

* a head ranks its classes by score, ties to the **lower class index** (as every top-k in
  video_metrics);
* pairs rank by their score (``combine="add"``: ``s_v + s_n``, for logits or log-probabilities;
  ``"mul"``: ``p_v * p_n``, for probabilities), ties to the pair whose **verb ranks higher**, then
  whose noun ranks higher.

Because a pair's score never decreases when either of its heads' scores increases (and the tie
rule follows the heads' orders), the k best pairs always lie among the k best verbs times the k
best nouns: :func:`pair_topk` is exact with ``k x k`` pairs a row.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["head_topk", "pair_topk", "first_match", "action_id"]

COMBINE = ("add", "mul")


def head_topk(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """``(classes (N, k), scores (N, k))``: each row's ``k`` best classes, ties to the lower index
    (a stable descending sort keeps equal scores in index order)."""
    k = min(k, scores.shape[1])
    if k == 1:
        val, idx = scores.max(1, keepdim=True)  # the first maximum
        return idx, val
    val, idx = torch.sort(scores, dim=1, descending=True, stable=True)
    return idx[:, :k], val[:, :k]


def pair_topk(verb_scores: Tensor, noun_scores: Tensor, k: int, combine: str = "add") -> Tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best (verb, noun) pairs of each row: ``(verbs (N, k'), nouns (N, k'), scores
    (N, k'))`` with ``k' = min(k, V * N)``, best first (see the module doc for the order).

    ``combine="add"``: a pair scores ``s_v + s_n`` (logits: the order of the product of the two
    softmaxes; log-probabilities: of the product of the probabilities); ``"mul"``: ``p_v * p_n``.
    Pass float64 scores: the sum or product of two float32 values is then exact, so two pairs
    tie exactly when their products tie."""
    if combine not in COMBINE:
        raise ValueError(f"`combine` must be one of {COMBINE}, got {combine!r}")
    n = verb_scores.shape[0]
    iv, sv = head_topk(verb_scores, k)
    inn, sn = head_topk(noun_scores, k)
    kn = inn.shape[1]
    pair = sv[:, :, None] + sn[:, None, :] if combine == "add" else sv[:, :, None] * sn[:, None, :]
    # flat index = verb position * kn + noun position: a stable sort breaks ties by verb rank, then noun rank
    val, order = torch.sort(pair.reshape(n, -1), dim=1, descending=True, stable=True)
    kk = min(k, order.shape[1])
    order, val = order[:, :kk], val[:, :kk]
    return iv.gather(1, order // kn), inn.gather(1, order % kn), val


def first_match(verbs: Tensor, nouns: Tensor, verb_target: Tensor, noun_target: Tensor) -> Tensor:
    """Position (0 = best) of each row's target pair in the ranked ``(verbs, nouns)`` of
    :func:`pair_topk`, or ``k'`` when it is not among them: ``position < k`` is an action top-k hit."""
    hit = (verbs == verb_target[:, None]) & (nouns == noun_target[:, None])
    k = verbs.shape[1]
    pos = torch.arange(k, device=verbs.device).expand_as(hit)
    return torch.where(hit, pos, torch.full_like(pos, k)).amin(1) if k else torch.zeros_like(verb_target)


def action_id(verb: Tensor, noun: Tensor, num_nouns: int) -> Tensor:
    """One integer per (verb, noun) pair, ordered as the pairs (verb-major)."""
    return verb * num_nouns + noun
