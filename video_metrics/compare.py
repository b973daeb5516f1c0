"""Paired comparison of two checkpoints evaluated on the same videos: is the difference real,
and where?

:func:`compare` takes two suites (:class:`~video_metrics.suite.VideoClassificationMetrics`, exact
mode, updated on the same videos) and returns a :class:`Comparison`:

* ``deltas``: for every scalar key, ``a``, ``b``, ``delta = b - a``, a **paired** percentile
  interval (both models on the same resampled videos: the replicate counts are a function of the
  video ids and the seed, see :mod:`video_metrics.bootstrap`) and a two-sided bootstrap p-value,
  ``min(1, 2 min(P*(delta <= 0), P*(delta >= 0)))`` (the smallest level at which the percentile
  interval excludes 0);
* ``mcnemar``: clip and video top-1 (binary: the thresholded prediction) — the discordant counts
  and the exact two-sided McNemar p-value (binomial test of the discordant pairs at 1/2);
* ``per_class``: per class, the change of recall (multiclass) or AP (multilabel) at the video level
  (clip level without ``video_reduction``), its paired interval, bootstrap p-value and
  Benjamini-Hochberg q-value, sorted from the worst regression;
* ``flips``: per level, the samples that went right -> wrong and wrong -> right (video ids;
  ``(video id, clip id)`` at clip level; names through the suite's ``IdRegistry``);
* ``slices``: with group slices (``slices=(...)`` and ``groups`` in the suites), per slice of ``a``'s
  group columns (the videos with that value; the same videos in ``b``), every key's paired delta
  with its interval and p-value (:class:`SliceDelta`); a slice without videos has NaN deltas.

Both suites must hold the same videos with the same targets (else ``ValueError`` naming the
files, as ``names`` gives them, and an example video).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from . import bootstrap as bs
from .functional.classification import argmax_lowest, divide
from .levels import add_challenge_score, clean_json, keys_for, level_scalars
from .slices import point_values

#: keys where a smaller value is better (a regression is a positive delta)
LOWER_IS_BETTER = ("ece", "mce", "nll", "brier", "challenge_score")


def lower_is_better(key: str) -> bool:
    """Whether a key is a loss or an error (ECE, MCE, NLL, Brier, challenge score): its delta is better when negative.

    >>> lower_is_better("video/ece"), lower_is_better("video/top1")
    (True, False)
    """
    return key.rpartition("/")[2] in LOWER_IS_BETTER


__all__ = ["compare", "Comparison", "lower_is_better", "Delta", "McNemar", "ClassDelta", "SliceDelta", "bootstrap_p_value",
           "mcnemar_exact", "benjamini_hochberg", "format_p_value"]


@dataclass
class Delta:
    """The paired change of one key: ``a`` (baseline) and ``b`` (candidate) on the same videos,
    ``delta = b - a``, its percentile interval ``[low, high]`` over the paired bootstrap replicates and
    the two-sided bootstrap p-value of ``delta = 0`` (``< 1/B`` shown as such by
    :func:`format_p_value`). See :class:`Comparison` for an example.
    """
    key: str  #: the suite key, e.g. ``video/top1``
    a: float  #: the baseline's value
    b: float  #: the candidate's value
    delta: float  #: ``b - a``
    low: float  #: the interval's lower end
    high: float  #: the interval's upper end
    p_value: float  #: two-sided bootstrap p-value of ``delta = 0``


@dataclass
class McNemar:
    """McNemar's exact test of the top-1 decisions at one ``level``: ``a_right_b_wrong`` and
    ``a_wrong_b_right`` are the discordant samples among ``num_paired``; ``p_value`` is the two-sided
    binomial test of the discordant pairs at 1/2 (:func:`mcnemar_exact`).

    >>> McNemar("video", a_right_b_wrong=2, a_wrong_b_right=9, num_paired=80, p_value=mcnemar_exact(2, 9)).p_value
    0.0654296875
    """
    level: str
    a_right_b_wrong: int
    a_wrong_b_right: int
    num_paired: int
    p_value: float


@dataclass
class ClassDelta:
    """The paired change of one class's ``metric`` (recall for multiclass, AP for multilabel):
    ``a``, ``b``, ``delta = b - a`` with its interval and bootstrap p-value, and the
    Benjamini-Hochberg ``q_value`` over the classes (:func:`benjamini_hochberg`). ``Comparison.per_class``
    lists them from the worst regression.
    """
    index: int  #: the class index
    name: str  #: the class name (its index as text without names)
    metric: str  #: ``recall`` or ``ap``
    a: float
    b: float
    delta: float
    low: float
    high: float
    p_value: float
    q_value: float  #: Benjamini-Hochberg adjusted p-value over the classes


@dataclass
class SliceDelta:
    """Paired deltas of one group slice: the videos whose column ``name`` has ``value`` in ``a``."""

    name: str
    value: Any
    num_videos: int
    too_small: bool
    deltas: Dict[str, Delta]

    @property
    def label(self) -> str:
        """``name=value`` of the slice."""
        return f"{self.name}={self.value}"

    def to_dict(self) -> Dict[str, Any]:
        """The slice's deltas as JSON-ready values."""
        return {"name": self.name, "value": self.value, "num_videos": self.num_videos, "too_small": self.too_small,
                "deltas": {k: asdict(v) for k, v in self.deltas.items()}}


