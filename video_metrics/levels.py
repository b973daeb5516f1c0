"""Metrics of one evaluation level (clip or video) from the suite's gathered rows.

:class:`Level` computes every scalar key of :func:`keys_for` (and, for reports, per-class
vectors, reliability data, PR curves, confusions) from a level's probabilities, ranking scores
and prediction keys: the clip rows, or the videos aggregated from them. :class:`HistLevel` does
the same from the summed states of histogram mode. The suite
(:class:`~video_metrics.suite.VideoClassificationMetrics`) owns the states and the sync; this
module owns the definitions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .functional.calibration import ReliabilityData, bin_update, calibration_error, reliability, uniform_edges
from .functional.classification import (
    confusion_counts,
    multilabel_counts,
    precision_recall_f1,
    probabilities,
    safe_div,
    scatter_count,
    target_rank,
    threshold_counts,
)
from .functional.histogram import hist_ap_auroc, hist_pr_curves, hist_view
from .functional.ranking import (
    PRCurveData,
    average_precision,
    exact_ap_auroc,
    pr_curves,
    ranking_curves,
    reduce_classes,
    reduce_pooled,
)
from .metrics.classification import top_confusions

__all__ = ["keys_for", "LevelReport", "Level", "HistLevel"]

_CALIBRATION_KEYS = {"ece", "mce", "nll", "brier"}
_LABEL_KEYS_MC = ("balanced_acc", "precision_macro", "recall_macro", "f1_macro", "f1_micro", "f1_weighted")


def keys_for(task: str, top_k: Sequence[int], reduction: Optional[str]) -> List[str]:
    """Scalar keys (without prefix) reported at one level; ``reduction=None`` means clip level."""
    if task == "multiclass":
        keys = [f"top{k}" for k in top_k] + ["balanced_acc"] + [f"mean_class_top{k}" for k in top_k]
        keys += ["precision_macro", "recall_macro", "f1_macro", "f1_micro", "f1_weighted", "auroc_macro", "auprc_macro",
                 "ece", "mce", "nll", "brier"]
        if reduction == "vote":
            keys = [k for k in keys if k.startswith("top") or k.startswith("mean_class_top") or k in _LABEL_KEYS_MC]
        elif reduction == "max":
            keys = [k for k in keys if k not in _CALIBRATION_KEYS]
    elif task == "binary":
        keys = ["acc", "balanced_acc", "precision", "recall", "f1", "ap", "auroc", "ece", "mce", "nll", "brier"]
        if reduction == "max":
            keys = [k for k in keys if k not in _CALIBRATION_KEYS]
    else:
        keys = ["mAP", "mAP_micro", "mAP_weighted", "precision_macro", "recall_macro", "f1_macro", "f1_micro",
                "auroc_macro", "ece"]
        if reduction == "max":
            keys = [k for k in keys if k not in _CALIBRATION_KEYS]
    return keys


@dataclass
class LevelReport:
    """Everything about one level (``"clip"`` or ``"video"``) for plots, callbacks and the CLI."""

    level: str
    scalars: Dict[str, float]
    support: List[int]
    precision: List[float]
    recall: List[float]
    f1: List[float]
    ap: List[float]
    reliability: Optional[ReliabilityData]
    confusion: Optional[Tensor] = None
    top_confusions: List[Tuple[int, int, int]] = field(default_factory=list)
    pr_curves: Optional[PRCurveData] = None
    #: multilabel: the micro curve over all (sample, label) pairs as ``(precision, recall, ap)``
    pr_micro: Optional[Tuple[Tensor, Tensor, float]] = None
    #: multilabel: ``(C, T, 4)`` int64 counts ``tp, fp, tn, fn`` at ``T`` evenly spaced probability
    #: thresholds ``t/(T-1)`` (predict positive when ``p >= t/(T-1)``), the layout of TensorBoard's PR plugin
    pr_counts: Optional[Tensor] = None

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "level": self.level, "scalars": _clean(self.scalars), "support": self.support,
            "precision": _clean(self.precision), "recall": _clean(self.recall), "f1": _clean(self.f1), "ap": _clean(self.ap),
            "top_confusions": [list(x) for x in self.top_confusions],
        }
        if self.reliability is not None:
            r = self.reliability
            d["reliability"] = {"confidence": _clean(r.confidence.tolist()), "accuracy": _clean(r.accuracy.tolist()),
                                "count": r.count.tolist(), "edges": r.edges.tolist(), "ece": _clean(r.ece.item()),
                                "mce": _clean(r.mce.item())}
        return d


def _clean(x):
    """NaN/inf -> None so that the dict is strict JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _prf_scalars(tp: Tensor, pc: Tensor, support: Tensor, averages: Sequence[str],
                 labels: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """``precision_macro``, ``recall_macro``, ``f1_macro`` and ``f1_<avg>`` for the other averages."""
    out: Dict[str, Tensor] = {}
    for avg in averages:
        prf = precision_recall_f1(tp, pc, support, avg, labels)
        if avg == "macro":
            out["precision_macro"], out["recall_macro"], out["f1_macro"] = prf["precision"], prf["recall"], prf["f1"]
        else:
            out[f"f1_{avg}"] = prf["f1"]
    return out


def _mean_present(values: Tensor, present: Tensor) -> Tensor:
    n = present.sum()
    if int(n) == 0:
        return torch.tensor(float("nan"), dtype=torch.float64, device=values.device)
    return torch.where(present, values, torch.zeros_like(values)).sum() / n


def _binary_scalars(su, tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor, missing: int, ap: Tensor, auc: Tensor,
                    npos: Tensor, nneg: Tensor) -> Dict[str, Tensor]:
    """Binary keys from the counts at ``p > threshold`` and the positive class's AP / AUROC."""
    n = tp + fp + fn + tn
    out: Dict[str, Tensor] = {"acc": (tp + tn).double() / (n + missing).double()}
    recalls = torch.stack([safe_div(tp, tp + fn), safe_div(tn, tn + fp)])
    out["balanced_acc"] = _mean_present(recalls, torch.stack([tp + fn > 0, tn + fp > 0]))
    prf = precision_recall_f1(tp[None], (tp + fp)[None], (tp + fn)[None], "macro")
    out["precision"], out["recall"], out["f1"] = prf["precision"], prf["recall"], prf["f1"]
    out["ap"] = reduce_pooled(ap, bool(npos > 0), su.ap_empty_class)
    out["auroc"] = reduce_pooled(auc, bool((npos > 0) & (nneg > 0)), su.auroc_empty_class)
    return out


class Level:
    """Metrics of one level from its probabilities, ranking scores and prediction key."""

    def __init__(self, suite, level: str, reduction: Optional[str], missing: int = 0) -> None:
        self.suite, self.level, self.reduction, self.missing = suite, level, reduction, missing
        self.task, self.c = suite.task, suite._c
        self.logit: Optional[Tensor] = None  # binary: the logit of P(y=1) when the level has one

    def from_clips(self, s: Tensor, t: Tensor) -> None:
        su = self.suite
        if self.task == "multiclass":
            logp = s.log_softmax(1) if su.input == "logits" else s.log()
            self.probs, self.rank, self.key = probabilities(s, self.task, su.input), logp, s
        else:
            self.probs = s.sigmoid() if su.input == "logits" else s
            self.rank, self.key = s, s
            if su.input == "logits":
                self.logit = s
        self.target = t

    def from_videos(self, agg) -> None:
        self.probs, self.rank, self.key, self.target = agg.scores, agg.rank, agg.key, agg.target
        if self.task == "binary" and self.suite.input == "logits" and self.reduction == "mean_logits":
            self.logit = agg.rank

    def scalars(self) -> Dict[str, Tensor]:
        if not hasattr(self, "_scalars"):
            self._scalars = self._compute()
        return self._scalars

    def _compute(self) -> Dict[str, Tensor]:
        if self.task == "multiclass":
            out = self._multiclass()
        elif self.task == "binary":
            out = self._binary()
        else:
            out = self._multilabel()
        return {k: out[k].double() for k in keys_for(self.task, self.suite.top_k, self.reduction)}

    def _multiclass(self) -> Dict[str, Tensor]:
        su, c = self.suite, self.c
        keys = keys_for(self.task, su.top_k, self.reduction)
        out: Dict[str, Tensor] = {}
        dev = self.key.device
        n = self.key.shape[0]
        ones = torch.ones(n, dtype=torch.bool, device=dev)
        t = self.target
        pos = torch.zeros(n, c, dtype=torch.bool, device=dev)
        pos[torch.arange(n, device=dev), t] = True
        rank_t = target_rank(self.key, t)
        support = scatter_count(t, ones, c)
        pred = self.key.argmax(1)
        cm = confusion_counts(pred, t, ones, c)
        tp, pc = cm.diagonal(), cm.sum(0)
        # mean class accuracy: over the classes with a target, or (mmaction2) also those predicted
        present = support > 0
        present_top1 = present | (pc > 0) if su.predicted_absent == "zero" else present
        for k in su.top_k:
            hit = rank_t < k
            out[f"top{k}"] = hit.sum().double() / (n + self.missing)
            per = safe_div(scatter_count(t, hit, c), support)
            out[f"mean_class_top{k}"] = _mean_present(per, present_top1 if k == 1 else present)
        self.cm, self.tp, self.pc, self.support = cm, tp, pc, support
        out["balanced_acc"] = _mean_present(safe_div(tp, support), present_top1)
        out.update(_prf_scalars(tp, pc, support, ("macro", "micro", "weighted"), (support > 0) | (pc > 0)))
        self.pos = pos
        if "auroc_macro" in keys:
            ap, auc, npos = exact_ap_auroc(self.rank, target=t)
            self.ap = ap
            out["auroc_macro"] = reduce_classes(auc, (npos > 0) & (npos < n), "macro", su.auroc_empty_class)
            out["auprc_macro"] = reduce_classes(self._ap(ap, pos), npos > 0, "macro", su.ap_empty_class)
        if "ece" in keys:
            conf = self.probs.gather(1, pred[:, None]).squeeze(1)
            self.bins = bin_update(conf, pred == t, ones, su.calibration_bins)
            out["ece"] = calibration_error(self.bins, "l1")
            out["mce"] = calibration_error(self.bins, "max")
            out["nll"] = -self.rank.gather(1, t[:, None]).double().mean()
            out["brier"] = ((self.probs.double() - pos.double()) ** 2).sum(1).mean()
        return out

    def _multilabel(self) -> Dict[str, Tensor]:
        su = self.suite
        keys = keys_for(self.task, su.top_k, self.reduction)
        out: Dict[str, Tensor] = {}
        n = self.key.shape[0]
        pos = self.target.bool()
        self.pos = pos
        ap, auc, npos = exact_ap_auroc(self.rank, pos)
        ap = self._ap(ap, pos)
        self.ap = ap
        if su.empty_videos == "exclude":
            # the official Charades script: videos without any positive label leave the ranking
            keep = pos.any(1)
            if not bool(keep.all()):
                rank_k, pos_k = self.rank[keep], pos[keep]
                ap_k, _, npos_k = exact_ap_auroc(rank_k, pos_k)
                ap_k, npos_used = self._ap(ap_k, pos_k, rank_k), npos_k
            else:
                ap_k, npos_used = ap, npos
        else:
            ap_k, npos_used = ap, npos
        out["mAP"] = reduce_classes(ap_k, npos_used > 0, "macro", su.ap_empty_class)
        out["mAP_weighted"] = reduce_classes(ap_k, npos_used > 0, "weighted", su.ap_empty_class, npos_used)
        flat_ap, _, flat_pos = exact_ap_auroc(self.rank.reshape(-1, 1), pos.reshape(-1, 1))
        out["mAP_micro"] = reduce_pooled(flat_ap[0], bool(flat_pos[0] > 0), su.ap_empty_class)
        out["auroc_macro"] = reduce_classes(auc, (npos > 0) & (npos < n), "macro", su.auroc_empty_class)
        pred = self.probs > su.threshold
        ones = torch.ones(n, dtype=torch.bool, device=pos.device)
        tp, fp, fn = multilabel_counts(pred, pos, ones)
        self.tp, self.pc, self.support = tp, tp + fp, tp + fn
        out.update(_prf_scalars(tp, tp + fp, tp + fn, ("macro", "micro")))
        if "ece" in keys:
            self.bins = bin_update(self.probs.reshape(-1), pos.reshape(-1), torch.ones_like(pos.reshape(-1)),
                                   su.calibration_bins)
            out["ece"] = calibration_error(self.bins, "l1")
        return out

    def _binary(self) -> Dict[str, Tensor]:
        su = self.suite
        keys = keys_for(self.task, su.top_k, self.reduction)
        pos = self.target.bool()  # (n, 1)
        self.pos = pos
        y = pos[:, 0]
        p = self.probs[:, 0]
        n = y.numel()
        pred = p > su.threshold
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        tn = n - tp - fp - fn
        ap, auc, npos = exact_ap_auroc(self.rank, pos)
        self.ap = ap
        self.tp, self.pc, self.support = tp[None], (tp + fp)[None], (tp + fn)[None]
        self.cm = torch.stack([torch.stack([tn, fp]), torch.stack([fn, tp])])
        out = _binary_scalars(su, tp, fp, fn, tn, self.missing, ap[0], auc[0], npos[0], n - npos[0])
        if "ece" in keys:
            self.bins = bin_update(p, y, torch.ones_like(y), su.calibration_bins)
            out["ece"] = calibration_error(self.bins, "l1")
            out["mce"] = calibration_error(self.bins, "max")
            yd = y.double()
            if self.logit is not None:
                x = self.logit[:, 0].double()
                nll = torch.nn.functional.softplus(torch.where(y, -x, x))
            else:
                pd = p.double()
                nll = -(yd * pd.clamp_min(1e-300).log() + (1 - yd) * torch.log1p(-pd))
            out["nll"] = nll.mean()
            out["brier"] = ((p.double() - yd) ** 2).mean()
        return out

    def _ap(self, step_ap: Tensor, pos: Tensor, rank: Optional[Tensor] = None) -> Tensor:
        if self.suite.ap_mode == "step":
            return step_ap
        return average_precision(ranking_curves(self.rank if rank is None else rank, pos), self.suite.ap_mode)

    def report(self, max_points: int = 200) -> LevelReport:
        scalars = {k: float(v) for k, v in self.scalars().items()}
        su = self.suite
        avg = precision_recall_f1(self.tp, self.pc, self.support, "none")
        ap = getattr(self, "ap", None)
        if ap is None:
            ap = self._ap(exact_ap_auroc(self.rank, self.pos)[0], self.pos)
        rel = reliability(self.bins, uniform_edges(su.calibration_bins, self.bins.device)) if hasattr(self, "bins") else None
        curves = pr_curves(ranking_curves(self.rank.float(), self.pos))
        curves = _downsample(curves, max_points)
        rep = LevelReport(self.level, scalars, self.support.tolist(), avg["precision"].tolist(), avg["recall"].tolist(),
                          avg["f1"].tolist(), ap.tolist(), rel, pr_curves=curves)
        if self.task != "multilabel":
            rep.confusion = self.cm
            rep.top_confusions = top_confusions(self.cm, 20) if self.task == "multiclass" else []
        if self.task != "multiclass":
            if self.task == "multilabel":
                micro = _downsample(pr_curves(ranking_curves(self.rank.float().reshape(-1, 1),
                                                             self.pos.reshape(-1, 1))), max_points)
                rep.pr_micro = (micro.precision[0], micro.recall[0], scalars["mAP_micro"])
            rep.pr_counts = threshold_counts(self.probs, self.pos, 101)
        return rep


class HistLevel:
    """Clip-level metrics of histogram mode, from the suite's summed states (same keys and
    definitions as :class:`Level`; AP/AUROC/PR curves from the score histograms)."""

    def __init__(self, suite) -> None:
        self.suite, self.task, self.c = suite, suite.task, suite._c
        self.hist = hist_view(suite.hist, suite._c, suite.bins)
        self.ap, self.auc, self.npos, self.nneg = hist_ap_auroc(self.hist)
        self.n = int(suite.n_rows)

    def scalars(self) -> Dict[str, Tensor]:
        if not hasattr(self, "_scalars"):
            self._scalars = self._compute()
        return self._scalars

    def _compute(self) -> Dict[str, Tensor]:
        su, n = self.suite, self.n
        keys = keys_for(self.task, su.top_k, None)
        out: Dict[str, Tensor] = {}
        defined_auc = (self.npos > 0) & (self.nneg > 0)
        if self.task == "multiclass":
            cm = su.cm
            self.tp, self.pc, self.support = cm.diagonal(), cm.sum(0), cm.sum(1)
            present = self.support > 0
            present_top1 = present | (self.pc > 0) if su.predicted_absent == "zero" else present
            for i, k in enumerate(su.top_k):
                out[f"top{k}"] = su.topk_hits[i].sum().double() / n
                per = safe_div(su.topk_hits[i], self.support)
                out[f"mean_class_top{k}"] = _mean_present(per, present_top1 if k == 1 else present)
            out["balanced_acc"] = _mean_present(safe_div(self.tp, self.support), present_top1)
            out.update(_prf_scalars(self.tp, self.pc, self.support, ("macro", "micro", "weighted"),
                                    (self.support > 0) | (self.pc > 0)))
            out["auroc_macro"] = reduce_classes(self.auc, defined_auc, "macro", su.auroc_empty_class)
            out["auprc_macro"] = reduce_classes(self.ap, self.npos > 0, "macro", su.ap_empty_class)
            out["ece"] = calibration_error(su.cal, "l1")
            out["mce"] = calibration_error(su.cal, "max")
            out["nll"] = su.loss_sums[0] / n
            out["brier"] = su.loss_sums[1] / n
        elif self.task == "binary":
            tp, fp, fn = (x[0] for x in su.ml_counts)
            tn = n - tp - fp - fn
            self.tp, self.pc, self.support = tp[None], (tp + fp)[None], (tp + fn)[None]
            self.cm = torch.stack([torch.stack([tn, fp]), torch.stack([fn, tp])])
            out.update(_binary_scalars(su, tp, fp, fn, tn, 0, self.ap[0], self.auc[0], self.npos[0], self.nneg[0]))
            out["ece"] = calibration_error(su.cal, "l1")
            out["mce"] = calibration_error(su.cal, "max")
            out["nll"] = su.loss_sums[0] / n
            out["brier"] = su.loss_sums[1] / n
        else:
            tp, fp, fn = su.ml_counts
            self.tp, self.pc, self.support = tp, tp + fp, tp + fn
            out["mAP"] = reduce_classes(self.ap, self.npos > 0, "macro", su.ap_empty_class)
            out["mAP_weighted"] = reduce_classes(self.ap, self.npos > 0, "weighted", su.ap_empty_class, self.npos)
            micro_ap, _, micro_pos, _ = hist_ap_auroc(self.hist.sum(0, keepdim=True))
            out["mAP_micro"] = reduce_pooled(micro_ap[0], bool(micro_pos[0] > 0), su.ap_empty_class)
            out["auroc_macro"] = reduce_classes(self.auc, defined_auc, "macro", su.auroc_empty_class)
            out.update(_prf_scalars(tp, tp + fp, tp + fn, ("macro", "micro")))
            out["ece"] = calibration_error(su.cal, "l1")
        return {k: out[k].double() for k in keys}

    def report(self, max_points: int = 200) -> LevelReport:
        su = self.suite
        scalars = {k: float(v) for k, v in self.scalars().items()}
        avg = precision_recall_f1(self.tp, self.pc, self.support, "none")
        ap = torch.where(self.npos > 0, self.ap, torch.full_like(self.ap, float("nan")))
        rel = reliability(su.cal, uniform_edges(su.calibration_bins, su.cal.device))
        curves = _downsample(hist_pr_curves(self.hist, su.bin_range), max_points)
        rep = LevelReport("clip", scalars, self.support.tolist(), avg["precision"].tolist(), avg["recall"].tolist(),
                          avg["f1"].tolist(), ap.tolist(), rel, pr_curves=curves)
        if self.task == "multiclass":
            rep.confusion = su.cm.clone()
            rep.top_confusions = top_confusions(su.cm, 20)
        elif self.task == "binary":
            rep.confusion = self.cm
        else:
            micro = _downsample(hist_pr_curves(self.hist.sum(0, keepdim=True), su.bin_range), max_points)
            rep.pr_micro = (micro.precision[0], micro.recall[0], scalars["mAP_micro"])
        return rep


def _downsample(curves: PRCurveData, max_points: int) -> PRCurveData:
    def pick(x: Tensor, idx: Tensor) -> Tensor:
        return x[idx]

    out = PRCurveData([], [], [])
    for p, r, t in zip(curves.precision, curves.recall, curves.thresholds):
        m = p.numel()
        if m > max_points:
            idx = torch.linspace(0, m - 1, max_points).round().long().unique()
            tidx = idx[idx < t.numel()]
            p, r, t = pick(p, idx), pick(r, idx), pick(t, tidx)
        out.precision.append(p)
        out.recall.append(r)
        out.thresholds.append(t)
    return out
