"""EPIC-Kitchens style verb / noun / action evaluation: :class:`ActionMetrics`.

A segment (EPIC's unit: one narrated action) has a verb and a noun; the model has a verb head and
a noun head. The **action** is the (verb, noun) pair, scored by the product of the two heads'
probabilities — the rule of EPIC-Kitchens-100's official ``evaluate.py`` (``compute_action_scores``
takes a softmax of each head's scores and multiplies them). The top-k actions come from the top-k
of each head (:mod:`video_metrics.functional.actions`): no ``segments x verbs x nouns`` array.

Keys of ``compute()`` (float64 scalar tensors):

* ``verb/top{k}``, ``noun/top{k}``, ``action/top{k}`` for each ``k`` of ``top_k``;
* ``verb/mean_class_recall``, ``noun/mean_class_recall``, ``action/mean_class_recall``: top-1
  recall averaged over the classes (actions: the pairs) present in the targets;
* with ``tail_verbs`` / ``tail_nouns``: ``tail/verb/top{k}`` over segments whose verb is a tail
  verb, ``tail/noun/top{k}`` whose noun is a tail noun, ``tail/action/top{k}`` whose verb **or**
  noun is (the official rule);
* with ``groups``: ``<name>/verb/top{k}`` ... for each group value, ``name`` from ``group_names``
  (EPIC's unseen participants: ``groups`` = 1 for a segment of an unseen participant,
  ``group_names={1: "unseen", 0: "seen"}``);
* ``num_segments``.

A key whose subset is empty (no tail segment) is NaN, with a warning.

Multi-view testing: pass ``video_ids`` (the segment id) for every batch and each head's views are
aggregated per segment first (``video_reduction``: ``mean_logits`` by default for logits,
``mean_probs`` for probabilities — the sum of softmaxes of epic-kitchens-slowfast; ``clip_ids`` drop
the sampler's padding), then ranked as above.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .functional.checks import INPUTS, check_choice, check_device, check_ids, check_scores, check_target
from .functional.actions import action_id, first_match, pair_topk
from .functional.aggregation import video_values
from .functional.classification import prepare_rows, target_rank
from .ids import id_tensor
from .metrics.base import VideoMetric
from .functional.aggregation import aggregate_rows, check_reduction, kept_rows, same_rows_in

__all__ = ["ActionMetrics", "ACTION_SCORES"]

#: how a pair is scored: ``"product"`` of the heads' probabilities (softmax of logits, or the
#: probabilities as given); ``"epic_script"``: softmax of whatever scores are given, as the official
#: script does — the same for logits, but probabilities are softmaxed a second time there
ACTION_SCORES = ("product", "epic_script")

_BLOCK = 1 << 14  # segments ranked at a time in compute()


def _class_list(name: str, classes: Optional[Sequence[int]], size: int) -> Optional[Tensor]:
    if classes is None:
        return None
    try:
        vals = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a sequence of class indices, got {classes!r}") from None
    bad = [c for c in vals if not 0 <= c < size]
    if bad:
        raise ValueError(f"`{name}` holds {bad[:5]} outside [0, {size})")
    mask = torch.zeros(size, dtype=torch.bool)
    mask[torch.tensor(vals, dtype=torch.long)] = True
    return mask


class ActionMetrics(VideoMetric):
    """Verb, noun and action top-k accuracy (and class-mean recall, tail and group subsets) for
    two-head models, computed as EPIC-Kitchens-100's official evaluation (see the module doc).

    ``update(verb_scores (N, V), noun_scores (N, N'), verb_target (N,), noun_target (N,),
    video_ids=None, clip_ids=None, groups=None)``: no host synchronisation (values are checked on
    the device and bad rows reported at ``compute()``); rows are kept and gathered across
    processes in one packed sync.

    Ties: a head ranks ties to the lower class index; pairs with equal scores rank by their verb's
    rank, then their noun's (the official script leaves ties to NumPy's unstable sort).

    >>> import torch
    >>> from video_metrics import ActionMetrics
    >>> metric = ActionMetrics(num_verbs=3, num_nouns=4, top_k=(1,))
    >>> verbs = torch.tensor([[2.0, 0.1, 0.0], [0.0, 1.0, 0.2], [0.3, 0.2, 1.5]])
    >>> nouns = torch.tensor([[0.1, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.2, 3.0]])
    >>> metric.update(verbs, nouns, torch.tensor([0, 1, 2]), torch.tensor([1, 3, 3]))
    >>> out = metric.compute()
    >>> [round(float(out[k]), 4) for k in ("verb/top1", "noun/top1", "action/top1")]
    [1.0, 0.6667, 0.6667]
    """

    higher_is_better = True

    def __init__(self, num_verbs: int, num_nouns: int, top_k: Sequence[int] = (1, 5), input: str = "logits",
                 tail_verbs: Optional[Sequence[int]] = None, tail_nouns: Optional[Sequence[int]] = None,
                 video_reduction: Optional[str] = None, action_scores: str = "product",
                 group_names: Optional[Mapping[int, str]] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, v in (("num_verbs", num_verbs), ("num_nouns", num_nouns)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int, got {v!r}")
        check_choice("input", input, INPUTS)
        check_choice("action_scores", action_scores, ACTION_SCORES)
        if video_reduction is None:
            video_reduction = "mean_logits" if input == "logits" else "mean_probs"
        check_reduction(video_reduction, "multiclass", input, "video_reduction")
        if video_reduction == "vote":
            raise ValueError("`video_reduction='vote'` gives no probabilities to multiply into action scores; use "
                             "'mean_logits', 'mean_probs' or 'max'")
        top_k = (top_k,) if isinstance(top_k, int) and not isinstance(top_k, bool) else tuple(top_k)
        if not top_k or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in top_k):
            raise ValueError(f"`top_k` must be positive ints, got {top_k!r}")
        if max(top_k) > min(num_verbs, num_nouns):
            raise ValueError(f"`top_k`={top_k} exceeds the smaller head ({min(num_verbs, num_nouns)} classes): every "
                             "segment would be a hit there")
        self.num_verbs, self.num_nouns, self.top_k = num_verbs, num_nouns, tuple(sorted(set(top_k)))
        self.input, self.video_reduction, self.action_scores = input, video_reduction, action_scores
        self.task = "multiclass"
        self.tail_verbs = _class_list("tail_verbs", tail_verbs, num_verbs)
        self.tail_nouns = _class_list("tail_nouns", tail_nouns, num_nouns)
        self.group_names = {int(k): str(v) for k, v in (group_names or {}).items()}
        self.add_cat_state("verb_scores", torch.float32, (num_verbs,))
        self.add_cat_state("noun_scores", torch.float32, (num_nouns,))
        self.add_cat_state("verb_target", torch.long, ())
        self.add_cat_state("noun_target", torch.long, ())
        self.add_cat_state("valid", torch.bool, ())
        self.add_cat_state("video_ids", torch.long, ())
        self.add_cat_state("clip_ids", torch.long, ())
        self.add_cat_state("groups", torch.long, ())
        for name in ("n_seen", "n_with_video_ids", "n_with_clip_ids", "n_with_groups"):
            self.add_sum_state(name, torch.zeros((), dtype=torch.long))
        if input == "logits":
            self.add_sum_state("n_prob_like", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------- update
    def update(self, verb_scores: Tensor, noun_scores: Tensor, verb_target: Tensor, noun_target: Tensor,
               video_ids: Optional[Tensor] = None, clip_ids: Optional[Tensor] = None,
               groups: Optional[Tensor] = None) -> None:
        """Add a batch of verb and noun scores with their targets (and segment ids); free checks raise at once, value checks at ``compute()``."""
        video_ids, clip_ids = id_tensor(video_ids, "video_ids"), id_tensor(clip_ids, "clip_ids")
        check_scores(verb_scores, self.num_verbs, "verb_scores")
        check_scores(noun_scores, self.num_nouns, "noun_scores")
        n = verb_scores.shape[0]
        if noun_scores.shape[0] != n:
            raise ValueError(f"`noun_scores` must have one row per segment ({n}, as `verb_scores`), got "
                             f"{noun_scores.shape[0]}")
        check_device(verb_scores, self)
        if noun_scores.device != verb_scores.device:
            raise ValueError(f"`noun_scores` is on {noun_scores.device} but `verb_scores` is on {verb_scores.device}")
        check_target(verb_target, verb_scores, "multiclass", "verb_target")
        check_target(noun_target, noun_scores, "multiclass", "noun_target")
        for ids, name in ((video_ids, "video_ids"), (clip_ids, "clip_ids"), (groups, "groups")):
            check_ids(ids, n, verb_scores.device, name)
        if clip_ids is not None and video_ids is None:
            raise ValueError("`clip_ids` need `video_ids`: a clip id is unique within its segment")
        logits = self.input == "logits"
        sv, tv, ok_v, _, _, like = prepare_rows(verb_scores, verb_target, "multiclass", self.input, self.num_verbs,
                                                count_prob_like=logits)
        sn, tn, ok_n, _, _, _ = prepare_rows(noun_scores, noun_target, "multiclass", self.input, self.num_nouns,
                                             count_prob_like=False)
        vt, nt = verb_target.long(), noun_target.long()
        target_ok = (vt >= 0) & (vt < self.num_verbs) & (nt >= 0) & (nt < self.num_nouns)
        valid = ok_v & ok_n
        dev = verb_scores.device
        none = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.verb_scores.append(sv)
        self.noun_scores.append(sn)
        self.verb_target.append(tv)
        self.noun_target.append(tn)
        self.valid.append(valid)
        self.video_ids.append(video_ids.long() if video_ids is not None else none)
        self.clip_ids.append(clip_ids.long() if clip_ids is not None else none)
        self.groups.append(groups.long() if groups is not None else none)
        self.n_seen += n
        if video_ids is not None:
            self.n_with_video_ids += n
        if clip_ids is not None:
            self.n_with_clip_ids += n
        if groups is not None:
            self.n_with_groups += n
        if logits:
            self.n_prob_like += like
        self._count_rows(valid, (~target_ok).sum(), (target_ok & ~valid).sum())

    def _value_rules(self) -> Tuple[str, str]:
        return (f"verb indices must be in [0, {self.num_verbs}) and noun indices in [0, {self.num_nouns})",
                super()._value_rules()[1])

    # ------------------------------------------------------------------------------ compute
    def compute(self) -> Dict[str, Tensor]:
        """Verb, noun and action top-k accuracy, class-mean recall and (with ``many_shot``) the many-shot keys, synced."""
        self._check_rows()
        sv, sn, combine, tv, tn, groups = self._segments()
        return self._keys(sv, sn, combine, tv, tn, groups)

    def _segments(self) -> Tuple[Tensor, Tensor, str, Tensor, Tensor, Optional[Tensor]]:
        """The evaluated segments: ``(verb scores, noun scores, combine, verb targets, noun
        targets, groups)``; scores are what the heads rank by (float64 for aggregated segments)."""
        valid, vid, cid = self._cat("valid"), self._cat("video_ids"), self._cat("clip_ids")
        same = same_rows_in([self._cat("verb_scores")], self._cat("noun_scores"), self._cat("verb_target"),
                            self._cat("noun_target"))
        keep, dropped = kept_rows((int(self.n_seen), int(self.n_with_clip_ids), int(self.n_with_video_ids)), valid, vid,
                                  cid, same)
        n_groups, n_seen = int(self.n_with_groups), int(self.n_seen)
        if 0 < n_groups < n_seen:
            raise ValueError("`groups` were given for some batches only: pass them for every batch or for none")
        idx = torch.nonzero(keep).squeeze(1)
        sv, sn = self._cat("verb_scores")[idx], self._cat("noun_scores")[idx]
        tv, tn = self._cat("verb_target")[idx], self._cat("noun_target")[idx]
        groups = self._cat("groups")[idx] if n_groups else None
        by_product = self.action_scores == "product"
        if not int(self.n_with_video_ids):  # one row per segment
            combine = "mul" if self.input == "probs" and by_product else "add"
            return sv, sn, combine, tv, tn, groups
        vid = vid[idx]
        red = self.video_reduction
        av = aggregate_rows(sv, tv, vid, dropped, "multiclass", self.input, red, full=False)
        an = aggregate_rows(sn, tn, vid, dropped, "multiclass", self.input, red, full=False)
        rv, rn = av.rank, an.rank  # per-segment log-probabilities
        if not by_product and red != "mean_logits":  # the script softmaxes the segment's probabilities
            rv, rn = rv.exp(), rn.exp()
        if groups is not None:
            groups, bad = video_values(groups, torch.searchsorted(av.video_ids, vid), av.video_ids.numel())
            if int(bad):
                raise ValueError(f"{int(bad)} segment(s) have clips in different `groups`; every clip of a segment "
                                 "must share its group")
        return rv, rn, "add", av.target, an.target, groups

    def _keys(self, sv: Tensor, sn: Tensor, combine: str, tv: Tensor, tn: Tensor,
              groups: Optional[Tensor]) -> Dict[str, Tensor]:
        n, kmax = tv.numel(), max(self.top_k)
        rank_v = torch.empty(n, dtype=torch.long, device=tv.device)
        rank_n, pos = torch.empty_like(rank_v), torch.empty_like(rank_v)
        for lo in range(0, n, _BLOCK):
            s = slice(lo, lo + _BLOCK)
            bv, bn = sv[s].double(), sn[s].double()
            rank_v[s] = target_rank(bv, tv[s])
            rank_n[s] = target_rank(bn, tn[s])
            verbs, nouns, _ = pair_topk(bv, bn, kmax, combine)
            pos[s] = first_match(verbs, nouns, tv[s], tn[s])
        ranks = {"verb": rank_v, "noun": rank_n, "action": pos}
        out: Dict[str, Tensor] = {}

        def add(prefix: str, mask: Optional[Tensor]) -> None:
            for head, r in ranks.items():
                for k in self.top_k:
                    out[f"{prefix}{head}/top{k}"] = _mean(r < k, mask)

        add("", None)
        targets = {"verb": (tv, self.num_verbs), "noun": (tn, self.num_nouns),
                   "action": (action_id(tv, tn, self.num_nouns), None)}
        for head, (t, size) in targets.items():
            out[f"{head}/mean_class_recall"] = _class_mean_recall(t, ranks[head] == 0)
        if self.tail_verbs is not None or self.tail_nouns is not None:
            none = torch.zeros_like(tv, dtype=torch.bool)
            tail_v = self.tail_verbs.to(tv.device)[tv] if self.tail_verbs is not None else none
            tail_n = self.tail_nouns.to(tn.device)[tn] if self.tail_nouns is not None else none
            masks = {"verb": tail_v, "noun": tail_n, "action": tail_v | tail_n}
            for head, r in ranks.items():
                if (head == "verb" and self.tail_verbs is None) or (head == "noun" and self.tail_nouns is None):
                    continue
                for k in self.top_k:
                    out[f"tail/{head}/top{k}"] = _mean(r < k, masks[head])
        if groups is not None:
            for g in torch.unique(groups).tolist():
                add(f"{self.group_names.get(g, f'group_{g}')}/", groups == g)
        out["num_segments"] = torch.tensor(float(n), dtype=torch.float64)
        empty = sorted(k for k, v in out.items() if math.isnan(float(v)))
        if empty:
            warnings.warn(f"ActionMetrics: no segment for {', '.join(empty)} (NaN)", UserWarning, stacklevel=3)
        return out


def _mean(hit: Tensor, mask: Optional[Tensor]) -> Tensor:
    if mask is not None:
        hit = hit[mask]
    return hit.double().mean().cpu() if hit.numel() else torch.tensor(math.nan, dtype=torch.float64)


def _class_mean_recall(target: Tensor, hit: Tensor) -> Tensor:
    """Top-1 recall averaged over the classes present in ``target`` (sklearn's
    ``balanced_accuracy_score`` of the top-1 prediction)."""
    if target.numel() == 0:
        return torch.tensor(math.nan, dtype=torch.float64)
    uniq, inv = torch.unique(target, return_inverse=True)
    support = torch.zeros(uniq.numel(), dtype=torch.float64, device=target.device).index_add_(
        0, inv, torch.ones_like(inv, dtype=torch.float64))
    hits = torch.zeros_like(support).index_add_(0, inv, hit.double())
    return (hits / support).mean().cpu()
