"""Class-sharded ``compute()`` of :class:`~video_metrics.suite.VideoClassificationMetrics` under DDP.

The full sync gathers every clip row on every rank: per-rank memory and bytes received grow with
``N * C`` whatever the world size. Most of the suite decomposes by class instead: per-class AP,
AUROC and thresholded counts need one class column over all rows; argmax, the target's top-k
rank, confidences, NLL and Brier need a few numbers per row; the video reductions are group-bys
within a class column. So, with ``shard_classes`` (``"auto"``: when the gathered scores would
exceed :data:`AUTO_BYTES`; ``True``: always under DDP):

1. the summed states are all-reduced (one collective), then validation errors are raised on
   every rank alike, before anything else is exchanged;
2. each rank computes the row-wise clip quantities of its **own** rows from the whole rows (argmax,
   target rank, confidence, NLL, Brier: ~40 bytes a row) and every rank gathers them with the ids,
   targets and validity flags (two all-gathers), so every rank takes the same de-duplication
   decisions;
3. one ``all_to_all`` sends each rank, for every kept row, the columns of its class shard (the
   clip ranking scores, the video reduction's input and, for multilabel, the targets);
4. each rank computes its classes: clip and video AP/AUROC, thresholded counts, the video
   aggregation; the video level's row-wise quantities (multiclass) are combined across shards in
   two or three small rounds (per-video log-sum-exp for ``mean_logits``; max/argmax and the
   target's score; the classes above the target); multilabel micro AP exchanges the positive
   pairs' scores and their counts;
5. one all-gather assembles the per-class vectors, and every rank computes the keys from the
   same statistics (:func:`~video_metrics.levels.level_scalars`).

Collectives per ``compute()``: multiclass 5 (clip level only), 7 (``mean_probs``, ``max``,
``vote``), 8 (``mean_logits``); multilabel 9; plus 2 when rows repeat a ``(video_id, clip_id)``
(sampler padding): each rank fingerprints its own repeated rows and the rows they repeat, and one
gather lets every rank check that they are identical (different rows under one pair are an error). They are issued in the same order on every rank,
including a rank with no rows; a rank's memory and the bytes it receives are ``~N * C / world``
values plus ~50 bytes of row metadata a row. Integers equal the one-process results exactly and
floats to ~1e-15 (sums in another order; the ``mean_logits`` video softmax is combined from
per-shard log-sum-exps). ``report()``, bootstrap intervals and slices use the full gather.
Binary suites (one column) and histogram mode are never sharded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .functional.aggregation import (aggregate_blocks, group_rows, log_probabilities, row_fingerprints, rows_at,
                                     video_key, video_probs, video_targets)
from .functional.calibration import bin_update
from .functional.classification import (
    confusion_counts,
    multiclass_rows,
    multilabel_counts,
    probabilities,
    scatter_count,
    log_softmax_rows,
    rowwise_f64,
)
from .functional.ranking import (
    class_pass,
    pooled_ap_from_counts,
    pooled_counts,
    positive_index,
    sorted_positives,
    transpose_rows,
)
from .levels import add_video_counts, block_sizes, keys_for, level_scalars
from .metrics.base import COLLECTIVES, all_gather_packed
from .functional.aggregation import kept_rows, missing_video_ids

__all__ = ["AUTO_BYTES", "should_shard", "evaluate", "shard_bounds", "RankRows"]

#: ``shard_classes="auto"`` shards when the gathered clip scores would exceed this many bytes
AUTO_BYTES = 256 * 2**20


def should_shard(cfg, mode: Any, rows_seen: int, group) -> bool:
    """The same decision on every rank (from the synced row count): ``mode`` is the suite's
    ``shard_classes``."""
    if mode is False or cfg.bins is not None or cfg.task == "binary":
        return False
    if dist.get_world_size(group) < 2:
        return False
    if mode is True:
        return True
    return rows_seen * cfg.columns * 4 > AUTO_BYTES


def shard_bounds(c: int, world: int) -> List[Tuple[int, int]]:
    """Contiguous class ranges, as even as possible (some are empty when ``c < world``)."""
    base, extra = divmod(c, world)
    out, lo = [], 0
    for r in range(world):
        hi = lo + base + (1 if r < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


# ------------------------------------------------------------------------------------ collectives
def _all_gather_rows(tensors: Sequence[Tensor], group) -> Tuple[List[Tensor], List[int]]:
    """Row-concatenate (rank order) tensors of one row count (the first with non-empty rows):
    :func:`~video_metrics.metrics.base.all_gather_packed`, two collectives."""
    pieces, table = all_gather_packed([[t] for t in tensors], group, tensors[0].device)
    row_bytes = math.prod(tensors[0].shape[1:]) * tensors[0].element_size()
    counts = [int(b) // row_bytes for b in table[:, 0]]
    return [torch.cat([p.view(t.dtype).view(-1, *t.shape[1:]) for p in ps]) for t, ps in zip(tensors, pieces)], counts


def _all_gather_same(x: Tensor, group) -> Tensor:
    """All-gather of tensors of one shape on every rank: ``(world, *shape)``, one collective."""
    world = dist.get_world_size(group)
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x.contiguous(), group=group)
    COLLECTIVES["all_gather"] += 1
    return torch.stack(out)


def _all_reduce(x: Tensor, group) -> Tensor:
    dist.all_reduce(x, group=group)
    COLLECTIVES["all_reduce"] += 1
    return x


def _exchange(blocks, payloads, bounds, kept_counts: List[int], rank: int, group, dev) -> List[Tensor]:
    """One ``all_to_all``: every rank sends, for each of its kept rows, the columns of each
    destination's class shard of every payload (``(dtype, fn)``: ``fn(x, t)`` gives the ``(b, C)``
    values of a block of whole rows ``x`` with targets ``t``). Returns, per payload,
    ``(kept rows of every rank, own shard width)`` in rank order."""
    n_own = kept_counts[rank]
    item = [torch.empty((), dtype=d).element_size() for d, _ in payloads]

    align = max(item)

    def seg(rows: int, width: int, it: int) -> int:  # segments padded to the widest item: aligned views
        return -(-rows * width * it // align) * align

    send_sizes = [sum(seg(n_own, hi - lo, it) for it in item) for lo, hi in bounds]
    lo_me, hi_me = bounds[rank]
    w_me = hi_me - lo_me
    recv_sizes = [sum(seg(k, w_me, it) for it in item) for k in kept_counts]
    # to destination d: payload after payload, each (n_own, w_d) row-major
    send = torch.empty(sum(send_sizes), dtype=torch.uint8, device=dev)
    views = []
    off = 0
    for lo, hi in bounds:
        per = []
        for (dtype, _), it in zip(payloads, item):
            nbytes = n_own * (hi - lo) * it
            per.append(send[off:off + nbytes].view(dtype).view(n_own, hi - lo))
            off += seg(n_own, hi - lo, it)
        views.append(per)
    start = 0
    for x, t in blocks():
        b = x.shape[0]
        for j, (dtype, fn) in enumerate(payloads):
            v = fn(x, t).to(dtype)
            for d, (lo, hi) in enumerate(bounds):
                views[d][j][start:start + b] = v[:, lo:hi]
        start += b
    del views
    recv = torch.empty(sum(recv_sizes), dtype=torch.uint8, device=dev)
    dist.all_to_all_single(recv, send, recv_sizes, send_sizes, group=group)
    COLLECTIVES["all_to_all"] = COLLECTIVES.get("all_to_all", 0) + 1
    del send
    if len(payloads) == 1:  # one payload: the receive buffer is already the (rows, width) matrix
        return [recv.view(payloads[0][0]).view(-1, w_me) if w_me else
                torch.zeros(sum(kept_counts), 0, dtype=payloads[0][0], device=dev)]
    out: List[List[Tensor]] = [[] for _ in payloads]
    off = 0
    for k in kept_counts:
        for j, (dtype, _) in enumerate(payloads):
            nbytes = k * w_me * item[j]
            out[j].append(recv[off:off + nbytes].view(dtype).view(k, w_me))
            off += seg(k, w_me, item[j])
    return [torch.cat(o) for o in out]


# ------------------------------------------------------------------------------------ the parts
def _class_blocks(w: int, n: int) -> int:
    return max(block_sizes(n, max(w, 1))[1], 1)


def _ap_auroc_mc(cfg, rank_t: Tensor, t: Tensor, lo: int):
    """Per-class AP/AUROC of the shard's classes (multiclass, positives = rows of that class)."""
    w, n = rank_t.shape
    positives = positive_index(*sorted_positives(t, lo, lo + w), lo)
    return class_pass(w, _class_blocks(w, n), lambda c0, c1: rank_t[c0:c1], positives, cfg.ap_mode, overwrite=True)


