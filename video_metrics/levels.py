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
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .functional.aggregation import RowStore, video_key, video_probs
from .functional.calibration import ReliabilityData, bin_update, binned_calibration_error, binned_reliability, uniform_edges
from .functional.classification import (
    balanced_accuracy_from_counts,
    binary_losses,
    confusion_counts,
    counts_from_threshold_hist,
    log_softmax_rows,
    logsumexp_from_max,
    multiclass_rows,
    threshold_hist,
    multilabel_counts,
    prf_from_counts,
    probabilities,
    scatter_count,
    threshold_counts,
)
from .functional.workspace import Workspace
from .functional.histogram import hist_ap_auroc, hist_pr_curves, hist_view
from .functional.ranking import (
    PRCurveData,
    curves_average_precision,
    class_pass,
    copy_transposed,
    exact_ap_auroc,
    positive_index,
    pooled_ap_from_counts,
    pooled_counts,
    pr_curves,
    sorted_values,
    ranking_curves,
    reduce_classes,
    reduce_pooled,
    sorted_positives,
    sub_transposed,
)
from .functional.classification import top_confusions

__all__ = ["keys_for", "LevelReport", "Level", "HistLevel", "block_sizes", "level_scalars",
           "add_challenge_score", "add_video_counts", "clean_json", "ClassRows"]

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
    """Everything about one level (``"clip"`` or ``"video"``) for plots, callbacks and the CLI.

    >>> import video_metrics as vm
    >>> from video_metrics.data.predictions import synthetic_predictions
    >>> p = synthetic_predictions(num_videos=20, clips_per_video=2, num_classes=4)
    >>> suite = vm.VideoClassificationMetrics(4)
    >>> suite.update(p.scores, p.target, p.video_ids, p.clip_ids)
    >>> clip = suite.report().clip
    >>> clip.confusion.shape, clip.reliability.count.sum().item()
    (torch.Size([4, 4]), 40)
    """

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
        """The level's report as JSON-ready values."""
        d: Dict[str, Any] = {
            "level": self.level, "scalars": clean_json(self.scalars), "support": self.support,
            "precision": clean_json(self.precision), "recall": clean_json(self.recall), "f1": clean_json(self.f1), "ap": clean_json(self.ap),
            "top_confusions": [list(x) for x in self.top_confusions],
        }
        if self.reliability is not None:
            r = self.reliability
            d["reliability"] = {"confidence": clean_json(r.confidence.tolist()), "accuracy": clean_json(r.accuracy.tolist()),
                                "count": r.count.tolist(), "edges": r.edges.tolist(), "ece": clean_json(r.ece.item()),
                                "mce": clean_json(r.mce.item())}
        return d