@dataclass
class Comparison:
    """What :func:`compare` returns: ``deltas`` (:class:`Delta` per key), ``mcnemar`` (:class:`McNemar`
    per level), ``per_class`` (:class:`ClassDelta`, worst regression first, at ``per_class_level``),
    ``flips`` (per level, the ids that went right -> wrong and wrong -> right), ``slices``
    (:class:`SliceDelta`), and the bootstrap settings and number of paired videos.

    >>> import video_metrics as vm
    >>> from video_metrics.data.predictions import synthetic_predictions
    >>> def evaluated(signal):
    ...     p = synthetic_predictions(num_videos=80, clips_per_video=2, num_classes=5, seed=0, signal=signal)
    ...     suite = vm.VideoClassificationMetrics(5, video_reduction="mean_probs")
    ...     suite.update(p.scores, p.target, p.video_ids, p.clip_ids)
    ...     return suite
    >>> c = vm.compare(evaluated(0.5), evaluated(2.0), bootstrap=200, seed=0)
    >>> d = c.deltas["video/top1"]
    >>> round(d.a, 3), round(d.b, 3), format_p_value(d.p_value, c.bootstrap)
    (0.338, 0.7, '< 0.005')
    >>> c.mcnemar["video"].a_wrong_b_right, c.mcnemar["video"].a_right_b_wrong
    (29, 0)
    """
    bootstrap: int
    ci: float
    seed: int
    num_videos: int
    deltas: Dict[str, Delta]
    mcnemar: Dict[str, McNemar]
    per_class: List[ClassDelta]
    flips: Dict[str, Dict[str, List[Any]]] = field(default_factory=dict)
    per_class_level: str = "video"
    slices: List[SliceDelta] = field(default_factory=list)

    def only_level(self, level: str) -> "Comparison":
        """The comparison restricted to one level's keys (e.g. ``"video"`` for result files whose
        rows are videos already)."""
        keep = lambda k: k.startswith(level + "/")  # noqa: E731
        slices = [SliceDelta(x.name, x.value, x.num_videos, x.too_small, {k: d for k, d in x.deltas.items() if keep(k)})
                  for x in self.slices]
        return Comparison(self.bootstrap, self.ci, self.seed, self.num_videos,
                          {k: d for k, d in self.deltas.items() if keep(k)},
                          {k: m for k, m in self.mcnemar.items() if k == level}, self.per_class,
                          {k: f for k, f in self.flips.items() if k == level}, self.per_class_level, slices)

    def to_dict(self) -> Dict[str, Any]:
        """Everything as JSON-ready values (what ``compare.json`` holds)."""
        return clean_json({
            "bootstrap": self.bootstrap, "ci": self.ci, "seed": self.seed, "num_videos": self.num_videos,
            "deltas": {k: asdict(v) for k, v in self.deltas.items()},
            "mcnemar": {k: asdict(v) for k, v in self.mcnemar.items()},
            "per_class_level": self.per_class_level, "per_class": [asdict(x) for x in self.per_class],
            "flips": {lv: {k: [list(x) if isinstance(x, tuple) else x for x in v] for k, v in d.items()}
                      for lv, d in self.flips.items()},
            "slices": [x.to_dict() for x in self.slices],
        })


def format_p_value(p: float, replicates: int) -> str:
    """A bootstrap p-value as text: below the resolution of ``replicates`` resamples (no replicate
    crossed 0) it is ``< 1/B``, e.g. ``< 0.001``, not 0."""
    if p != p:
        return "–"
    if p < 1.0 / replicates:
        return f"< {1.0 / replicates:.3g}"
    return f"{p:.3g}"