def _ap_auroc_ml(cfg, rank_t: Tensor, pos: Tensor, rows: Optional[Tensor] = None):
    """Per-class AP/AUROC of the shard's classes (multilabel; ``rows``: restrict the ranking)."""
    w, n = rank_t.shape
    return class_pass(w, _class_blocks(w, n), lambda c0, c1: rank_t[c0:c1], lambda c0, c1: pos[:, c0:c1],
                      cfg.ap_mode, rows=rows)


@dataclass(frozen=True)
class RankRows:
    """One rank's rows as the suite stores them (nothing gathered yet): the score chunks, the
    row states, the synced id counts and the id registry (names in errors)."""

    chunks: List[Tensor]
    target: Tensor
    valid: Tensor
    video_ids: Tensor
    clip_ids: Tensor
    id_counts: Tuple[int, int, int]
    registry: Any = None

    def blocks(self, step: int):
        """``(start, rows)`` over the stored chunks (no concatenated copy of the local rows)."""
        off = 0
        for x in self.chunks:
            for i in range(0, x.shape[0], step):
                yield off + i, x[i:i + step]
            off += x.shape[0]


class _PerClass:
    """Named per-class vectors of the rank's class shard, gathered once for every shard."""

    def __init__(self) -> None:
        self.names: List[str] = []
        self.values: List[Tensor] = []

    def add(self, **named: Tensor) -> None:
        for k, v in named.items():
            self.names.append(k)
            self.values.append(v.double())

    def gather(self, bounds, w: int, group, dev) -> Dict[str, Tensor]:
        """Every shard's vectors side by side: ``{name: (C,)}`` (one collective)."""
        w_max = max(h - l_ for l_, h in bounds)
        packed = torch.zeros(len(self.values), w_max, dtype=torch.float64, device=dev)
        if self.values:
            packed[:, :w] = torch.stack(self.values)
        allp = _all_gather_same(packed, group)  # (world, K, w_max)
        full = torch.cat([allp[r, :, :h - l_] for r, (l_, h) in enumerate(bounds)], 1)  # (K, C)
        return dict(zip(self.names, full))


