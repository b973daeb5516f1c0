"""Slices: the suite's keys on a subset of the videos (group slices) or of the classes (class
slices), with their bootstrap intervals.

* **Group slices** (``slices=("participant", "duration")``, ``update(..., groups=...)``): one slice
  per distinct value of each named integer column; a slice is every video with that value, and
  its keys are those of a fresh suite updated with those videos' clips only.
* **Class slices**: ``class_frequency`` (training samples per class) gives the long-tail slices
  of Liu et al. (OLTR, CVPR 2019): ``many`` (more than ``frequency_thresholds[1]`` = 100 training
  samples), ``medium``, ``few`` (fewer than ``frequency_thresholds[0]`` = 20); ``class_slices``
  names any class sets (``{"tail": [...]}``, EPIC-Kitchens' tail classes). A class slice averages
  the class-wise keys (``balanced_acc``, ``mean_class_top{k}``, ``*_macro``, ``f1_micro``,
  ``f1_weighted``, ``auroc_macro``, ``auprc_macro``, ``mAP``, ``mAP_weighted``) over its classes,
  on every sample (sklearn's ``labels=``); for multiclass, the sample keys (``top{k}``, ``ece``,
  ``mce``, ``nll``, ``brier``) are those of the samples whose target is in the slice (the
  EPIC-Kitchens tail top-1). Multilabel class slices report the class-wise keys only. A class
  slice with no video gives NaN for every key and no interval.
* ``min_slice_size`` (default 30): slices with fewer videos are marked ``too_small`` (reported,
  not hidden, but too small to read).

EPIC-Kitchens-100's ``unseen`` top-1 is a group slice over a 0/1 column (participant absent from
training), its ``tail`` top-1 a class slice over the tail classes (``tests/test_slices.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import bootstrap as bs
from .functional.aggregation import video_values
from .levels import clean_json, keys_for, level_scalars

__all__ = ["SliceResult", "check_slices", "frequency_slices", "slice_results", "point_values", "SAMPLE_KEYS"]

#: multiclass keys of a class slice taken from the samples of its classes
SAMPLE_KEYS = ("ece", "mce", "nll", "brier")


@dataclass
class SliceResult:
    """One slice: ``name`` (the group column, ``"frequency"`` or ``"classes"``) and ``value``.

    >>> import torch
    >>> import video_metrics as vm
    >>> from video_metrics.data.predictions import synthetic_predictions
    >>> p = synthetic_predictions(num_videos=60, clips_per_video=2, num_classes=4, seed=2)
    >>> suite = vm.VideoClassificationMetrics(4, video_reduction="mean_logits", slices=("camera",), min_slice_size=5)
    >>> camera = (p.video_ids % 2)[:, None]  # one group column: the camera of each clip's video
    >>> suite.update(p.scores, p.target, p.video_ids, p.clip_ids, groups=camera)
    >>> [(s.label, s.num_videos) for s in suite.report().slices]
    [('camera=0', 30), ('camera=1', 30)]
    """

    name: str
    value: Any
    kind: str  # "group" or "class"
    num_videos: int
    num_clips: int
    scalars: Dict[str, float]
    intervals: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    too_small: bool = False
    classes: Optional[List[int]] = None

    @property
    def label(self) -> str:
        """``name=value`` of the slice."""
        return f"{self.name}={self.value}"

    def to_dict(self) -> Dict[str, Any]:
        """The slice as JSON-ready values."""
        return {"name": self.name, "value": self.value, "kind": self.kind, "num_videos": self.num_videos,
                "num_clips": self.num_clips, "too_small": self.too_small, "classes": self.classes,
                "scalars": clean_json(self.scalars), "intervals": {k: clean_json(list(v)) for k, v in self.intervals.items()}}


def frequency_slices(class_frequency: Sequence[int], thresholds: Tuple[int, int] = (20, 100)) -> Dict[str, List[int]]:
    """``{"many": [...], "medium": [...], "few": [...]}`` from training samples per class."""
    few, many = thresholds
    f = [int(x) for x in class_frequency]
    return {"many": [i for i, x in enumerate(f) if x > many],
            "medium": [i for i, x in enumerate(f) if few <= x <= many],
            "few": [i for i, x in enumerate(f) if x < few]}


def check_slices(task: str, num_classes: int, slices, class_frequency, frequency_thresholds, class_slices,
                 min_slice_size, bins) -> Tuple[Tuple[str, ...], Tuple[Tuple[Tuple[str, str], Tuple[int, ...]], ...], int]:
    """Validate the slice options: ``(group columns, class sets as ((name, value), classes), min size)``."""
    if isinstance(slices, str):
        slices = (slices,)
    slices = tuple(slices or ())
    if any(not isinstance(s, str) or not s for s in slices) or len(set(slices)) != len(slices):
        raise ValueError(f"`slices` must be distinct non-empty column names, got {slices!r}")
    sets: Dict[Tuple[str, str], List[int]] = {}
    c = num_classes
    if (class_frequency is not None or class_slices) and task == "binary":
        raise ValueError("class slices (`class_frequency`, `class_slices`) need task='multiclass' or 'multilabel'")
    if class_frequency is not None:
        if len(class_frequency) != c or any(int(x) < 0 for x in class_frequency):
            raise ValueError(f"`class_frequency` must give {c} non-negative training counts (one per class), "
                             f"got {len(class_frequency)} values")
        lo, hi = frequency_thresholds
        if not 0 <= lo <= hi:
            raise ValueError(f"`frequency_thresholds` must be (few, many) with 0 <= few <= many, got {frequency_thresholds!r}")
        for k, v in frequency_slices(class_frequency, (lo, hi)).items():
            sets[("frequency", k)] = v
    for k, v in (class_slices or {}).items():
        v = [int(x) for x in v]
        if not v or any(x < 0 or x >= c for x in v):
            raise ValueError(f"`class_slices[{k!r}]` must be a non-empty list of class indices in [0, {c}), got {v!r}")
        sets[("classes", str(k))] = sorted(set(v))
    if (slices or sets) and bins is not None:
        raise ValueError("slices need every clip's row: use exact mode (bins=None)")
    if isinstance(min_slice_size, bool) or not isinstance(min_slice_size, int) or min_slice_size < 0:
        raise ValueError(f"`min_slice_size` must be a non-negative int, got {min_slice_size!r}")
    return slices, tuple((k, tuple(v)) for k, v in sets.items()), min_slice_size


def check_groups(groups, names: Sequence[str], scores: Tensor) -> Optional[Tensor]:
    """``groups`` as ``(N, G)`` int64, or a clear error (shapes and dtypes only: no host sync)."""
    if not names:
        if groups is not None:
            raise ValueError("`groups` were passed but the suite has no `slices`: name the columns with "
                             "slices=('participant', ...)")
        return None
    n, g = scores.shape[0], len(names)
    if groups is None:
        raise ValueError(f"`groups` is required when `slices` is set: an integer tensor of shape ({n},) or ({n}, {g}) "
                         f"with the columns {list(names)}")
    if not isinstance(groups, Tensor) or groups.dtype.is_floating_point or groups.dtype.is_complex or groups.dtype == torch.bool:
        raise ValueError(f"`groups` must be an integer tensor, got {getattr(groups, 'dtype', type(groups).__name__)}")
    if groups.dim() == 1 and g == 1:
        groups = groups[:, None]
    if tuple(groups.shape) != (n, g):
        raise ValueError(f"`groups` must have shape ({n}, {g}) for slices={list(names)} (or ({n},) for one column), "
                         f"got {tuple(groups.shape)}")
    if groups.device != scores.device:
        raise ValueError(f"`groups` must be on the scores' device {scores.device}, got {groups.device}")
    return groups.long()


def _count(ctx, rows_mask: Optional[Tensor]) -> Tuple[int, int]:
    vid = ctx.vid if rows_mask is None else ctx.vid[rows_mask]
    n = int(vid.numel())
    return (int(torch.unique(vid).numel()) if ctx.has_video_ids else n), n


def point_values(cfg, ctx, rows_mask) -> Dict[str, float]:
    """The suite's keys on the rows of ``rows_mask`` (both levels)."""
    out = {f"clip/{k}": float(v) for k, v in ctx.clip_level(rows_mask).scalars().items()}
    if cfg.video_reduction is not None:
        out.update({f"video/{k}": float(v) for k, v in ctx.video_level(rows_mask)[0].scalars().items()})
    return out