def bootstrap_p_value(reps: Tensor) -> float:
    """Two-sided p-value of ``delta = 0`` from the replicates of a delta (NaN replicates left out)."""
    r = reps[~torch.isnan(reps)]
    if r.numel() == 0:
        return float("nan")
    le = float((r <= 0).double().mean())
    ge = float((r >= 0).double().mean())
    return min(1.0, 2.0 * min(le, ge))


def mcnemar_exact(a_right_b_wrong: int, a_wrong_b_right: int) -> float:
    """Exact two-sided McNemar p-value: a binomial test of the discordant pairs at 1/2."""
    n = a_right_b_wrong + a_wrong_b_right
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(a_right_b_wrong, n, 0.5).pvalue)


def benjamini_hochberg(p: List[float]) -> List[float]:
    """Benjamini-Hochberg q-values (NaN p-values stay NaN and are not counted)."""
    idx = [i for i, x in enumerate(p) if x == x]
    m = len(idx)
    q = [float("nan")] * len(p)
    order = sorted(idx, key=lambda i: p[i])
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        q[i] = min(1.0, running)
    return q


def _check_pair(a, b) -> None:
    for name, su in (("a", a), ("b", b)):
        if not callable(getattr(su, "evaluation", None)) or su.config.bins is not None:
            raise ValueError(f"`{name}` must be a VideoClassificationMetrics in exact mode (bins=None)")
    ca, cb = a.config, b.config
    if ca.task != cb.task or ca.num_classes != cb.num_classes:
        raise ValueError(f"`a` and `b` must have the same task and classes, got {ca.task}/{ca.num_classes} and "
                         f"{cb.task}/{cb.num_classes}")
    if ca.video_reduction != cb.video_reduction or tuple(ca.top_k) != tuple(cb.top_k):
        raise ValueError("`a` and `b` must use the same video_reduction and top_k, got "
                         f"{ca.video_reduction}/{ca.top_k} and {cb.video_reduction}/{cb.top_k}")


def _correct(level) -> Tensor:
    """Per sample: right (top-1 for multiclass; thresholded prediction for binary)."""
    cfg = level.config
    parts = []
    for start, key, probs, _ in level.row_blocks():
        t = level.target[start:start + key.shape[0]]
        if level.task == "multiclass":
            parts.append(argmax_lowest(key) == t)
        else:
            parts.append((probs[:, 0] > cfg.threshold) == t[:, 0].bool())
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


def _slice_defs(cfg, ctx) -> List[Tuple[str, Any, Tensor]]:
    """``(column, value, videos)`` of every group slice of the suite's rows."""
    out = []
    for j, name in enumerate(cfg.slices):
        col = ctx.groups[:, j]
        for value in torch.unique(col).tolist():
            out.append((name, int(value), torch.unique(ctx.vid[col == value])))
    return out


def _slice_stats(cfg, ctx, defs, b: int, seed: int) -> Dict[Tuple[str, Any], Tuple[Dict[str, float], Dict[str, Tensor]]]:
    """Per slice definition: the point values and the replicates of the suite's keys on the
    slice's videos (NaN and no replicates when the suite has none of them)."""
    out = {}
    for name, value, videos in defs:
        mask = torch.isin(ctx.vid, videos.to(ctx.vid.device))
        if not bool(mask.any()):
            out[(name, value)] = ({}, {})
            continue
        out[(name, value)] = (point_values(cfg, ctx, mask), bs.suite_replicates(cfg, ctx, b, seed, mask))
    return out


def _collect(su, b: int, seed: int, slice_defs=None) -> Dict[str, Any]:
    """Everything the comparison needs from one suite, inside its sync."""

    cfg = su.config

    def run():
        ev = su.evaluation("context")
        ctx = ev.context
        if not ctx.has_video_ids:
            raise ValueError("compare() pairs the two suites by video: update them with video_ids")
        res: Dict[str, Any] = {"point": {k: float(v) for k, v in ev.scalars.items()}, "levels": {}}
        res["videos"] = torch.unique(ctx.vid)
        if cfg.slices:
            defs = slice_defs if slice_defs is not None else _slice_defs(cfg, ctx)
            res["slice_defs"], res["slices"] = defs, _slice_stats(cfg, ctx, defs, b, seed)
        levels = bs.resampled_levels(cfg, ctx, b, seed, unit="video")
        res["reps"] = {}
        for name, level, u, ww, miss in levels:
            if name == "video":
                res["targets"] = level.target
            S = bs.weighted_stats(level, u, ww, miss)
            reps = level_scalars(cfg, cfg.task, keys_for(cfg.task, cfg.top_k, level.reduction), S)
            res["reps"].update({f"{name}/{k}": v for k, v in reps.items()})
            if cfg.task == "multiclass":
                per_class = divide(S["tp"], S["support"], float("nan"))
                point_class = divide(level.stats["tp"], level.stats["support"], float("nan"))
            elif cfg.task == "multilabel":
                per_class = torch.where(S["npos"] > 0, S["ap"], torch.full_like(S["ap"], float("nan")))
                point_class = torch.where(level.stats["npos"] > 0, level.stats["ap"].double(),
                                          torch.full_like(level.stats["ap"].double(), float("nan")))
            else:
                per_class = point_class = None
            entry = {"per_class": per_class, "point_class": point_class}
            if cfg.task != "multilabel":
                right = _correct(level)
                if name == "clip":
                    entry["ids"] = (ctx.vid, ctx.clip_ids) if ctx.clip_ids is not None else None
                else:
                    entry["ids"] = (res["videos"], None)  # the video level's rows: ids ascending
                entry["right"] = right
            res["levels"][name] = entry
        add_challenge_score(cfg, res["reps"])
        return res

    return su.synced(run)