def clean_json(x):
    """NaN/inf -> None so that the dict is strict JSON."""
    if isinstance(x, dict):
        return {k: clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _prf_scalars(tp: Tensor, pc: Tensor, support: Tensor, averages: Sequence[str],
                 labels: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """``precision_macro``, ``recall_macro``, ``f1_macro`` and ``f1_<avg>`` for the other averages."""
    out: Dict[str, Tensor] = {}
    for avg in averages:
        prf = prf_from_counts(tp, pc, support, avg, labels)
        if avg == "macro":
            out["precision_macro"], out["recall_macro"], out["f1_macro"] = prf["precision"], prf["recall"], prf["f1"]
        else:
            out[f"f1_{avg}"] = prf["f1"]
    return out


def level_scalars(cfg, task: str, keys: Sequence[str], S: Dict[str, Any], classes: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """Every scalar key of one level from its sufficient statistics ``S``: the one place where the
    keys are defined. The statistics may carry leading dimensions (bootstrap replicates, see
    :mod:`video_metrics.bootstrap`); classes are the last dimension of per-class ones.

    ``S``: ``n`` (samples), ``missing`` (expected videos without clips, counted as misses by
    top-k/acc); multiclass: ``hits`` ``(K, ..., C)`` top-k hits by target class, ``tp``, ``pc``
    (predicted), ``support``; multilabel: ``tp``, ``fp``, ``fn`` per class, ``ap_used``/``npos_used``
    (the ranking of ``mAP``; Charades' ``empty_videos``), ``micro_ap``/``micro_npos``; binary:
    ``tp``, ``fp``, ``fn``, ``tn``; ranking: ``ap``, ``auc``, ``npos``, ``nneg`` per class;
    calibration: ``bins`` ``(..., 3, M)``, ``nll`` and ``brier`` sums. ``classes`` (an index)
    restricts every class average to those classes (class slices)."""

    def cls(x: Tensor) -> Tensor:
        return x if classes is None else x[..., classes]

    keys = list(keys)
    out: Dict[str, Tensor] = {}
    n = torch.as_tensor(S["n"]).double()
    den = n + S.get("missing", 0)
    if task == "binary":
        tp, fp, fn, tn = (S[k] for k in ("tp", "fp", "fn", "tn"))
        out["acc"] = (tp + tn).double() / den
        # the mean recall of the classes with a target, as multiclass (class 1 = positive, 0 = negative)
        out["balanced_acc"] = balanced_accuracy_from_counts(torch.stack([tp, tn], -1), torch.stack([tp + fp, tn + fn], -1),
                                                torch.stack([tp + fn, tn + fp], -1))
        prf = prf_from_counts(tp[..., None], (tp + fp)[..., None], (tp + fn)[..., None], "macro")
        out["precision"], out["recall"], out["f1"] = prf["precision"], prf["recall"], prf["f1"]
        if "ap" in keys or "auroc" in keys:
            npos, nneg = S["npos"][..., 0], S["nneg"][..., 0]
            out["ap"] = reduce_pooled(S["ap"][..., 0], npos > 0, cfg.ap_empty_class)
            out["auroc"] = reduce_pooled(S["auc"][..., 0], (npos > 0) & (nneg > 0), cfg.auroc_empty_class)
    elif task == "multiclass":
        tp, pc, support = cls(S["tp"]), cls(S["pc"]), cls(S["support"])
        for i, k in enumerate(cfg.top_k):
            out[f"top{k}"] = S["hits"][i].sum(-1).double() / den
            out[f"mean_class_top{k}"] = balanced_accuracy_from_counts(cls(S["hits"][i]), pc, support,
                                                          cfg.predicted_absent if k == 1 else "ignore")
        out["balanced_acc"] = balanced_accuracy_from_counts(tp, pc, support, cfg.predicted_absent)
        out.update(_prf_scalars(tp, pc, support, ("macro", "micro", "weighted"), (support > 0) | (pc > 0)))
        if "auroc_macro" in keys or "auprc_macro" in keys:
            npos = cls(S["npos"])
            out["auroc_macro"] = reduce_classes(cls(S["auc"]), (npos > 0) & (cls(S["nneg"]) > 0), "macro",
                                                cfg.auroc_empty_class)
            out["auprc_macro"] = reduce_classes(cls(S["ap"]), npos > 0, "macro", cfg.ap_empty_class)
    else:
        tp, fp, fn = cls(S["tp"]), cls(S["fp"]), cls(S["fn"])
        out.update(_prf_scalars(tp, tp + fp, tp + fn, ("macro", "micro")))
        if "auroc_macro" in keys:
            npos = cls(S["npos"])
            out["auroc_macro"] = reduce_classes(cls(S["auc"]), (npos > 0) & (cls(S["nneg"]) > 0), "macro",
                                                cfg.auroc_empty_class)
        if "mAP" in keys or "mAP_weighted" in keys:
            ap_used, npos_used = cls(S["ap_used"]), cls(S["npos_used"])
            out["mAP"] = reduce_classes(ap_used, npos_used > 0, "macro", cfg.ap_empty_class)
            out["mAP_weighted"] = reduce_classes(ap_used, npos_used > 0, "weighted", cfg.ap_empty_class, npos_used)
        if "mAP_micro" in keys:
            out["mAP_micro"] = reduce_pooled(S["micro_ap"], S["micro_npos"] > 0, cfg.ap_empty_class)
    if "ece" in keys:
        out["ece"] = binned_calibration_error(S["bins"], "l1")
        if "mce" in keys:
            out["mce"] = binned_calibration_error(S["bins"], "max")
    if "nll" in keys:
        out["nll"] = S["nll"].double() / n
        out["brier"] = S["brier"].double() / n
    return {k: out[k].double() for k in keys}


def add_challenge_score(cfg, out: Dict[str, Any]) -> None:
    """``video/challenge_score`` (the Kinetics challenge: the mean of top-1 and top-5 error) for
    ``preset="kinetics"``, from ``out``'s video top-1 and top-5 (scalars or replicates)."""
    if cfg.preset == "kinetics" and "video/top1" in out and "video/top5" in out:
        out["video/challenge_score"] = 1.0 - (out["video/top1"] + out["video/top5"]) / 2


def add_video_counts(cfg, out: Dict[str, Any], num_videos: int, num_clips: int, missing: int) -> None:
    """The video level's counts (and the challenge score) beside its keys in ``compute()``."""
    out["video/num_videos"] = torch.tensor(float(num_videos), dtype=torch.float64)
    out["video/num_clips"] = torch.tensor(float(num_clips), dtype=torch.float64)
    if cfg.expected_video_ids is not None:
        out["video/missing_videos"] = torch.tensor(float(missing), dtype=torch.float64)
    add_challenge_score(cfg, out)


#: values in one block of rows; above it, classes are taken an eighth at a time (tests lower it)
BLOCK_VALUES = 1 << 22


def block_sizes(n: int, c: int) -> Tuple[int, int]:
    """Rows per row block and classes per class block: each block a small share of the ``n x c``
    state (at most :data:`BLOCK_VALUES` values a row block; an eighth of the classes a class
    block when the state is larger), so temporaries stay far below the state."""
    rows = max(16, BLOCK_VALUES // max(c, 1))
    classes = c if n * c <= BLOCK_VALUES else max(1, -(-c // 8))
    return rows, classes


class ClassRows:
    """Row ``k`` of a multiclass level's ``(C, N)`` ranking scores, ``[k]``: the class block holding
    ``k`` is rebuilt into the level's one block buffer when ``k`` leaves the current block (so a
    row stays valid until the next class block is asked for). ``shape`` and ``device`` as the
    matrix's."""

    def __init__(self, level: "Level") -> None:
        self.level = level
        self.shape = (level.c, level.n)
        self.device = level.target.device
        self._c0 = self._c1 = 0
        self._block: Optional[Tensor] = None

    def __getitem__(self, k: int) -> Tensor:
        if not self._c0 <= k < self._c1:
            cb = block_sizes(self.level.n, self.level.c)[1]
            self._c0 = (k // cb) * cb
            self._c1 = min(self.level.c, self._c0 + cb)
            self._block = self.level.class_block(self._c0, self._c1)
        return self._block[k - self._c0]


class Level:
    """Metrics of one level, computed block by block.

    The clip level reads the kept clip rows (:class:`RowStore`); the video level the aggregated
    ``(videos, classes)`` ranking scores of :func:`~video_metrics.functional.aggregation.aggregate_blocks`.
    A row pass over blocks of rows accumulates everything that is per row (argmax, top-k rank of
    the target, confusion counts, calibration bins, NLL, Brier, thresholded counts); a class pass
    over blocks of classes computes AP, AUROC (and, for reports, PR curves). Multiclass: each class
    block of ranking scores is rebuilt from the rows into one reused buffer (:meth:`_class_block`;
    peak extra memory: that block plus a row block). Multilabel: the row pass writes the ranking
    scores into one ``(C, N)`` matrix, which the micro AP ranks as a whole (peak extra memory: the
    size of the scores plus a block). No ``N x C`` float64, one-hot or comparison temporaries."""

    def __init__(self, config, level: str, reduction: Optional[str], missing: int = 0, detail: bool = True,
                 workspace: Optional[Workspace] = None) -> None:
        self.config, self.level, self.reduction, self.missing = config, level, reduction, missing
        #: where the ranking matrix is carved from (compute(): the clip level's, lent to the video level)
        self.workspace = workspace if workspace is not None else Workspace()
        self.task, self.c = config.task, config.columns
        self.logit: Optional[Tensor] = None  # binary: the logit of P(y=1) when the level has one
        #: False: only scalars are wanted, so the ranking matrix may be sorted in place
        self.detail = detail

    # ------------------------------------------------------------------ one level per source
    @classmethod
    def of_rows(cls, config, name: str, rows: RowStore, t: Tensor, detail: bool = True) -> "Level":
        """The level of kept clip rows (a :class:`RowStore`)."""
        level = cls(config, name, None, detail=detail)
        level.from_rows(rows, t)
        return level

    @classmethod
    def of_clips(cls, config, s: Tensor, t: Tensor, name: str = "clip") -> "Level":
        """The level of one ``(N, C)`` tensor of rows (binary: ``(N, 1)``)."""
        level = cls(config, name, None)
        level.from_clips(s, t)
        return level

    @classmethod
    def of_videos(cls, config, reduction: str, agg, missing: int = 0, detail: bool = True,
                  workspace: Optional[Workspace] = None) -> "Level":
        """The video level of an :class:`~video_metrics.functional.aggregation.AggregatedVideos`."""
        level = cls(config, "video", reduction, missing=missing, detail=detail, workspace=workspace)
        level.from_aggregated(agg.rank, agg.votes, agg.target)
        return level

    # ------------------------------------------------------------------ sources
    def from_rows(self, rows: RowStore, t: Tensor) -> None:
        """Clip level: the kept clip rows (logits or probabilities as the suite got them)."""
        self.n, self.target = rows.n, t
        self._rows, self._vrank, self._votes = rows, None, None
        self._lse = None  # multiclass logits: the rows' log-sum-exps, once a pass has them
        self.rank_dtype = torch.float32
        self._blocks_rows = rows.block_rows
        if self.task == "binary":
            s = torch.cat([x for _, x in rows.blocks()]) if rows.n else torch.zeros(0, 1)
            self.from_clips(s, t)

    def from_clips(self, s: Tensor, t: Tensor) -> None:
        """Clip level from one ``(N, C)`` tensor of kept rows."""
        if self.task != "binary":
            rows, _ = block_sizes(s.shape[0], s.shape[1])
            return self.from_rows(RowStore([s], None, s.shape[1], rows), t)
        cfg = self.config
        self.n, self.target = s.shape[0], t
        self.probs = s.sigmoid() if cfg.input == "logits" else s
        self.rank, self.key = s, s
        if cfg.input == "logits":
            self.logit = s

    def from_aggregated(self, rank: Tensor, votes: Optional[Tensor], t: Tensor) -> None:
        """Video level: the ranking scores (and votes) of the aggregation."""
        cfg = self.config
        self.n, self.target = rank.shape[0], t
        self._rows, self._vrank, self._votes = None, rank, votes
        self._lse = None
        self.rank_dtype = torch.float64
        self._blocks_rows = block_sizes(rank.shape[0], rank.shape[1])[0]
        if self.task == "binary":
            self.probs = video_probs(rank, "multilabel", cfg.input, self.reduction)
            self.rank, self.key = rank, rank
            if cfg.input == "logits" and self.reduction == "mean_logits":
                self.logit = rank
        self._probs_of = lambda r: video_probs(r, self._kernel_task, cfg.input, self.reduction)
        self._key_of = lambda r, v: video_key(r, v, self._kernel_task, cfg.input, self.reduction)

    @property
    def _kernel_task(self) -> str:
        return "multilabel" if self.task == "binary" else self.task

    def row_blocks(self, lazy_rank: bool = False) -> Iterator[Tuple[int, Tensor, Tensor, Optional[Tensor]]]:
        """``(start, key, probs, rank)`` per block of rows. ``lazy_rank``: clip-level multiclass
        logits yield ``probs=None, rank=None`` (the caller derives both from the logits'
        log-sum-exp: :func:`~video_metrics.functional.classification.multiclass_rows`)."""
        cfg = self.config
        if self._rows is not None:
            mc = self.task == "multiclass"
            for start, x in self._rows.blocks():
                if mc and lazy_rank and cfg.input == "logits":
                    yield start, x, None, None
                    continue
                if mc:
                    rank = log_softmax_rows(x) if cfg.input == "logits" else x.log()
                else:
                    rank = x
                yield start, x, probabilities(x, self.task, cfg.input), rank
            return
        b = self._blocks_rows
        for start in range(0, self.n, b):
            r = self._vrank[start:start + b]
            v = self._votes[start:start + b] if self._votes is not None else None
            yield start, self._key_of(r, v), self._probs_of(r), r

    # ------------------------------------------------------------------ scalars
    def scalars(self) -> Dict[str, Tensor]:
        """The level's keys as float64 scalars (``compute()``'s values without the ``clip/``/``video/`` prefix)."""
        if not hasattr(self, "_scalars"):
            self._scalars = self._compute()
        return self._scalars

    def _compute(self) -> Dict[str, Tensor]:
        return self._binary() if self.task == "binary" else self._blocked()

    def _blocked(self) -> Dict[str, Tensor]:
        cfg, c, n = self.config, self.c, self.n
        keys = keys_for(self.task, cfg.top_k, self.reduction)
        mc = self.task == "multiclass"
        dev = self.target.device
        need_cal = "ece" in keys
        nb = cfg.calibration_bins
        bins = torch.zeros(3, nb, dtype=torch.float64, device=dev)
        nll = torch.zeros((), dtype=torch.float64, device=dev)
        brier = torch.zeros((), dtype=torch.float64, device=dev)
        if mc:
            cm = torch.zeros(c, c, dtype=torch.long, device=dev)
            hits = torch.zeros(len(cfg.top_k), c, dtype=torch.long, device=dev)
        else:
            counts = torch.zeros(3, c, dtype=torch.long, device=dev)
        need_rank = (not mc) or "auroc_macro" in keys
        # the class pass (and report()'s curves) builds each class block of ranking scores from the
        # rows into one reused buffer: no (C, N) matrix. Multilabel: the row pass keeps the positive
        # pairs' scores, and the micro AP counts every block's pairs below them (pooled_counts)
        streamed = need_rank
        rank_t = None
        pos_scores: List[Tensor] = []
        # clip-level multiclass logits: one exponential pass per row block gives the log-sum-exp and
        # the losses (multiclass_rows), and the log-probabilities are written straight into the ranking matrix
        fused = mc and self._rows is not None and cfg.input == "logits"
        # the rows' log-sum-exps, from which a class block's log-probabilities are rebuilt
        self._lse = torch.empty(n, dtype=torch.float32, device=dev) if streamed and fused else None
        for start, key, probs, rank in self.row_blocks(lazy_rank=fused):
            b = key.shape[0]
            ones = torch.ones(b, dtype=torch.bool, device=dev)
            t = self.target[start:start + b]
            lse = None
            if mc:
                r = multiclass_rows(key, t, probs, rank, losses=need_cal, k_max=max(cfg.top_k))
                lse = r.lse
                cm += confusion_counts(r.pred, t, ones, c)
                for i, k in enumerate(cfg.top_k):
                    hits[i] += scatter_count(t, r.rank < k, c)
                if need_cal:
                    bins += bin_update(r.conf, r.pred == t, ones, nb)
                    nll += r.nll.sum()
                    brier += r.brier.sum()
                if self._lse is not None:
                    self._lse[start:start + b] = lse
            else:
                pos = t.bool()
                counts += multilabel_counts(probs > cfg.threshold, pos, ones)
                if need_cal:
                    bins += bin_update(probs.reshape(-1), pos.reshape(-1), torch.ones_like(pos.reshape(-1)), nb)
                pos_scores.append(rank[pos].to(self.rank_dtype))
        S: Dict[str, Any] = {"n": n, "missing": self.missing}
        if mc:
            support = cm.sum(1)
            tp, pc = cm.diagonal(), cm.sum(0)
            self.cm, self.tp, self.pc, self.support = cm, tp, pc, support
            S.update(hits=hits, tp=tp, pc=pc, support=support)
        else:
            tp, fp, fn = counts
            self.tp, self.pc, self.support = tp, tp + fp, tp + fn
            S.update(tp=tp, fp=fp, fn=fn)
        if need_cal:
            self.bins = bins
            S.update(bins=bins, nll=nll, brier=brier)
        self._rank_t = rank_t
        if need_rank:
            S.update(self._class_pass(rank_t, keys, pos_scores))
        self.stats = S
        return level_scalars(cfg, self.task, keys, S)

    @property
    def rank_matrix(self) -> Optional[Tensor]:
        """The level's whole ``(C, N)`` ranking matrix when its row pass wrote one and left it unsorted
        (multilabel, ``detail=True``); None otherwise (multiclass levels rebuild class blocks)."""
        return getattr(self, "_rank_t", None) if self.detail else None

    @property
    def is_rows(self) -> bool:
        """A level of clip rows (not of aggregated videos)."""
        return self._rows is not None

    def lend_workspace(self) -> Workspace:
        """``compute()`` only (``detail=False``): this level's ranking buffer (its class-block
        buffer, or its ranking matrix), no longer needed once its scalars are computed, as a
        :class:`Workspace` for the next level's arrays (the level keeps no reference to it).
        Anything else: an empty workspace."""
        buf = getattr(self, "_block_buf", None)
        if buf is None:
            buf = getattr(self, "_rank_t", None)
        if self.detail or buf is None:
            return Workspace()
        self._rank_t = self._block_buf = None
        return Workspace(buf)

    def class_block(self, c0: int, c1: int) -> Tensor:
        """The ``(c1 - c0, n)`` ranking scores of classes ``c0:c1``, built from the rows (the clip
        rows minus their log-sum-exps, their logarithms for probabilities; the aggregated video
        scores) into this level's one class-block buffer: the same values as the rows of the full
        ranking matrix, elementwise."""
        cb = block_sizes(self.n, self.c)[1]
        if getattr(self, "_block_buf", None) is None:
            self._block_buf = self.workspace.empty((cb, self.n), self.rank_dtype, self.target.device)
        dst = self._block_buf[:c1 - c0]
        cols = slice(c0, c1)
        mc = self.task == "multiclass"
        if mc and self._rows is not None and self.config.input == "logits" and self._lse is None:
            self._lse = self.row_lse()  # a level whose row pass did not keep them
        if self._rows is None:
            b = self._blocks_rows
            for start in range(0, self.n, b):
                part = self._vrank[start:start + b, cols]
                copy_transposed(dst[:, start:start + part.shape[0]], part)
            return dst
        for start, x in self._rows.blocks(columns=cols):
            b = x.shape[0]
            if not mc:  # multilabel: the scores themselves (logits or probabilities)
                copy_transposed(dst[:, start:start + b], x)
            elif self._lse is not None:
                sub_transposed(dst[:, start:start + b], x, self._lse[start:start + b])
            else:  # multiclass probabilities: their logarithms
                copy_transposed(dst[:, start:start + b], x.log())
        return dst

    def row_lse(self) -> Tensor:
        """Multiclass clip logits: each kept row's log-sum-exp (the values ``multiclass_rows`` gives)."""
        out = torch.empty(self.n, dtype=torch.float32, device=self.target.device)
        for start, x in self._rows.blocks():
            out[start:start + x.shape[0]] = logsumexp_from_max(x, x.max(1).values)
        return out

    def class_rows(self) -> "ClassRows":
        """Multiclass: the ``(C, N)`` ranking scores read one class at a time, in class order, each
        class block rebuilt from the rows when first needed (:meth:`_class_block`): for callers
        that would otherwise hold the whole matrix (the bootstrap)."""
        return ClassRows(self)

    def _class_pass(self, rank_t: Optional[Tensor], keys, pos_scores: Sequence[Tensor] = ()) -> Dict[str, Tensor]:
        """AP, AUROC (and multilabel micro AP) class block by class block
        (:func:`~video_metrics.functional.ranking.class_pass`): from ``rank_t`` (the whole ``(C, N)``
        ranking matrix), or, when it is None, from blocks rebuilt from the rows (:meth:`class_block`).
        Multilabel: the micro AP from the positive pairs' scores (``pos_scores``, gathered by the row
        pass) and, for each block as the class pass builds it, the number of its pairs below each
        (:func:`~video_metrics.functional.ranking.pooled_counts`)."""
        cfg, c, n = self.config, self.c, self.n
        mc = self.task == "multiclass"
        _, cb = block_sizes(n, c)
        q = None if mc else sorted_values(torch.cat(list(pos_scores)) if pos_scores else
                                          torch.zeros(0, dtype=self.rank_dtype, device=self.target.device))
        below = None if mc else torch.zeros(q.numel(), dtype=torch.long, device=q.device)
        done: List[Tensor] = []  # the block the class pass has finished with, not yet counted

        def count_done() -> None:
            # its rows may have been sorted in place by the class pass: the same values, which are
            # all the micro AP needs; sorted flat in place (the buffer is rebuilt for the next block)
            if done:
                below.add_(pooled_counts(done, q, inplace=True))
                done.clear()

        def block(c0: int, c1: int) -> Tensor:
            return rank_t[c0:c1] if rank_t is not None else self.class_block(c0, c1)

        def counted_block(c0: int, c1: int) -> Tensor:  # multilabel, rebuilt blocks: counted for the micro AP
            count_done()
            done.append(self.class_block(c0, c1))
            return done[0]

        if mc:
            positives = positive_index(*sorted_positives(self.target, 0, c), 0)
        else:
            target = self.target

            def positives(c0: int, c1: int) -> Tensor:
                return target[:, c0:c1].bool()
        # a rebuilt class block (or compute()'s own matrix) may be sorted in place
        overwrite = rank_t is None or not self.detail
        counted = below is not None and rank_t is None
        ap, auc, npos = class_pass(c, cb, counted_block if counted else block, positives, cfg.ap_mode, overwrite)
        if counted:
            count_done()
        ap_k = npos_k = None
        if not mc and cfg.empty_videos == "exclude":
            has_pos = self.target.bool().any(1)
            if not bool(has_pos.all()):
                ap_k, _, npos_k = class_pass(c, cb, block, positives, cfg.ap_mode, overwrite,
                                             rows=torch.nonzero(has_pos).squeeze(1))
        self.ap, self.npos = ap, npos
        out: Dict[str, Tensor] = {"ap": ap, "auc": auc, "npos": npos, "nneg": n - npos}
        if mc:
            return out
        out["ap_used"], out["npos_used"] = (ap_k, npos_k) if ap_k is not None else (ap, npos)
        if rank_t is not None:
            below = pooled_counts((rank_t[c0:c0 + cb] for c0 in range(0, c, cb)), q)
        out["micro_ap"], self._micro_p, self._micro_r = pooled_ap_from_counts(q, below, n * c)
        out["micro_npos"] = torch.tensor(q.numel(), device=q.device)
        return out

    def _binary(self) -> Dict[str, Tensor]:
        cfg = self.config
        keys = keys_for(self.task, cfg.top_k, self.reduction)
        pos = self.target.bool()  # (n, 1)
        self.pos = pos
        y = pos[:, 0]
        p = self.probs[:, 0]
        n = y.numel()
        pred = p > cfg.threshold
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        tn = n - tp - fp - fn
        ap, auc, npos = exact_ap_auroc(self.rank, pos)
        self.ap = ap
        self.tp, self.pc, self.support = tp[None], (tp + fp)[None], (tp + fn)[None]
        self.cm = torch.stack([torch.stack([tn, fp]), torch.stack([fn, tp])])
        S: Dict[str, Any] = dict(n=n, missing=self.missing, tp=tp, fp=fp, fn=fn, tn=tn, ap=ap, auc=auc, npos=npos,
                                 nneg=n - npos)
        if "ece" in keys:
            self.bins = bin_update(p, y, torch.ones_like(y), cfg.calibration_bins)
            nll, brier = binary_losses(y, p, self.logit[:, 0] if self.logit is not None else None)
            S.update(bins=self.bins, nll=nll.sum(), brier=brier.sum())
        self.stats = S
        return level_scalars(cfg, self.task, keys, S)

    # ------------------------------------------------------------------ report
    def report(self, max_points: int = 200) -> LevelReport:
        """The level's :class:`LevelReport`: per-class vectors, reliability, PR curves, top confusions."""
        scalars = {k: float(v) for k, v in self.scalars().items()}
        cfg = self.config
        avg = prf_from_counts(self.tp, self.pc, self.support, "none")
        rel = binned_reliability(self.bins, uniform_edges(cfg.calibration_bins, self.bins.device)) if hasattr(self, "bins") else None
        if self.task == "binary":
            curves = _downsample(pr_curves(ranking_curves(self.rank.float(), self.pos)), max_points)
            ap = self.ap
        else:
            curves, ap = self._report_curves(max_points)
        rep = LevelReport(self.level, scalars, self.support.tolist(), avg["precision"].tolist(), avg["recall"].tolist(),
                          avg["f1"].tolist(), ap.tolist(), rel, pr_curves=curves)
        if self.task != "multilabel":
            rep.confusion = self.cm
            rep.top_confusions = top_confusions(self.cm, 20) if self.task == "multiclass" else []
        if self.task == "binary":
            rep.pr_counts = threshold_counts(self.probs, self.pos, 101)
        elif self.task == "multilabel":
            rep.pr_micro = (self._micro_p, self._micro_r, scalars["mAP_micro"])
            hist = None
            for start, _, probs, _ in self.row_blocks():
                h = threshold_hist(probs, self.target[start:start + probs.shape[0]].bool(), 101)
                hist = h if hist is None else hist + h
            rep.pr_counts = counts_from_threshold_hist(hist)
        return rep

    def _report_curves(self, max_points: int):
        """Per-class PR curves (class block by class block) and per-class AP."""
        n, c = self.n, self.c
        rank_t = self._rank_t
        blocks = rank_t is None
        _, cb = block_sizes(n, c)
        out = PRCurveData([], [], [])
        aps = []
        if self.task == "multiclass":
            cls_all, row_all, starts = sorted_positives(self.target, 0, c)
        for c0 in range(0, c, cb):
            c1 = min(c, c0 + cb)
            st = self.class_block(c0, c1) if blocks else rank_t[c0:c1]
            if self.task == "multiclass":
                lo, hi = int(starts[c0]), int(starts[c1])
                pos = torch.zeros(n, c1 - c0, dtype=torch.bool, device=st.device)
                pos[row_all[lo:hi], cls_all[lo:hi] - c0] = True
            else:
                pos = self.target[:, c0:c1].bool()
            curves = ranking_curves(st.T.float(), pos)
            part = _downsample(pr_curves(curves), max_points)
            out.precision += part.precision
            out.recall += part.recall
            out.thresholds += part.thresholds
            if getattr(self, "ap", None) is None:
                aps.append(curves_average_precision(curves, self.config.ap_mode))
        ap = self.ap if getattr(self, "ap", None) is not None else torch.cat(aps)
        return out, ap


class HistLevel:
    """Clip-level metrics of histogram mode, from the suite's summed states (same keys and
    definitions as :class:`Level`; AP/AUROC/PR curves from the score histograms)."""

    def __init__(self, config, states: Dict[str, Tensor]) -> None:
        """``states``: the suite's summed states (``hist``, ``cal``, ``n_rows``; multiclass ``cm``,
        ``topk_hits``; otherwise ``ml_counts``; multiclass and binary ``loss_sums``)."""
        self.config, self.task, self.c = config, config.task, config.columns
        self.states = states
        self.hist = hist_view(states["hist"], self.c, config.bins)
        self.ap, self.auc, self.npos, self.nneg = hist_ap_auroc(self.hist)
        self.n = int(states["n_rows"])

    def scalars(self) -> Dict[str, Tensor]:
        """The histogram-mode level's keys as float64 scalars."""
        if not hasattr(self, "_scalars"):
            self._scalars = self._compute()
        return self._scalars

    def _compute(self) -> Dict[str, Tensor]:
        cfg, st, n = self.config, self.states, self.n
        S: Dict[str, Any] = dict(n=n, ap=self.ap, auc=self.auc, npos=self.npos, nneg=self.nneg, bins=st["cal"])
        if self.task != "multilabel":
            S.update(nll=st["loss_sums"][0], brier=st["loss_sums"][1])
        if self.task == "multiclass":
            cm = st["cm"]
            self.tp, self.pc, self.support = cm.diagonal(), cm.sum(0), cm.sum(1)
            S.update(hits=st["topk_hits"], tp=self.tp, pc=self.pc, support=self.support)
        elif self.task == "binary":
            tp, fp, fn = (x[0] for x in st["ml_counts"])
            tn = n - tp - fp - fn
            self.tp, self.pc, self.support = tp[None], (tp + fp)[None], (tp + fn)[None]
            self.cm = torch.stack([torch.stack([tn, fp]), torch.stack([fn, tp])])
            S.update(tp=tp, fp=fp, fn=fn, tn=tn)
        else:
            tp, fp, fn = st["ml_counts"]
            self.tp, self.pc, self.support = tp, tp + fp, tp + fn
            micro_ap, _, micro_pos, _ = hist_ap_auroc(self.hist.sum(0, keepdim=True))
            S.update(tp=tp, fp=fp, fn=fn, ap_used=self.ap, npos_used=self.npos, micro_ap=micro_ap[0],
                     micro_npos=micro_pos[0])
        return level_scalars(cfg, self.task, keys_for(self.task, cfg.top_k, None), S)

    def report(self, max_points: int = 200) -> LevelReport:
        """The histogram-mode level's :class:`LevelReport`."""
        cfg, st = self.config, self.states
        scalars = {k: float(v) for k, v in self.scalars().items()}
        avg = prf_from_counts(self.tp, self.pc, self.support, "none")
        ap = torch.where(self.npos > 0, self.ap, torch.full_like(self.ap, float("nan")))
        rel = binned_reliability(st["cal"], uniform_edges(cfg.calibration_bins, st["cal"].device))
        curves = _downsample(hist_pr_curves(self.hist, cfg.bin_range), max_points)
        rep = LevelReport("clip", scalars, self.support.tolist(), avg["precision"].tolist(), avg["recall"].tolist(),
                          avg["f1"].tolist(), ap.tolist(), rel, pr_curves=curves)
        if self.task == "multiclass":
            rep.confusion = st["cm"].clone()
            rep.top_confusions = top_confusions(st["cm"], 20)
        elif self.task == "binary":
            rep.confusion = self.cm
        else:
            micro = _downsample(hist_pr_curves(self.hist.sum(0, keepdim=True), cfg.bin_range), max_points)
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
