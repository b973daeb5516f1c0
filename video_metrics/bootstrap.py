"""Bootstrap confidence intervals that resample **videos**, vectorised over replicates.

A replicate gives every resampling unit (a video, by default) a count ``w`` drawn from
Poisson(1) by a counter-based hash of ``(seed, replicate, unit id)``: the Poisson bootstrap
(Hanley & MacGibbon 2006; TensorFlow Model Analysis), which for more than a few dozen units
is equivalent to drawing the units with replacement. Because the counts are a function of the
ids and the seed only, the intervals do not depend on row order, batch size, world size or
sampler padding, and two suites evaluated on the same videos get the same resamples (paired
comparisons, :mod:`video_metrics.compare`), as do slices (:mod:`video_metrics.slices`).

A replicate's value of a key is the key computed on the data set in which every clip of unit
``u`` appears ``w_u`` times (tested against that materialised data set). Nothing loops over
replicates: every key is a function of per-unit sufficient statistics (counts by class, bin
sums, loss sums) or, for AP and AUROC, of per-positive counts by unit of the rows ranked at or
above that positive, and the replicate weights enter through one matrix product per table
(``(B, units) @ (units, ...)``). Counts are integers, and the products are exact (float32 while
the weighted totals stay below 2**24, float64 beyond), so the results are identical on 1 or N
processes up to the order of a few float64 sums (1e-15 relative).

Cost, per level: ``O(B * units * (classes + positives))`` multiply-adds in matrix products, plus
one sort per class; memory: the level's ``(classes, rows)`` ranking matrix plus blocks of
``(positives, units)`` counts.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .functional.checks import check_choice, check_probability
from .functional.calibration import bin_index
from .functional.classification import binary_losses, multiclass_rows
from .functional.ranking import copy_transposed
from .levels import add_challenge_score, keys_for, level_scalars

__all__ = ["poisson_weights", "unit_hash", "weighted_stats", "replicate_scalars", "percentile_intervals",
           "check_bootstrap", "UNITS", "mix64", "resampled_levels", "suite_replicates", "intervals_for", "replicates"]

UNITS = ("video", "clip")

_MASK64 = (1 << 64) - 1


def _s64(x: int) -> int:
    """A 64-bit pattern as a signed int64 value."""
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


_GAMMA = _s64(0x9E3779B97F4A7C15)
_M1 = _s64(0xBF58476D1CE4E5B9)
_M2 = _s64(0x94D049BB133111EB)


def _shr(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 patterns."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64(x: Tensor) -> Tensor:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014) on int64 tensors (wrapping arithmetic)."""
    x = x + _GAMMA
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def unit_hash(ids: Tensor, second: Optional[Tensor] = None) -> Tensor:
    """One int64 key per unit: the id itself, or a hash of ``(id, second)`` (clip units: video and
    clip id)."""
    ids = ids.long()
    return ids if second is None else mix64(mix64(ids) + second.long())


# P(X <= k) for X ~ Poisson(1), k = 0..30 (the mass beyond is below 1e-33)
_POISSON_CDF = [sum(math.exp(-1.0) / math.factorial(j) for j in range(k + 1)) for k in range(31)]


def poisson_weights(keys: Tensor, replicates: int, seed: int, dtype=torch.float64) -> Tensor:
    """``(replicates, units)`` Poisson(1) counts, each a function of ``(seed, replicate, key)``."""
    dev = keys.device
    keys = keys.long()
    r = torch.arange(replicates, dtype=torch.long, device=dev)
    base = mix64(mix64(torch.tensor(int(seed), dtype=torch.long, device=dev)) + r)  # (B,)
    h = mix64(base[:, None] ^ mix64(keys)[None, :])
    u = _shr(h, 11).double() * (2.0 ** -53)  # uniform on [0, 1)
    cdf = torch.tensor(_POISSON_CDF, dtype=torch.float64, device=dev)
    return torch.searchsorted(cdf, u, right=True).clamp_max(len(_POISSON_CDF) - 1).to(dtype)