def _pair_rows(ids_a: Tuple[Tensor, Optional[Tensor]], ids_b: Tuple[Tensor, Optional[Tensor]]):
    """Positions of the samples of ``a`` and ``b`` with the same ids, in id order."""

    def key(ids):
        v, c = ids
        k = v.long() if c is None else bs.unit_hash(v, c)
        order = torch.argsort(k, stable=True)
        return k[order], order

    ka, oa = key(ids_a)
    kb, ob = key(ids_b)
    if ka.numel() != kb.numel() or not torch.equal(ka, kb):
        _, ia, ib = _intersect(ka, kb)
        return oa[ia], ob[ib]
    return oa, ob


def _intersect(ka: Tensor, kb: Tensor):
    both = torch.isin(ka, kb)
    ia = torch.nonzero(both).squeeze(1)
    ib = torch.searchsorted(kb, ka[ia])
    return ka[ia], ia, ib


def _name(su, vid: int) -> Any:
    reg = getattr(su, "id_registry", None)
    return reg.name(int(vid)) if reg is not None and int(vid) in reg else int(vid)


def _check_same_videos(a, b, ra, rb, names: Tuple[str, str]) -> None:
    va, vb = ra["videos"], rb["videos"]
    if va.numel() != vb.numel() or not torch.equal(va, vb):
        only_a, only_b = va[~torch.isin(va, vb)], vb[~torch.isin(vb, va)]
        example = (f"e.g. video {_name(a, only_a[0])!r} is only in {names[0]}" if only_a.numel()
                   else f"e.g. video {_name(b, only_b[0])!r} is only in {names[1]}")
        raise ValueError(f"{names[0]} and {names[1]} must hold the same videos: {only_a.numel()} video(s) only in "
                         f"{names[0]}, {only_b.numel()} only in {names[1]} ({example})")
    ta, tb = ra.get("targets"), rb.get("targets")
    if ta is not None and tb is not None:
        differ = (ta != tb).reshape(ta.shape[0], -1).any(1)
        if bool(differ.any()):
            first = int(torch.nonzero(differ)[0])
            raise ValueError(f"{names[0]} and {names[1]} disagree on the target of {int(differ.sum())} video(s) (first: "
                             f"video {_name(a, va[first])!r}): they are not predictions on the same test list")


def _deltas(ra_reps, rb_reps, ra_point, rb_point, ci: float) -> Dict[str, Delta]:
    diffs = {key: rb_reps[key] - rep_a for key, rep_a in ra_reps.items() if key in rb_reps}
    out: Dict[str, Delta] = {}
    for key, (low, high) in bs.percentile_intervals(diffs, ci).items():
        pa, pb = ra_point[key], rb_point[key]
        out[key] = Delta(key, pa, pb, pb - pa, low, high, bootstrap_p_value(diffs[key]))
    return out


def _slice_deltas(a, ra, rb, ci: float) -> List[SliceDelta]:
    out = []
    nan = float("nan")
    keys = list(ra["reps"])
    for name, value, videos in ra.get("slice_defs", []):
        (pa, reps_a), (pb, reps_b) = ra["slices"][(name, value)], rb["slices"][(name, value)]
        if reps_a and reps_b:
            deltas = _deltas(reps_a, reps_b, pa, pb, ci)
        else:  # no videos: every key undefined, no interval
            deltas = {k: Delta(k, nan, nan, nan, nan, nan, nan) for k in keys}
        out.append(SliceDelta(name, value, int(videos.numel()), int(videos.numel()) < a.config.min_slice_size, deltas))
    return out


