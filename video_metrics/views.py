"""Multi-view diagnostics from the suite's gathered rows (multiclass): why the training log's
1-view accuracy differs from the paper's 30-view table, which reduction to use, and whether some
test views are identical.

* ``curve``: for ``k = 1 .. max views per video``, the video top-1 when only ``k`` views of each
  video are used (all of them for a video with fewer): the mean over ``draws`` random ``k``-subsets
  (a view's place in a draw is a hash of ``(seed, draw, video id, clip id)``: the same on any
  number of processes and in any row order; the subsets of one draw are nested), and the first
  ``k`` views by clip id;
* ``by_reduction``: the video-level keys under every reduction valid for the suite's input
  (``mean_logits``, ``mean_probs``, ``max``, ``vote``), side by side;
* ``duplicate_views``: the videos with two or more views whose scores are identical (a warning
  says so: the "identical views" problem of some test pipelines).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from .bootstrap import mix64
from .functional.aggregation import aggregate_rows, group_rows, log_probabilities
from .functional.classification import argmax_lowest
from .levels import Level, clean_json

__all__ = ["ViewsReport", "views_report", "subset_rank"]


@dataclass
class ViewsReport:
    """Multi-view diagnostics: video top-1 with the first ``k`` views (``top1_first``) and with ``k``
    random views averaged over ``draws`` (``top1_random``) for ``k`` in ``views``; the video keys under
    every reduction (``by_reduction``); and the number of videos with identical views
    (``duplicate_views``).
    """
    views: List[int]  # k = 1 .. max views per video
    top1_random: List[float]  # mean over the random k-subsets
    top1_first: List[float]  # the first k views by clip id
    draws: int
    by_reduction: Dict[str, Dict[str, float]] = field(default_factory=dict)
    duplicate_views: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """The diagnostics as JSON-ready values."""
        return clean_json({"views": self.views, "top1_random": self.top1_random, "top1_first": self.top1_first,
                       "draws": self.draws, "by_reduction": self.by_reduction, "duplicate_views": self.duplicate_views})


def subset_rank(vid: Tensor, key: Tensor, inverse: Tensor, num_videos: int) -> Tensor:
    """Each row's place among its video's rows when ordered by ``key`` (0 = first)."""
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(inverse[order], stable=True)]  # by video, then by key
    counts = torch.zeros(num_videos, dtype=torch.long, device=vid.device).index_add_(
        0, inverse, torch.ones_like(inverse))
    start = torch.cumsum(counts, 0) - counts
    pos = torch.empty_like(order)
    pos[order] = torch.arange(order.numel(), device=vid.device) - start[inverse[order]]
    return pos


def draw_key(vid: Tensor, cid: Tensor, seed: int, draw: int) -> Tensor:
    """The random order of the views of a draw (a hash: row order and world size do not matter)."""
    base = mix64(mix64(torch.tensor(int(seed), dtype=torch.long)) + draw).to(vid.device)
    return mix64(base ^ mix64(mix64(vid.long()) + cid.long()))


def _curve(cfg, x_blocks, t_video: Tensor, inverse: Tensor, pos: Tensor, v: int, k_max: int) -> List[float]:
    """Video top-1 for k = 1 .. k_max views (rows with ``pos < k``), rows added once each."""
    c = cfg.columns
    red = cfg.video_reduction
    dev = t_video.device
    acc = torch.zeros(v, c, dtype=torch.float64, device=dev)
    if red == "max":
        acc.fill_(-float("inf"))
    votes = torch.zeros(v, c, dtype=torch.float64, device=dev) if red == "vote" else None
    n_used = torch.zeros(v, dtype=torch.float64, device=dev)
    out = []
    for k in range(k_max):
        for start, x in x_blocks():
            sel = pos[start:start + x.shape[0]] == k
            if not bool(sel.any()):
                continue
            xs, inv = x[sel], inverse[start:start + x.shape[0]][sel]
            n_used.index_add_(0, inv, torch.ones(inv.numel(), dtype=torch.float64, device=dev))
            if red == "mean_logits":
                acc.index_add_(0, inv, xs.double())
            elif red == "max":  # the clip log-probabilities of the aggregation itself
                lp = log_probabilities(xs, "multiclass", cfg.input)
                acc.scatter_reduce_(0, inv[:, None].expand_as(lp), lp, "amax")
            else:  # mean_probs, vote: the sum of the clip probabilities (float64, as the aggregation)
                acc.index_add_(0, inv, log_probabilities(xs, "multiclass", cfg.input).exp())
                if votes is not None:
                    votes.index_put_((inv, argmax_lowest(xs)), torch.ones(inv.numel(), dtype=torch.float64, device=dev),
                                     accumulate=True)
        key = acc if votes is None else votes + acc / n_used.clamp_min(1)[:, None] / 2
        out.append(float((argmax_lowest(key) == t_video).double().mean()))
    return out


def _duplicates(x_blocks, inverse: Tensor, n: int, c: int, dev) -> int:
    """Videos with two or more views of identical scores (row hash, then exact comparison of the
    few candidate rows, read back in a second pass: no copy of every row)."""
    g = torch.Generator().manual_seed(12345)
    r = torch.randn(c, generator=g, dtype=torch.float64).to(dev)
    h = torch.empty(n, dtype=torch.float64, device=dev)
    for start, x in x_blocks():
        h[start:start + x.shape[0]] = x.double() @ r
    order = torch.argsort(h, stable=True)
    order = order[torch.argsort(inverse[order], stable=True)]
    same_video = inverse[order][1:] == inverse[order][:-1]
    same_hash = h[order][1:] == h[order][:-1]
    cand = torch.nonzero(same_video & same_hash).squeeze(1)
    if cand.numel() == 0:
        return 0
    a, b = order[cand], order[cand + 1]
    need = torch.unique(torch.cat([a, b]))  # sorted
    rows = None
    for start, x in x_blocks():
        lo, hi = (int(i) for i in torch.searchsorted(need, torch.tensor([start, start + x.shape[0]], device=dev)))
        if hi > lo:
            if rows is None:
                rows = torch.empty(need.numel(), c, dtype=x.dtype, device=dev)
            rows[lo:hi] = x[need[lo:hi] - start]
    equal = (rows[torch.searchsorted(need, a)] == rows[torch.searchsorted(need, b)]).all(1)
    return int(torch.unique(inverse[a[equal]]).numel())


def views_report(cfg, ctx, draws: int = 5, seed: int = 0) -> Optional[ViewsReport]:
    """The multi-view diagnostics of the suite's kept rows (multiclass with video ids)."""
    if cfg.row_task != "multiclass" or cfg.video_reduction is None or ctx.clip_ids is None:
        return None
    rows, vid, cid = ctx.rows, ctx.vid, ctx.clip_ids
    uniq, inverse, counts = group_rows(vid)
    v = uniq.numel()
    if v == 0:
        return None
    k_max = int(counts.max())
    t_video = torch.zeros(v, dtype=torch.long, device=vid.device).scatter_(0, inverse, ctx.t)

    first = _curve(cfg, rows.blocks, t_video, inverse, subset_rank(vid, cid.long(), inverse, v), v, k_max)
    rand = [0.0] * k_max
    for d in range(draws):
        pos = subset_rank(vid, draw_key(vid, cid, seed, d), inverse, v)
        for i, val in enumerate(_curve(cfg, rows.blocks, t_video, inverse, pos, v, k_max)):
            rand[i] += val / draws
    by_red: Dict[str, Dict[str, float]] = {}
    for red in ("mean_logits", "mean_probs", "max", "vote"):
        if red == "mean_logits" and cfg.input != "logits":
            continue
        agg = aggregate_rows(rows, ctx.t, vid, 0, "multiclass", cfg.input, red, full=False)
        level = Level.of_videos(cfg, red, agg, detail=False)
        by_red[red] = {k: float(val) for k, val in level.scalars().items()}
    dup = _duplicates(rows.blocks, inverse, rows.n, cfg.columns, vid.device)
    if dup:
        warnings.warn(f"{dup} video(s) have two or more views with identical scores: the test pipeline may repeat "
                      "views (e.g. identical crops or clips); the multi-view numbers then overstate the views used",
                      UserWarning, stacklevel=3)
    return ViewsReport(list(range(1, k_max + 1)), rand, first, draws, by_red, dup)