def check_bootstrap(bootstrap: Any, ci: Any, unit: Any, seed: Any) -> None:
    """Check the bootstrap options (replicates >= 0, ``ci`` in (0, 1), the resampling unit, an int seed)."""
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"`bootstrap` must be a non-negative int (the number of replicates; 0: no intervals), "
                         f"got {bootstrap!r}")
    check_probability("ci", ci)
    if not 0 < float(ci) < 1:
        raise ValueError(f"`ci` must lie strictly between 0 and 1 (e.g. 0.95), got {ci!r}")
    check_choice("bootstrap_unit", unit, UNITS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an int, got {seed!r}")


# ---------------------------------------------------------------------------------------------
# per-unit counts of the entries ranked at or above each query


def counts_above(sorted_scores: Tensor, sorted_units: Tensor, queries: Tensor, num_units: int) -> Tuple[Tensor, Tensor]:
    """For entries (``sorted_scores`` ascending, with their unit) and query scores: ``(ge, gt)``,
    ``(Q, num_units)`` int32 counts of the entries of each unit with score ``>=`` / ``>`` each query.

    The entries at or above a query are a suffix of the sorted entries; the suffixes are cut at
    the ``2Q`` query positions, each segment is histogrammed by unit once, and a reverse cumulative
    sum over the segments gives every suffix: ``O(M + Q * units)``, not ``O(M * Q)``."""
    q = queries.numel()
    dev = sorted_scores.device
    lo = torch.searchsorted(sorted_scores, queries, right=False)  # entries >= query: [lo, M)
    hi = torch.searchsorted(sorted_scores, queries, right=True)  # entries > query: [hi, M)
    cuts = torch.cat([lo, hi])
    cs, order = torch.sort(cuts)
    m = sorted_scores.numel()
    seg = torch.searchsorted(cs, torch.arange(m, device=dev), right=True)  # cuts <= position
    hist = torch.zeros((2 * q + 1) * num_units, dtype=torch.int32, device=dev)
    hist.index_add_(0, seg * num_units + sorted_units, torch.ones(m, dtype=torch.int32, device=dev))
    hist = hist.view(2 * q + 1, num_units)
    suffix = hist.flip(0).cumsum(0, dtype=torch.int32).flip(0)
    out = torch.empty(2 * q, num_units, dtype=torch.int32, device=dev)
    out[order] = suffix[1:]
    return out[:q], out[q:]


def _mm_dtype(w: Tensor, total: float):
    """float32 while every weighted count is an integer below 2**24 (exact), else float64."""
    return torch.float32 if float(w.max()) * total < 2 ** 24 else torch.float64


class _ReplicateRanks:
    """Per-class AP and AUROC of every replicate from the positives' per-unit counts, turned into
    replicate values a batch of query columns at a time (one matrix product per table)."""

    def __init__(self, w: Tensor, wall: Tensor, c: int, dt, auroc: bool) -> None:
        b = w.shape[0]
        dev = w.device
        self.w, self.wd, self.wall, self.auroc = w, w.to(dt), wall, auroc
        self.dt, self.b, self.c, self.dev = dt, b, c, dev
        self.ap = torch.full((b, c), float("nan"), dtype=torch.float64, device=dev)
        self.auc = self.ap.clone()
        self.npos = torch.zeros(b, c, dtype=torch.float64, device=dev)
        self.pending: List[Tuple] = []  # (class, query units, ge_all, gt_all, ge_pos, gt_pos)
        self.size = 0

    def add(self, k: int, qu: Tensor, ge_all: Tensor, gt_all: Tensor, ge_pos: Tensor, gt_pos: Tensor, budget: int) -> None:
        self.pending.append((k, qu, ge_all, gt_all, ge_pos, gt_pos))
        self.size += qu.numel()
        if self.size >= budget:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        pending, b, c, dev, dt, wd = self.pending, self.b, self.c, self.dev, self.dt, self.wd
        cls = torch.cat([torch.full((p[1].numel(),), p[0], dtype=torch.long, device=dev) for p in pending])
        qu = torch.cat([p[1] for p in pending])
        mats = [torch.cat([p[k] for p in pending]) for k in range(2, 6)]
        self.pending, self.size = [], 0
        wq = self.w[:, qu].double()  # (B, Q)
        a_ge = (wd @ mats[0].T.to(dt)).double()
        p_ge = (wd @ mats[2].T.to(dt)).double()
        # without ties, the rows strictly above a query are those at or above it but itself
        a_gt = wq.neg().add_(a_ge) if bool(((mats[0] - mats[1]).sum(1) == 1).all()) else (wd @ mats[1].T.to(dt)).double()
        p_gt = wq.neg().add_(p_ge) if bool(((mats[2] - mats[3]).sum(1) == 1).all()) else (wd @ mats[3].T.to(dt)).double()
        on = wq > 0
        wpos = torch.zeros(b, c, dtype=torch.float64, device=dev).index_add_(1, cls, wq)
        prec = torch.where(on, p_ge / a_ge.clamp_min(1e-300), torch.zeros_like(a_ge))
        ap_sum = torch.zeros(b, c, dtype=torch.float64, device=dev).index_add_(1, cls, wq * prec)
        touched = torch.unique(cls)
        self.npos[:, touched] = wpos[:, touched]
        wp = wpos[:, touched]
        self.ap[:, touched] = ap_sum[:, touched] / wp.clamp_min(1e-300)
        if self.auroc:
            wpos_q = wpos[:, cls]
            below = (self.wall[:, None] - a_ge) - (wpos_q - p_ge)
            tied = (a_ge - a_gt) - (p_ge - p_gt)
            u_sum = torch.zeros(b, c, dtype=torch.float64, device=dev).index_add_(1, cls, wq * (below + 0.5 * tied))
            wn = self.wall[:, None] - wp
            self.auc[:, touched] = u_sum[:, touched] / (wp * wn).clamp_min(1e-300)


def _weighted_ap_auroc(rank_t: Tensor, unit: Tensor, w: Tensor, positives, rows: Optional[Tensor] = None,
                       auroc: bool = True):
    """Per-class AP and AUROC of every replicate: ``(ap, auc, npos, nneg)``, each ``(B, C)``.

    ``rank_t``: ``(C, n)`` ranking scores, or anything with ``shape``, ``device`` and ``[k]`` read
    in class order (:class:`~video_metrics.levels.ClassRows`); ``unit``: the unit of each row; ``w``: ``(B, U)``;
    ``positives(c)``: the rows positive for class ``c``; ``rows``: restrict the ranking to these
    rows (Charades' ``empty_videos="exclude"``). A replicate's AP is
    ``sum_i w_i P_i / sum_i w_i`` over the positives ``i``, with ``P_i`` the weighted positives over
    the weighted rows ranked at or above ``i``; its AUROC counts, for each positive, the weighted
    negatives below it plus half those tied with it (the Mann-Whitney statistic)."""
    c, n = rank_t.shape
    b, nu = w.shape
    dev = rank_t.device
    keep = None
    if rows is not None:
        keep = torch.zeros(n, dtype=torch.bool, device=dev)
        keep[rows] = True
    u_all = unit if keep is None else unit[keep]
    n_u = torch.zeros(nu, dtype=torch.float64, device=dev).index_add_(0, u_all, torch.ones_like(u_all, dtype=torch.float64))
    wall = w.double() @ n_u  # (B,)
    acc = _ReplicateRanks(w, wall, c, _mm_dtype(w, float(u_all.numel())), auroc)
    budget = max(1, (1 << 23) // max(nu, b))  # query columns per matrix product
    for k in range(c):
        pos_rows = positives(k)
        if keep is not None:
            pos_rows = pos_rows[keep[pos_rows]]
        if pos_rows.numel() == 0:
            continue
        x = rank_t[k] if keep is None else rank_t[k][keep]
        xs, order = torch.sort(x)
        q = rank_t[k][pos_rows]
        ge_all, gt_all = counts_above(xs, u_all[order], q, nu)
        ps, po = torch.sort(q)
        qu = unit[pos_rows]
        ge_pos, gt_pos = counts_above(ps, qu[po], q, nu)
        acc.add(k, qu, ge_all, gt_all, ge_pos, gt_pos, budget)
    acc.flush()
    return acc.ap, acc.auc, acc.npos, wall[:, None] - acc.npos


def _weighted_pooled_ap(rank_t: Tensor, positive: Tensor, unit: Tensor, w: Tensor) -> Tuple[Tensor, Tensor]:
    """Multilabel ``mAP_micro`` of every replicate: one ranking of every (row, class) pair."""
    c, n = rank_t.shape
    b, nu = w.shape
    dev = rank_t.device
    xs, order = torch.sort(rank_t.reshape(-1))
    us = unit.repeat(c)[order]
    cls, row = torch.nonzero(positive.T, as_tuple=True)
    q = rank_t[cls, row]
    qu = unit[row]
    ps, po = torch.sort(q)
    pus = qu[po]
    dt = _mm_dtype(w, float(n * c))
    wd = w.to(dt)
    wq_all = w[:, qu].double()
    num = torch.zeros(b, dtype=torch.float64, device=dev)
    budget = max(1, (1 << 23) // max(nu, b))
    for s in range(0, q.numel(), budget):
        qq = q[s:s + budget]
        ge_all, _ = counts_above(xs, us, qq, nu)
        ge_pos, _ = counts_above(ps, pus, qq, nu)
        a_ge = (wd @ ge_all.T.to(dt)).double()
        p_ge = (wd @ ge_pos.T.to(dt)).double()
        wq = wq_all[:, s:s + budget]
        num += torch.where(wq > 0, wq * p_ge / a_ge.clamp_min(1e-300), torch.zeros_like(a_ge)).sum(1)
    wpos = wq_all.sum(1)
    return num / wpos.clamp_min(1e-300), wpos


# ---------------------------------------------------------------------------------------------
# the sufficient statistics of one level under replicate weights


_RANK_KEYS = ("auroc_macro", "auprc_macro", "mAP", "mAP_weighted", "mAP_micro", "ap", "auroc")


def weighted_stats(level, unit: Tensor, w: Tensor, missing: Optional[Tensor] = None,
                   keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The statistics :func:`~video_metrics.levels.level_scalars` reads, for every replicate.

    ``level``: a :class:`~video_metrics.levels.Level`; ``unit``: the unit (column of ``w``) of
    each of its rows; ``w``: ``(B, U)`` replicate counts; ``missing``: ``(B,)`` weighted count of
    expected videos without clips (video level, ``missing="count_as_wrong"``). Per-unit tables
    come from one row pass (a table per resampling unit), replicated by matrix products; AP and AUROC from
    the weighted ranking."""
    cfg, task = level.config, level.task
    keys = keys_for(task, cfg.top_k, level.reduction) if keys is None else list(keys)
    c, n = level.c, level.n
    b, nu = w.shape
    need = {"cal": "ece" in keys or "mce" in keys, "loss": "nll" in keys or "brier" in keys,
            "rank": any(k in _RANK_KEYS for k in keys)}
    n_u = torch.zeros(nu, dtype=torch.float64, device=w.device).index_add_(
        0, unit, torch.ones(n, dtype=torch.float64, device=w.device))
    tabs, bins, loss, rank_t = _unit_tables(level, unit, nu, need)
    wd = w.double()
    S: Dict[str, Any] = {"n": wd @ n_u, "missing": 0 if missing is None else missing}
    nb, k = cfg.calibration_bins, len(cfg.top_k)
    if task == "multiclass":
        per = (wd @ tabs.view(k + 3, nu, c)).view(k + 3, b, c) if nu else torch.zeros(k + 3, b, c, dtype=torch.float64)
        S.update(hits=per[:k], tp=per[k], pc=per[k + 1], support=per[k + 2])
    else:
        per = torch.stack([wd @ tabs[j] for j in range(4)])
        if task == "binary":
            S.update(tp=per[0, :, 0], fp=per[1, :, 0], fn=per[2, :, 0], tn=per[3, :, 0])
        else:
            S.update(tp=per[0], fp=per[1], fn=per[2])
    if need["cal"]:
        S["bins"] = (wd @ bins.view(3, nu, nb).permute(1, 0, 2).reshape(nu, 3 * nb)).view(b, 3, nb)
    if need["loss"]:
        S["nll"], S["brier"] = wd @ loss[0], wd @ loss[1]
    if need["rank"]:
        S.update(_ranking_stats(level, rank_t, unit, w, keys))
    return S


def _unit_tables(level, unit: Tensor, nu: int, need: Dict[str, bool]):
    """One pass over the level's rows: per-unit tables ``(tabs, bins, loss, rank_t)`` — multiclass
    top-k hits, tp, predicted and support by ``unit * C + class``; otherwise tp/fp/fn/tn by unit and
    class; calibration bins and loss sums by unit; and, multilabel, the ``(C, N)`` ranking matrix
    when the level did not keep one. The point estimates' own per-row kernel
    (:func:`~video_metrics.functional.classification.multiclass_rows`)."""
    cfg, task, c, n = level.config, level.task, level.c, level.n
    dev, t_all = unit.device, level.target
    nb, k = cfg.calibration_bins, len(cfg.top_k)
    mc = task == "multiclass"
    tabs = (torch.zeros(k + 3, nu * c, dtype=torch.float64, device=dev) if mc else
            torch.zeros(4, nu, c, dtype=torch.float64, device=dev))  # hits per k, tp, pc, support | tp, fp, fn, tn
    bins = torch.zeros(3, nu * nb, dtype=torch.float64, device=dev)
    loss = torch.zeros(2, nu, dtype=torch.float64, device=dev)
    # the level's own ranking matrix when it kept it unsorted (detail=True); multiclass ranking scores
    # are read a class block at a time, rebuilt from the rows (Level.class_rows), never as a whole
    rank_t = level.rank_matrix if need["rank"] else None
    build = need["rank"] and rank_t is None and not mc
    if build:
        rank_t = torch.empty((c, n), dtype=level.rank_dtype, device=dev)
    # clip-level multiclass logits: the rows' log-sum-exp gives the losses and the ranking scores
    # (as in the level's own row pass, so that the point estimates are the level's own)
    fused = mc and level.is_rows and cfg.input == "logits"
    for start, key, probs, rank in level.row_blocks(lazy_rank=fused):
        m = key.shape[0]
        t, u = t_all[start:start + m], unit[start:start + m]
        if build:
            copy_transposed(rank_t[:, start:start + m], rank)
        if mc:
            r = multiclass_rows(key, t, probs, rank, losses=need["cal"] or need["loss"], k_max=max(cfg.top_k))
            _add_multiclass(tabs, bins, loss, r, t, u, c, nb, cfg.top_k, need)
        else:
            _add_multilabel(tabs, bins, loss, probs, t.bool(), u, c, nb, cfg.threshold, need,
                            level.logit[start:start + m, 0] if level.logit is not None else None)
    return tabs, bins, loss, rank_t


def _add_multiclass(tabs, bins, loss, r, t: Tensor, u: Tensor, c: int, nb: int, top_k, need) -> None:
    m, dev, k = t.shape[0], t.device, len(top_k)
    ones = torch.ones(m, dtype=torch.float64, device=dev)
    at_t = u * c + t
    for i, kk in enumerate(top_k):
        tabs[i].index_add_(0, at_t, (r.rank < kk).double())
    tabs[k].index_add_(0, at_t, (r.pred == t).double())
    tabs[k + 1].index_add_(0, u * c + r.pred, ones)
    tabs[k + 2].index_add_(0, at_t, ones)
    if need["cal"]:
        bins.index_add_(1, u * nb + bin_index(r.conf, nb), torch.stack([ones, r.conf.double(), (r.pred == t).double()]))
    if need["loss"]:
        loss[0].index_add_(0, u, r.nll)
        loss[1].index_add_(0, u, r.brier)


def _add_multilabel(tabs, bins, loss, probs: Tensor, pos: Tensor, u: Tensor, c: int, nb: int, threshold: float, need,
                    logit: Optional[Tensor]) -> None:
    pred = probs > threshold
    for j, v in enumerate((pred & pos, pred & ~pos, ~pred & pos, ~pred & ~pos)):
        tabs[j].index_add_(0, u, v.double())
    if need["cal"]:
        p = probs.reshape(-1)
        bi = u.repeat_interleave(c) * nb + bin_index(p, nb)
        bins.index_add_(1, bi, torch.stack([torch.ones_like(p, dtype=torch.float64), p.double(),
                                            pos.reshape(-1).double()]))
    if need["loss"]:  # binary
        nll, brier = binary_losses(pos[:, 0], probs[:, 0], logit)
        loss[0].index_add_(0, u, nll)
        loss[1].index_add_(0, u, brier)


def _ranking_stats(level, rank_t: Optional[Tensor], unit: Tensor, w: Tensor, keys) -> Dict[str, Any]:
    """Per-class AP/AUROC of every replicate (and the multilabel mAP's used rows and micro AP)."""
    cfg, task, c, t_all = level.config, level.task, level.c, level.target
    dev = w.device
    if task == "multiclass":
        if rank_t is None:
            rank_t = level.class_rows()
        order = torch.argsort(t_all, stable=True)
        starts = torch.searchsorted(t_all[order], torch.arange(c + 1, device=dev)).tolist()

        def positives(j):
            return order[starts[j]:starts[j + 1]]
    else:
        pos_t = t_all.bool().T.contiguous()

        def positives(j):
            return torch.nonzero(pos_t[j]).squeeze(1)
    ap, auc, npos, nneg = _weighted_ap_auroc(rank_t, unit, w, positives)
    S = dict(ap=ap, auc=auc, npos=npos, nneg=nneg)
    if task == "multilabel" and any(k.startswith("mAP") for k in keys):
        S["ap_used"], S["npos_used"] = ap, npos
        if cfg.empty_videos == "exclude":
            has_pos = t_all.bool().any(1)
            if not bool(has_pos.all()):
                rows = torch.nonzero(has_pos).squeeze(1)
                S["ap_used"], _, S["npos_used"], _ = _weighted_ap_auroc(rank_t, unit, w, positives, rows=rows,
                                                                        auroc=False)
        if "mAP_micro" in keys:
            S["micro_ap"], S["micro_npos"] = _weighted_pooled_ap(rank_t, t_all.bool(), unit, w)
    return S


def replicate_scalars(level, unit: Tensor, w: Tensor, missing: Optional[Tensor] = None,
                      classes: Optional[Tensor] = None, keys: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
    """The level's scalar keys (all, or ``keys``) for every replicate: ``{key: (B,)}``. Only the
    statistics those keys need are computed (no ranking pass without AP/AUROC keys)."""
    all_keys = keys_for(level.task, level.config.top_k, level.reduction)
    keys = all_keys if keys is None else [k for k in all_keys if k in keys]
    if not keys:
        return {}
    S = weighted_stats(level, unit, w, missing, keys)
    return level_scalars(level.config, level.task, keys, S, classes)


def percentile_intervals(reps: Dict[str, Tensor], ci: float) -> Dict[str, Tuple[float, float]]:
    """Percentile intervals ``(low, high)`` (linear interpolation, NumPy's default) over the
    replicates that are defined (a replicate can leave a key undefined, e.g. a class with no
    positive); ``(nan, nan)`` when none is."""
    a = (1.0 - ci) / 2
    out: Dict[str, Tuple[float, float]] = {}
    for key, v in reps.items():
        v = v.double()
        q = torch.nanquantile(v, torch.tensor([a, 1 - a], dtype=torch.float64, device=v.device))
        out[key] = (float(q[0]), float(q[1]))
    return out


def level_units(vid: Tensor, unit: str, clip_ids: Optional[Tensor] = None, has_video_ids: bool = True) -> Tuple[Tensor, Tensor]:
    """``(keys, unit_of_row)``: the hash keys of the resampling units and each row's unit. Video
    units are the distinct video ids (sorted); clip units the ``(video, clip)`` pairs, or the rows
    themselves when there are no clip ids (then the draw depends on row order)."""
    n = vid.numel()
    dev = vid.device
    if unit == "video" and has_video_ids:
        keys, inverse = torch.unique(vid, sorted=True, return_inverse=True)
        return keys, inverse
    if clip_ids is not None:
        return unit_hash(vid, clip_ids), torch.arange(n, device=dev)
    return torch.arange(n, dtype=torch.long, device=dev), torch.arange(n, device=dev)


def resampled_levels(cfg, ctx, replicates: int, seed: int, rows_mask: Optional[Tensor] = None,
                     unit: Optional[str] = None, video: bool = True):
    """``[(name, level, unit of each row, (B, units) counts, missing)]`` for the clip level and,
    with a video reduction (and ``video``), the video level of the suite's kept rows (or the
    subset ``rows_mask``): what :func:`weighted_stats` reads. ``unit``: the resampling unit of the
    clip level (default: the suite's ``bootstrap_unit``); the video level's rows are videos.
    ``missing``: ``(B,)`` counts of the expected videos without clips, or None."""
    unit = cfg.bootstrap_unit if unit is None else unit
    vid = ctx.vid if rows_mask is None else ctx.vid[rows_mask]
    cid = ctx.clip_ids if rows_mask is None or ctx.clip_ids is None else ctx.clip_ids[rows_mask]
    if unit == "video" and not ctx.has_video_ids and "unit" not in ctx.warned:
        ctx.warned.add("unit")
        warnings.warn("bootstrap_unit='video' without video_ids: every clip is its own unit (pass video_ids to "
                      "resample videos)", stacklevel=4)
    ukeys, unit_of_row = level_units(vid, unit, cid, ctx.has_video_ids)
    out = [("clip", ctx.clip_level(rows_mask), unit_of_row, poisson_weights(ukeys, replicates, seed), None)]
    if cfg.video_reduction is not None and video:
        level, vids, missing_ids = ctx.video_level(rows_mask)
        missing = None
        if missing_ids is not None and missing_ids.numel():
            missing = poisson_weights(missing_ids, replicates, seed).sum(1)
        out.append(("video", level, torch.arange(vids.numel(), device=vids.device),
                    poisson_weights(vids, replicates, seed), missing))
    return out


def suite_replicates(cfg, ctx, replicates: int, seed: int, rows_mask: Optional[Tensor] = None,
                     classes: Optional[Tensor] = None, keys: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
    """``{"clip/<key>": (B,), "video/<key>": (B,)}`` for the suite's gathered rows (``ctx``: the
    evaluation context of :meth:`VideoClassificationMetrics.evaluation`); ``keys`` (prefixed, e.g.
    ``"video/top1"``) restricts the work to those keys."""

    def only(level: str):
        if keys is None:
            return None
        names = [k.split("/", 1)[1] for k in keys if k.startswith(level + "/")]
        return names + ["top1", "top5"] if "challenge_score" in names else names

    out: Dict[str, Tensor] = {}
    for name, level, unit, w, missing in resampled_levels(cfg, ctx, replicates, seed, rows_mask,
                                                          video=keys is None or bool(only("video"))):
        out.update({f"{name}/{k}": v for k, v in replicate_scalars(level, unit, w, missing, classes, only(name)).items()})
    add_challenge_score(cfg, out)
    return out


def intervals_for(cfg, ctx, keys: Optional[Sequence[str]] = None) -> Dict[str, Tuple[float, float]]:
    """The percentile intervals of the suite's keys (``cfg.bootstrap`` replicates, ``cfg.seed``, ``cfg.ci``)."""
    reps = suite_replicates(cfg, ctx, cfg.bootstrap, cfg.seed, keys=keys)
    if keys is not None:
        reps = {k: v for k, v in reps.items() if k in keys}
    return percentile_intervals(reps, cfg.ci)


def replicates(suite, replicates: Optional[int] = None, seed: Optional[int] = None,
               keys: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
    """``{key: (B,)}``: every scalar key of ``suite`` (or ``keys``, e.g. ``["video/top1"]``; exact
    mode, after its updates) on ``B`` resamples (default: the suite's ``bootstrap`` and
    ``seed``), synced across processes."""
    b = suite.bootstrap if replicates is None else replicates
    s = suite.seed if seed is None else seed
    if not b:
        raise ValueError("`replicates` must be positive (or construct the suite with bootstrap=B)")
    if suite.bins is not None:
        raise ValueError("bootstrap replicates need exact mode (bins=None)")

    def run():
        ctx = suite.evaluation("context").context
        return suite_replicates(suite.config, ctx, b, s, keys=keys)

    return suite.synced(run)