def _row_quantities(cfg, rows: RankRows, step: int, dev) -> List[Tensor]:
    """Stage 1 (multiclass): each own row's argmax, target rank, confidence, NLL, Brier and
    log-sum-exps (float32 and float64) from the whole row, gathered with the ids later."""
    k_max = max(cfg.top_k)
    cols = {k: [] for k in ("pred", "rt", "conf", "nll", "brier", "lse32", "lse64")}
    for i, x in rows.blocks(step):
        tb = rows.target[i:i + x.shape[0]]
        if cfg.input == "logits":
            r = multiclass_rows(x, tb, k_max=k_max)
            lse32 = r.lse[:, None]
        else:
            r = multiclass_rows(x, tb, x, x.log(), k_max=k_max)
            lse32 = x.logsumexp(1, keepdim=True)
        cols["pred"].append(r.pred)
        cols["rt"].append(r.rank.clamp_max(k_max))
        cols["conf"].append(r.conf)
        cols["nll"].append(r.nll)
        cols["brier"].append(r.brier)
        # the rows' log-sum-exps: a shard's columns give the same log-probabilities as whole rows
        cols["lse32"].append(lse32.squeeze(1))
        cols["lse64"].append(rowwise_f64(lambda d: d.logsumexp(1), x))
    dtypes = {"pred": torch.long, "rt": torch.long, "conf": torch.float32, "nll": torch.float64,
              "brier": torch.float64, "lse32": torch.float32, "lse64": torch.float64}
    return [torch.cat(v) if v else torch.zeros(0, dtype=dtypes[k], device=dev) for k, v in cols.items()]