def compare(a, b, bootstrap: int = 1000, ci: float = 0.95, seed: int = 0,
            names: Tuple[str, str] = ("`a`", "`b`")) -> Comparison:
    """Paired comparison of suite ``a`` (baseline) and suite ``b`` (candidate); see the module doc.
    ``names``: how errors name the two (e.g. their files).

    >>> import torch
    >>> import video_metrics as vm
    >>> g = torch.Generator().manual_seed(0)
    >>> target = torch.randint(0, 4, (200,), generator=g)
    >>> noise, hot = 2 * torch.randn(200, 4, generator=g), torch.nn.functional.one_hot(target, 4)
    >>> ids, clip = torch.arange(200), torch.zeros(200, dtype=torch.long)  # 200 one-clip videos
    >>> a, b = vm.VideoClassificationMetrics(4), vm.VideoClassificationMetrics(4)
    >>> a.update(noise + hot, target, ids, clip)
    >>> b.update(noise + 3 * hot, target, ids, clip)  # b: the same clips, a stronger signal
    >>> c = compare(a, b, bootstrap=200)
    >>> d = c.deltas["clip/top1"]
    >>> round(d.a, 3), round(d.b, 3), d.low > 0, c.mcnemar["clip"].a_wrong_b_right
    (0.39, 0.71, True, 64)
    """
    bs.check_bootstrap(bootstrap, ci, "video", seed)
    if bootstrap < 1:
        raise ValueError(f"`bootstrap` must be positive, got {bootstrap}")
    _check_pair(a, b)
    ra = _collect(a, bootstrap, seed)
    rb = _collect(b, bootstrap, seed, ra.get("slice_defs"))
    _check_same_videos(a, b, ra, rb, names)
    va = ra["videos"]
    deltas = _deltas(ra["reps"], rb["reps"], ra["point"], rb["point"], ci)
    mcn: Dict[str, McNemar] = {}
    flips: Dict[str, Dict[str, List[Any]]] = {}
    for lv, ea in ra["levels"].items():
        eb = rb["levels"][lv]
        if "right" not in ea or ea["ids"] is None or eb["ids"] is None:
            continue
        ia, ib = _pair_rows(ea["ids"], eb["ids"])
        ra_, rb_ = ea["right"][ia], eb["right"][ib]
        worse = ra_ & ~rb_
        better = ~ra_ & rb_
        n10, n01 = int(worse.sum()), int(better.sum())
        mcn[lv] = McNemar(lv, n10, n01, int(ia.numel()), mcnemar_exact(n10, n01))
        vid, cid = ea["ids"]
        vid = vid[ia]
        cid = cid[ia] if cid is not None else None

        def ids_of(mask):
            sel = torch.nonzero(mask).squeeze(1).tolist()
            if cid is None:
                return [_name(a, vid[i]) for i in sel]
            return [(_name(a, vid[i]), int(cid[i])) for i in sel]

        flips[lv] = {"right_to_wrong": ids_of(worse), "wrong_to_right": ids_of(better)}
    per_class: List[ClassDelta] = []
    pc_level = "video" if "video" in ra["levels"] else "clip"
    ea, eb = ra["levels"][pc_level], rb["levels"][pc_level]
    if ea["per_class"] is not None:
        metric = "recall" if a.config.task == "multiclass" else "ap"
        d = eb["per_class"] - ea["per_class"]  # (B, C)
        point_a, point_b = ea["point_class"], eb["point_class"]
        tail = (1 - ci) / 2  # the percentile interval of percentile_intervals, per class
        q = torch.nanquantile(d, torch.tensor([tail, 1 - tail], dtype=torch.float64, device=d.device), dim=0)
        pvals = [bootstrap_p_value(d[:, j]) if bool(~torch.isnan(point_a[j]) & ~torch.isnan(point_b[j])) else float("nan")
                 for j in range(d.shape[1])]
        qvals = benjamini_hochberg(pvals)
        names = list(a.config.class_names)
        for j in range(d.shape[1]):
            pa, pb = float(point_a[j]), float(point_b[j])
            per_class.append(ClassDelta(j, names[j], metric, pa, pb, pb - pa, float(q[0, j]), float(q[1, j]), pvals[j],
                                        qvals[j]))
        per_class.sort(key=lambda x: (x.delta != x.delta, x.delta))
    return Comparison(bootstrap, float(ci), seed, int(va.numel()), deltas, mcn, per_class, flips, pc_level,
                      _slice_deltas(a, ra, rb, ci))