def _group_slices(cfg, ctx) -> List[SliceResult]:
    out: List[SliceResult] = []
    if not cfg.slices:
        return out
    g = ctx.groups
    if ctx.has_video_ids and g.shape[0]:
        uniq, inv = torch.unique(ctx.vid, return_inverse=True)
        _, bad = video_values(g, inv, uniq.numel())
        for j, name in enumerate(cfg.slices):
            if int(bad[j]):
                raise ValueError(f"{int(bad[j])} video(s) have clips with different `groups` values in column "
                                 f"{name!r}; every clip of a video must share its groups")
    for j, name in enumerate(cfg.slices):
        for value in torch.unique(g[:, j]).tolist():
            mask = g[:, j] == value
            nv, nc = _count(ctx, mask)
            res = SliceResult(name, int(value), "group", nv, nc, point_values(cfg, ctx, mask),
                              too_small=nv < cfg.min_slice_size)
            if cfg.bootstrap:
                res.intervals = bs.percentile_intervals(bs.suite_replicates(cfg, ctx, cfg.bootstrap, cfg.seed, mask), cfg.ci)
            out.append(res)
    return out


def _class_keys(cfg, level, classes: Tensor, stats=None) -> Dict[str, Tensor]:
    keys = keys_for(cfg.task, cfg.top_k, level.reduction)
    return level_scalars(cfg, cfg.task, keys, stats if stats is not None else level.stats, classes)