def _same_rows(rows: RankRows, valid: Tensor, offsets: List[int], counts: List[int], rank: int, group, dev):
    """``same_rows`` of :func:`~video_metrics.functional.aggregation.kept_rows` across ranks: each rank fingerprints
    its own rows among the repeated ones and the rows they repeat, and one gather (two collectives,
    only when rows repeat) shares them."""
    def same(a: Tensor, b: Tensor) -> Tensor:
        involved = torch.unique(torch.cat([a, b]))
        lo_, hi_ = offsets[rank], offsets[rank] + counts[rank]
        mine = involved[(involved >= lo_) & (involved < hi_)]
        local = mine - lo_
        fp = row_fingerprints(rows_at(rows.chunks, local), rows.target[local]) if mine.numel() else \
            torch.zeros(0, dtype=torch.long, device=dev)
        (where, fps), _ = _all_gather_rows([mine, fp], group)
        table = torch.full((valid.shape[0],), -1, dtype=torch.long, device=dev)
        table[where] = fps
        return table[a] == table[b]
    return same


def evaluate(cfg, rows: RankRows, group) -> Dict[str, Tensor]:
    """``compute()`` with class shards (the summed states are already synced and checked; every
    rank calls this with its own rows). Stages: 1. row quantities of the own rows, gathered with
    the ids (``_row_quantities``); 2. the de-duplication, alike on every rank; 3. one
    ``all_to_all`` of the class shards (``_exchange``); 4. the clip level of the shard
    (``_clip_shard``); 5. the video level (``_VideoShard``); 6. the micro AP
    (``_micro_ap``); 7. the per-class vectors of every shard gathered by name
    (``_PerClass``) and the keys computed from them (``_scalars``)."""
    group = group if group is not None else dist.group.WORLD
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    mc, c = cfg.row_task == "multiclass", cfg.columns
    dev = rows.valid.device
    step = block_sizes(max(rows.valid.shape[0], 1), c)[0]
    meta = [rows.video_ids, rows.clip_ids, rows.valid]
    if mc:
        meta += [rows.target] + _row_quantities(cfg, rows, step, dev)
    gathered, counts = _all_gather_rows(meta, group)
    vid, cid, valid = gathered[:3]
    offsets = [sum(counts[:r]) for r in range(world)]
    keep, _ = kept_rows(rows.id_counts, valid, vid, cid, _same_rows(rows, valid, offsets, counts, rank, group, dev),
                        rows.registry)
    kept_counts = [int(keep[o:o + k].sum()) for o, k in zip(offsets, counts)]
    keep_own = keep[offsets[rank]:offsets[rank] + counts[rank]]
    n = int(keep.sum())
    bounds = shard_bounds(c, world)
    lo, hi = bounds[rank]
    # the scores themselves (4 bytes a value): log-probabilities follow from the rows' log-sum-exps
    payloads = [(torch.float32, lambda x, t: x)] + ([] if mc else [(torch.uint8, lambda x, t: t.to(torch.uint8))])

    def own_blocks():
        for i, x in rows.blocks(step):
            m = keep_own[i:i + x.shape[0]]
            x, t = x[m], rows.target[i:i + x.shape[0]][m]
            if x.shape[0]:
                yield x, t

    shard = _exchange(own_blocks, payloads, bounds, kept_counts, rank, group, dev)
    row_k = [g[keep] for g in gathered[3:]] if mc else None
    del gathered
    per_class = _PerClass()
    clip = _clip_shard(cfg, shard, row_k, n, lo, hi, step, per_class, dev)
    video = _VideoShard(cfg, vid[keep], shard[0], clip.t_k, clip.pos, clip.pred_k, lo, hi, dev, clip.vin) \
        if cfg.video_reduction is not None else None
    _reduce_round(cfg, clip, video, per_class, group)
    micro = _micro_ap(clip, video, n, c, group) if not mc else {}
    full = per_class.gather(bounds, hi - lo, group, dev)
    return _scalars(cfg, clip, video, full, micro, n)


class _ClipShard:
    """The clip level of the rank's class shard: its summed statistics ``S`` (so far) and what the
    video level and the later rounds need."""

    def __init__(self, S, t_k, pos, pred_k, vin, rank_t, reduce_round) -> None:
        self.S, self.t_k, self.pos, self.pred_k, self.vin = S, t_k, pos, pred_k, vin
        self.rank_t, self.reduce_round = rank_t, reduce_round


