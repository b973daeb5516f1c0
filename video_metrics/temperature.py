"""Temperature scaling of the suite's gathered rows (Guo et al. 2017): fix calibration, not only
measure it.

:func:`fit` finds the ``T > 0`` that minimises the NLL at the clip level (``softmax(x / T)`` of
the clip logits) or at the video level, where ``T`` scales the clip logits **before** the
reduction: for ``mean_logits`` the video logits are the mean clip logits, so the exact 1-D
Newton fit of :func:`~video_metrics.functional.fit_temperature` applies to them; for
``mean_probs`` the NLL of the mean clip probabilities is minimised over ``log T`` with SciPy's
bounded Brent search (``scipy.optimize.minimize_scalar``). ``max``/``vote`` and ``input="probs"``
have no logits to scale and are refused.

ECE after fitting on the same data is optimistic, so :class:`TemperatureFit` also reports
``ece_cross_fitted``: the videos are split in two halves by a hash of their id (the same on any
number of processes, whatever the row order), ``T`` is fitted on one half and the ECE measured on
the other, both ways, and the two halves' calibration bins are pooled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from .bootstrap import mix64
from .functional.aggregation import RowStore, aggregate_blocks, group_rows, video_targets
from .functional.calibration import ReliabilityData, bin_update, binned_calibration_error, fit_temperature, binned_reliability, uniform_edges
from .levels import block_sizes, clean_json

__all__ = ["TemperatureFit", "fit"]

BOUNDS = (1e-2, 1e2)


@dataclass
class TemperatureFit:
    """A fitted temperature at ``level``: ``temperature`` (the NLL minimiser), the NLL and ECE before
    and after scaling, the ECE of a two-fold cross-fit (``ece_cross_fitted``: T fitted on one half of
    the videos, scored on the other; ``temperatures_halves``), ``num_samples`` and both reliability
    diagrams. ``VideoClassificationMetrics.fit_temperature`` returns it.
    """
    level: str
    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    #: T fitted on one half of the videos, ECE measured on the other (both ways, bins pooled)
    ece_cross_fitted: float
    temperatures_halves: Tuple[float, float]
    num_samples: int
    #: the reliability data before and after scaling (in-sample), for the before/after figure
    reliability_before: Optional[ReliabilityData] = field(default=None, repr=False)
    reliability_after: Optional[ReliabilityData] = field(default=None, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """The fit as JSON-ready values."""
        keys = ("level", "temperature", "nll_before", "nll_after", "ece_before", "ece_after", "ece_cross_fitted",
                "temperatures_halves", "num_samples")
        return clean_json({k: (list(v) if isinstance(v, tuple) else v) for k, v in ((k, getattr(self, k)) for k in keys)})


class _Data:
    """The logits of one level for a subset of the kept rows, and how to score a temperature."""

    def __init__(self, cfg, x: Tensor, t: Tensor, vid: Tensor, level: str, mask: Optional[Tensor]) -> None:
        self.cfg, self.level = cfg, level
        self.task = cfg.row_task  # "multiclass" or "multilabel" (binary: one column)
        if mask is not None:
            x, t, vid = x[mask], t[mask], vid[mask]
        self.x = x.double()
        self.t = t
        if level == "clip" or cfg.video_reduction == "mean_logits":
            if level == "video":
                uniq, inverse, counts = group_rows(vid)
                m = torch.zeros(uniq.numel(), x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, inverse, self.x)
                self.x = m / counts[:, None].double()
                self.t = self._video_targets(t, inverse, uniq.numel())
            self.mode = "logits"
        else:  # video level, mean_probs: the reduction runs on the scaled clip logits
            self.uniq, self.inverse, self.counts = group_rows(vid)
            self.t = self._video_targets(t, self.inverse, self.uniq.numel())
            self.mode = "mean_probs"
        self.n = int(self.t.shape[0])

    def _video_targets(self, t: Tensor, inverse: Tensor, v: int) -> Tensor:
        return video_targets(t, inverse, v)[0]  # the clips of a video agree (checked by the evaluation)

    def log_probs(self, temp: float) -> Tuple[Tensor, Optional[Tensor]]:
        """``(log p, log (1 - p))`` at the level (the second for multilabel only)."""
        if self.mode == "logits":
            z = self.x / temp
            if self.task == "multiclass":
                return z - z.logsumexp(1, keepdim=True), None
            return torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(-z)
        z = self.x / temp
        step = block_sizes(max(z.shape[0], 1), z.shape[1])[0]

        def blocks(sign: float = 1.0):
            def gen():
                for i in range(0, z.shape[0], step):
                    yield i, sign * z[i:i + step]
            return gen

        lp, _ = aggregate_blocks(blocks(), self.inverse, self.counts, z.shape[1], self.task, "logits", "mean_probs")
        if self.task == "multiclass":
            return lp, None
        lq, _ = aggregate_blocks(blocks(-1.0), self.inverse, self.counts, z.shape[1], self.task, "logits", "mean_probs")
        return lp, lq

    def nll(self, temp: float) -> float:
        lp, lq = self.log_probs(temp)
        if self.task == "multiclass":
            return float(-lp.gather(1, self.t[:, None]).mean())
        y = self.t.bool()
        return float(-torch.where(y, lp, lq).mean())

    def bins(self, temp: float) -> Tensor:
        lp, _ = self.log_probs(temp)
        p = lp.exp()
        nb = self.cfg.calibration_bins
        if self.task == "multiclass":
            conf, pred = p.max(1)
            return bin_update(conf, pred == self.t, torch.ones_like(pred, dtype=torch.bool), nb)
        y = self.t.bool()
        return bin_update(p.reshape(-1), y.reshape(-1), torch.ones_like(y.reshape(-1)), nb)

    def fit(self) -> float:
        if self.n == 0:
            return float("nan")
        if self.mode == "logits":
            task = "multiclass" if self.task == "multiclass" else "multilabel"
            return fit_temperature(self.x, self.t.long() if task == "multilabel" else self.t, task, bounds=BOUNDS)
        from scipy.optimize import minimize_scalar

        res = minimize_scalar(lambda u: self.nll(math.exp(u)), bounds=(math.log(BOUNDS[0]), math.log(BOUNDS[1])),
                              method="bounded", options={"xatol": 1e-7})
        return float(math.exp(res.x))


def check_level(cfg, level: str) -> None:
    """Whether a temperature can be fitted at ``level`` (exact mode, logits, a mean video reduction)."""
    if level not in ("clip", "video"):
        raise ValueError(f"`level` must be 'clip' or 'video', got {level!r}")
    if cfg.bins is not None:
        raise ValueError("fit_temperature needs every clip's logits: use exact mode (bins=None)")
    if cfg.input != "logits":
        raise ValueError("fit_temperature scales logits: the suite has input='probs' (no logits to scale)")
    if level == "video":
        if cfg.video_reduction is None:
            raise ValueError("fit_temperature(level='video') needs video_reduction; use level='clip'")
        if cfg.video_reduction not in ("mean_logits", "mean_probs"):
            raise ValueError(f"fit_temperature(level='video') applies T to the clip logits before the reduction: "
                             f"defined for 'mean_logits' and 'mean_probs', not {cfg.video_reduction!r}")


def fit(cfg, rows: RowStore, t: Tensor, vid: Tensor, level: str = "video") -> TemperatureFit:
    """Fit ``T`` on the suite's kept rows (see the module doc)."""
    check_level(cfg, level)
    x = torch.cat([b for _, b in rows.blocks()]) if rows.n else torch.zeros(0, rows.c, device=t.device)  # once
    data = _Data(cfg, x, t, vid, level, None)
    temp = data.fit()
    before_bins, after_bins = data.bins(1.0), data.bins(temp)
    # the two halves of the videos, by a hash of the video id (clips of a video stay together)
    half = (mix64(vid.long()) & 1) == 0
    cross = torch.zeros(3, cfg.calibration_bins, dtype=torch.float64, device=t.device)
    temps = []
    for fit_on in (half, ~half):
        a = _Data(cfg, x, t, vid, level, fit_on)
        b = _Data(cfg, x, t, vid, level, ~fit_on)
        ta = a.fit()
        temps.append(ta)
        if b.n and a.n:
            cross += b.bins(ta)
    edges = uniform_edges(cfg.calibration_bins, before_bins.device)
    return TemperatureFit(level, float(temp), data.nll(1.0), data.nll(temp), float(binned_calibration_error(before_bins)),
                          float(binned_calibration_error(after_bins)),
                          float(binned_calibration_error(cross)) if cross[0].sum() > 0 else float("nan"),
                          (temps[0], temps[1]), data.n, binned_reliability(before_bins, edges), binned_reliability(after_bins, edges))