def _sample_key(task: str, key: str) -> bool:
    return task == "multiclass" and (key.startswith("top") or key in SAMPLE_KEYS)


def _class_wise(task: str, key: str) -> bool:
    """Keys a class slice takes from the per-class statistics (pooled multilabel ECE and micro AP
    mix every class, so they are left out of multilabel class slices)."""
    if task == "multiclass":
        return not _sample_key(task, key)
    return key not in ("ece", "mAP_micro")


def _class_slices(cfg, ctx) -> List[SliceResult]:
    out: List[SliceResult] = []
    if not cfg.class_sets:
        return out
    levels = [("clip", ctx.clip_level())]
    if cfg.video_reduction is not None:
        levels.append(("video", ctx.video_level()[0]))
    reps_full = {}
    if cfg.bootstrap:  # the replicate statistics of the full set, reduced per class set below
        reps_full = _full_replicate_stats(cfg, ctx)
    for (name, value), cls in cfg.class_set_dict().items():
        idx = torch.tensor(cls, dtype=torch.long, device=ctx.t.device)
        if cfg.task == "multiclass":
            rows_mask = torch.isin(ctx.t, idx)
        else:
            rows_mask = ctx.t[:, idx].any(1)
        nv, nc = _count(ctx, rows_mask)
        scalars: Dict[str, float] = {}
        for lv, level in levels:
            scalars.update({f"{lv}/{k}": float(v) for k, v in _class_keys(cfg, level, idx).items()
                            if _class_wise(cfg.task, k)})
        if cfg.task == "multiclass" and bool(rows_mask.any()):
            scalars.update({k: v for k, v in point_values(cfg, ctx, rows_mask).items()
                            if _sample_key(cfg.task, k.split("/", 1)[1])})
        if nv == 0:  # no video of the slice's classes: nothing to measure (not a score of 0)
            out.append(SliceResult(name, value, "class", 0, 0, {k: float("nan") for k in scalars}, too_small=True,
                                   classes=cls))
            continue
        res = SliceResult(name, value, "class", nv, nc, scalars, too_small=nv < cfg.min_slice_size, classes=cls)
        if cfg.bootstrap:
            reps: Dict[str, Tensor] = {}
            for lv, level in levels:
                r = level_scalars(cfg, cfg.task, keys_for(cfg.task, cfg.top_k, level.reduction), reps_full[lv], idx)
                reps.update({f"{lv}/{k}": v for k, v in r.items() if _class_wise(cfg.task, k)})
            if cfg.task == "multiclass" and bool(rows_mask.any()):
                sub = bs.suite_replicates(cfg, ctx, cfg.bootstrap, cfg.seed, rows_mask)
                reps.update({k: v for k, v in sub.items() if _sample_key(cfg.task, k.split("/", 1)[1])})
            res.intervals = bs.percentile_intervals(reps, cfg.ci)
        out.append(res)
    return out


def _full_replicate_stats(cfg, ctx) -> Dict[str, Dict[str, Any]]:
    """The replicate statistics of both levels on the full set (shared by the class slices)."""
    return {name: bs.weighted_stats(level, unit, w, missing)
            for name, level, unit, w, missing in bs.resampled_levels(cfg, ctx, cfg.bootstrap, cfg.seed)}


def slice_results(cfg, ctx) -> List[SliceResult]:
    """Every group slice and class slice of the suite's gathered rows."""
    return _group_slices(cfg, ctx) + _class_slices(cfg, ctx)