def _clip_shard(cfg, shard, row_k, n: int, lo: int, hi: int, step: int, per_class: _PerClass, dev) -> _ClipShard:
    """Stage 4: the clip level's per-class AP/AUROC of the shard (and multilabel thresholded counts
    and calibration bins, to be all-reduced); multiclass sample statistics from the gathered rows."""
    w, c, nb = hi - lo, cfg.columns, cfg.calibration_bins
    S: Dict[str, Any] = {"n": n, "missing": 0}
    x_sh = shard[0]
    if cfg.row_task == "multiclass":
        t_k, pred_k, rt_k, conf_k, nll_k, brier_k, lse32_k, lse64_k = row_k
        if cfg.input == "logits":
            rank_t = transpose_rows([x_sh], w, lambda xb: xb)  # (w, n), then x - lse per column
            rank_t.sub_(lse32_k[None, :])
            vin = lambda xb, rows: log_softmax_rows(xb.double(), lse64_k[rows, None])  # noqa: E731
        else:
            rank_t = transpose_rows([x_sh], w, lambda xb: xb.log())
            vin = lambda xb, rows: log_probabilities(xb, "multiclass", "probs")  # noqa: E731
        ones = torch.ones(n, dtype=torch.bool, device=dev)
        cm = confusion_counts(pred_k, t_k, ones, c)
        S.update(hits=torch.stack([scatter_count(t_k, rt_k < k, c) for k in cfg.top_k]), tp=cm.diagonal(),
                 pc=cm.sum(0), support=cm.sum(1), bins=bin_update(conf_k, pred_k == t_k, ones, nb),
                 nll=nll_k.sum(), brier=brier_k.sum())
        ap, auc, npos = _ap_auroc_mc(cfg, rank_t, t_k, lo)
        per_class.add(clip_ap=ap, clip_auc=auc, clip_npos=npos)
        # multiclass: the clip ranking matrix is done with (the video level reads the scores)
        return _ClipShard(S, t_k, None, pred_k, vin, None, [])
    rank_t = transpose_rows([x_sh], w)
    pos = shard[1].bool()
    counts_ml = torch.zeros(3, w, dtype=torch.long, device=dev)
    bins = torch.zeros(3, nb, dtype=torch.float64, device=dev)
    for i in range(0, n, step):
        x, p_ = x_sh[i:i + step], pos[i:i + step]
        probs = probabilities(x, "multilabel", cfg.input)
        counts_ml += multilabel_counts(probs > cfg.threshold, p_, torch.ones(x.shape[0], dtype=torch.bool, device=dev))
        bins += bin_update(probs.reshape(-1), p_.reshape(-1), torch.ones_like(p_.reshape(-1)), nb)
    ap, auc, npos = _ap_auroc_ml(cfg, rank_t, pos)
    per_class.add(clip_ap=ap, clip_auc=auc, clip_npos=npos, clip_tp=counts_ml[0], clip_fp=counts_ml[1],
                  clip_fn=counts_ml[2])
    return _ClipShard(S, None, pos, None, None, rank_t, [bins.reshape(-1), pos.sum(1).double()])


def _reduce_round(cfg, clip: _ClipShard, video, per_class: _PerClass, group) -> None:
    """One all-reduce: multilabel calibration bins and rows with a positive, the video level's
    disagreeing targets and bins; then Charades' excluded-row AP and the video level's rounds."""
    parts = list(clip.reduce_round)
    if video is not None:
        parts += video.local_reductions()
    if parts:
        sizes = [x.numel() for x in parts]
        parts = list(_all_reduce(torch.cat([x.reshape(-1).double() for x in parts]), group).split(sizes))
    if cfg.row_task != "multiclass":
        clip.S["bins"] = parts[0].view(3, cfg.calibration_bins)
        has_pos = parts[1] > 0
        if cfg.empty_videos == "exclude" and not bool(has_pos.all()):
            ap_k, _, npos_k = _ap_auroc_ml(cfg, clip.rank_t, clip.pos, torch.nonzero(has_pos).squeeze(1))
        else:
            ap_k, npos_k = per_class.values[per_class.names.index("clip_ap")], \
                per_class.values[per_class.names.index("clip_npos")]
        per_class.add(clip_ap_used=ap_k, clip_npos_used=npos_k)
        parts = parts[2:]
    if video is not None:
        video.after_reduce(parts, group)  # raises on every rank alike; multiclass rounds
        per_class.add(**video.per_class())


def _micro_ap(clip: _ClipShard, video, n: int, c: int, group) -> Dict[str, Tuple[Tensor, int]]:
    """Stage 6 (multilabel): the positive pairs' scores are gathered, the pairs below each summed."""
    levels = [("clip", clip.rank_t, clip.pos, n)] + ([("video", video.rank_t, video.pos, video.v)] if video else [])
    qs = []
    for _, rt_, p_, _ in levels:
        cls_, row_ = torch.nonzero(p_.T, as_tuple=True)
        qs.append(rt_[cls_, row_].double())
    gathered_q = _gather_lists(qs, group)
    lts = []
    for (name, rt_, _, m), q in zip(levels, gathered_q):
        q_sorted = torch.sort(q).values
        lts.append((name, q_sorted, pooled_counts([rt_.double()], q_sorted), m))
    flat = _all_reduce(torch.cat([x[2] for x in lts]).double(), group)
    micro, off = {}, 0
    for name, q_sorted, lt, m in lts:
        k = lt.numel()
        micro[name] = (pooled_ap_from_counts(q_sorted, flat[off:off + k].round().long(), m * c)[0], k)
        off += k
    return micro


def _scalars(cfg, clip: _ClipShard, video, full: Dict[str, Tensor], micro, n: int) -> Dict[str, Tensor]:
    """Stage 7: every key from the statistics of the whole class range."""
    S_clip = clip.S
    npos = full["clip_npos"].round().long()
    S_clip.update(ap=full["clip_ap"], auc=full["clip_auc"], npos=npos, nneg=n - npos)
    if cfg.row_task != "multiclass":
        S_clip.update(tp=full["clip_tp"].round().long(), fp=full["clip_fp"].round().long(),
                      fn=full["clip_fn"].round().long(), ap_used=full["clip_ap_used"],
                      npos_used=full["clip_npos_used"].round().long(), micro_ap=micro["clip"][0],
                      micro_npos=torch.tensor(micro["clip"][1], device=npos.device))
    out = {f"clip/{k}": v for k, v in level_scalars(cfg, cfg.task, keys_for(cfg.task, cfg.top_k, None), S_clip).items()}
    if video is not None:
        S_video = video.stats(full, micro.get("video"))
        vkeys = keys_for(cfg.task, cfg.top_k, cfg.video_reduction)
        out.update({f"video/{k}": v for k, v in level_scalars(cfg, cfg.task, vkeys, S_video).items()})
        add_video_counts(cfg, out, video.v, n, video.missing)
    return out


def _gather_lists(qs: List[Tensor], group) -> List[Tensor]:
    """All-gather several 1-D float64 vectors of per-rank lengths; returns each concatenated over
    ranks (rank order). Two collectives."""
    dev = qs[0].device if qs else torch.device("cpu")
    pieces, _ = all_gather_packed([[q.double()] for q in qs], group, dev)
    return [torch.cat([p.view(torch.float64) for p in per_rank]) for per_rank in pieces]


class _VideoShard:
    """The video level of one class shard."""

    def __init__(self, cfg, vid_k: Tensor, x: Tensor, t_k: Optional[Tensor], pos: Optional[Tensor],
                 pred_k: Optional[Tensor], lo: int, hi: int, dev, vin=None) -> None:
        self.cfg, self.lo, self.hi, self.dev = cfg, lo, hi, dev
        self.mc = t_k is not None
        uniq, inverse, counts = group_rows(vid_k)
        self.uniq, self.v = uniq, uniq.numel()
        w = hi - lo
        self.w = w
        red = cfg.video_reduction
        self.bad_local = 0.0
        if self.mc:
            self.target, differs = video_targets(t_k, inverse, self.v)
            self.bad_global = int(differs.sum())  # known on every rank
        else:
            # a video disagrees when any class of any shard does: counted per (video, class) here, so
            # the all-reduced count is > 0 exactly when one process would count a video
            self.pos, differs = video_targets(pos, inverse, self.v, max(pos.shape[0], 1))
            self.bad_local = float(differs.sum())
        block = block_sizes(max(vid_k.numel(), 1), max(w, 1))[0]

        def blocks():
            for i in range(0, x.shape[0], block):
                yield i, x[i:i + block]

        def log_probs_blocks():  # multiclass: the clips' log-probabilities from the rows' log-sum-exps
            for i in range(0, x.shape[0], block):
                yield i, vin(x[i:i + block], slice(i, i + block))

        self.votes = None
        if self.mc and red == "mean_logits":
            m = torch.zeros(self.v, w, dtype=torch.float64, device=dev)
            for i, xb in blocks():
                m.index_add_(0, inverse[i:i + xb.shape[0]], xb.double())
            m /= counts[:, None].double()
            self.mean = m
            self.rank = None  # after the log-sum-exp round
        elif self.mc:
            agg = "mean_probs" if red == "vote" else red
            self.rank, _ = aggregate_blocks(log_probs_blocks, inverse, counts, w, "multiclass", cfg.input, agg,
                                            log_probs=lambda xb: xb)
            if red == "vote":
                votes = torch.zeros(self.v, w, dtype=torch.float64, device=dev)
                inside = (pred_k >= lo) & (pred_k < hi)
                votes.index_put_((inverse[inside], pred_k[inside] - lo),
                                 torch.ones(int(inside.sum()), dtype=torch.float64, device=dev), accumulate=True)
                self.votes = votes
        else:
            self.rank, _ = aggregate_blocks(blocks, inverse, counts, w, "multilabel", cfg.input, red)
        exp = cfg.expected_ids(dev)
        self.missing = int(missing_video_ids(exp, uniq).numel()) if exp is not None else 0
        self.counts = counts

    # ---------------------------------------------------------------- rounds
    def local_reductions(self) -> List[Tensor]:
        if self.mc:
            return []  # the targets are known on every rank
        probs = video_probs(self.rank, "multilabel", self.cfg.input, self.cfg.video_reduction)
        self.probs = probs
        nb = self.cfg.calibration_bins
        bins = torch.zeros(3, nb, dtype=torch.float64, device=self.dev)
        if probs.numel():
            bins = bin_update(probs.reshape(-1), self.pos.reshape(-1), torch.ones_like(self.pos.reshape(-1)), nb)
        return [torch.tensor([self.bad_local], dtype=torch.float64, device=self.dev), bins.reshape(-1),
                self.pos.sum(1).double()]

    def after_reduce(self, parts: List[Tensor], group) -> None:
        cfg = self.cfg
        bad = self.bad_global if self.mc else int(parts[0].round())
        if bad:
            what = "video(s)" if self.mc else "(video, class) pair(s)"
            raise ValueError(f"{bad} {what} have clips with different targets; every clip of a video must share "
                             "its target")
        if not self.mc:
            self.bins = parts[1].view(3, cfg.calibration_bins)
            has_pos = parts[2] > 0
            self.ap, self.auc, self.npos = _ap_auroc_ml(cfg, self.rank.T.contiguous(), self.pos)
            if cfg.empty_videos == "exclude" and not bool(has_pos.all()):
                self.ap_k, _, self.npos_k = _ap_auroc_ml(cfg, self.rank.T.contiguous(), self.pos,
                                                         torch.nonzero(has_pos).squeeze(1))
            else:
                self.ap_k, self.npos_k = self.ap, self.npos
            self.rank_t = self.rank.T.contiguous()
            self.counts_ml = multilabel_counts(self.probs > cfg.threshold, self.pos,
                                               torch.ones(self.v, dtype=torch.bool, device=self.dev))
            return
        self._combine_rows(group)

    def _combine_rows(self, group) -> None:
        """Multiclass: argmax, the target's rank, confidence, NLL and Brier of every video, from
        the shards (two rounds; three for ``mean_logits``)."""
        cfg, dev, v, w, lo = self.cfg, self.dev, self.v, self.w, self.lo
        red = cfg.video_reduction
        if red == "mean_logits":
            m = self.mean
            mx = m.max(1).values if w else torch.full((v,), -math.inf, dtype=torch.float64, device=dev)
            se = (m - mx[:, None]).exp().sum(1) if w else torch.zeros(v, dtype=torch.float64, device=dev)
            both = _all_gather_same(torch.stack([mx, se]), group)  # (world, 2, v)
            mxs, ses = both[:, 0], both[:, 1]
            big = mxs.max(0).values
            scale = torch.where(torch.isfinite(mxs), (mxs - big[None, :]).exp(), torch.zeros_like(mxs))
            lse = big + (ses * scale).sum(0).log()
            self.rank = m - lse[:, None]
        rank = self.rank
        keys = keys_for(cfg.task, cfg.top_k, red)
        key = video_key(rank, self.votes, "multiclass", cfg.input, red)
        probs = video_probs(rank, "multiclass", cfg.input, red)
        t = self.target
        inside = (t >= lo) & (t < lo + w)
        tl = (t - lo).clamp(0, max(w - 1, 0))
        neg = torch.full((v,), -math.inf, dtype=torch.float64, device=dev)
        zero = torch.zeros(v, dtype=torch.float64, device=dev)
        if w:
            kmax, kidx = key.max(1)
            key_t = torch.where(inside, key.gather(1, tl[:, None]).squeeze(1), neg)
            rank_t = torch.where(inside, rank.gather(1, tl[:, None]).squeeze(1), zero)
            p_t = torch.where(inside, probs.gather(1, tl[:, None]).squeeze(1), zero)
            p2 = probs.square().sum(1)
        else:
            kmax, kidx, key_t, rank_t, p_t, p2 = neg, torch.zeros(v, dtype=torch.long, device=dev), neg, zero, zero, zero
        allr = _all_gather_same(torch.stack([kmax, (kidx + lo).double(), key_t, rank_t, p_t, p2]), group)  # (world, 6, v)
        kmaxs, kidxs = allr[:, 0], allr[:, 1]
        best = kmaxs.max(0).values
        cand = torch.where(kmaxs == best[None, :], kidxs, torch.full_like(kidxs, float("inf")))
        pred = cand.min(0).values.long()
        key_t_all = allr[:, 2].max(0).values
        self.rank_t_v = allr[:, 3].sum(0)
        p_t_all = allr[:, 4].sum(0)
        p2_all = allr[:, 5].sum(0)
        # round: the classes above the target (ties: lower index first) and the predicted class's probability
        if w:
            idx = torch.arange(lo, lo + w, device=dev)
            above = (key > key_t_all[:, None]).sum(1) + ((key == key_t_all[:, None]) & (idx[None, :] < t[:, None])).sum(1)
            own = (pred >= lo) & (pred < lo + w)
            conf = torch.where(own, probs.gather(1, (pred - lo).clamp(0, w - 1)[:, None]).squeeze(1), zero)
        else:
            above, conf = torch.zeros(v, dtype=torch.long, device=dev), zero
        red2 = _all_reduce(torch.stack([above.double(), conf]), group)
        self.rt = red2[0].round().long()
        self.conf = red2[1]
        self.pred = pred
        self.brier = p2_all - 2 * p_t_all + 1
        self.keys = keys
        if "auroc_macro" in keys:
            self.ap, self.auc, self.npos = _ap_auroc_mc(cfg, rank.T.contiguous(), t, lo)

    def per_class(self) -> Dict[str, Tensor]:
        w, dev = self.w, self.dev
        if self.mc:
            if hasattr(self, "ap"):
                return {"video_ap": self.ap, "video_auc": self.auc, "video_npos": self.npos}
            nan = torch.full((w,), float("nan"), dtype=torch.float64, device=dev)
            return {"video_ap": nan, "video_auc": nan, "video_npos": torch.zeros(w, dtype=torch.float64, device=dev)}
        tp, fp, fn = self.counts_ml
        return {"video_ap": self.ap, "video_auc": self.auc, "video_npos": self.npos, "video_tp": tp, "video_fp": fp,
                "video_fn": fn, "video_ap_used": self.ap_k, "video_npos_used": self.npos_k}

    def stats(self, full: Dict[str, Tensor], micro) -> Dict[str, Any]:
        cfg, v = self.cfg, self.v
        S: Dict[str, Any] = {"n": v, "missing": self.missing if cfg.missing == "count_as_wrong" else 0}
        npos = full["video_npos"].round().long()
        S.update(ap=full["video_ap"], auc=full["video_auc"], npos=npos, nneg=v - npos)
        if self.mc:
            ones = torch.ones(v, dtype=torch.bool, device=self.dev)
            c = cfg.columns
            cm = confusion_counts(self.pred, self.target, ones, c)
            S.update(hits=torch.stack([scatter_count(self.target, self.rt < k, c) for k in cfg.top_k]),
                     tp=cm.diagonal(), pc=cm.sum(0), support=cm.sum(1),
                     bins=bin_update(self.conf, self.pred == self.target, ones, cfg.calibration_bins),
                     nll=-self.rank_t_v.sum(), brier=self.brier.sum())
        else:
            S.update(tp=full["video_tp"].round().long(), fp=full["video_fp"].round().long(),
                     fn=full["video_fn"].round().long(), ap_used=full["video_ap_used"],
                     npos_used=full["video_npos_used"].round().long(), bins=self.bins, micro_ap=micro[0],
                     micro_npos=torch.tensor(micro[1], device=self.dev))
        return S
