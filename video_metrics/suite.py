"""Clip -> video aggregation (:class:`VideoAggregator`) and the one-object evaluation suite
(:class:`VideoClassificationMetrics`).

State: one row per clip — its scores (fp32, ``C`` values), target, ``video_id``, ``clip_id``
and a validity flag — kept as concatenated states, i.e. about ``N * (4*C + 25)`` bytes for N
clips (multilabel targets add ``N * C`` bytes): 30,000 clips x 400 classes is 49 MB. Video-level
aggregation needs those per-clip rows, because clips of one video may sit on different processes
and padding duplicates can only be recognised once everything is gathered. ``update()`` only
validates on the device and appends; ``compute()`` gathers all rows in one packed sync (at most
three collectives for everything), drops repeated ``(video_id, clip_id)`` pairs, then computes
clip- and video-level metrics with the same kernels as the single metric classes.

Without ``clip_ids``, each row counts as its own clip and padding duplicates (the
``DistributedSampler`` repeats up to ``world_size - 1`` samples) cannot be removed: pass clip ids
(e.g. the dataset index of the view), or evaluate with an unpadded sampler.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .functional._checks import INPUTS, TASKS, check_choice, check_device, check_ids, check_num_classes, check_scores, check_target
from .functional.aggregation import REDUCTIONS, aggregate, dedup_clips, group_rows
from .functional.calibration import ReliabilityData, bin_update, calibration_error, reliability, uniform_edges
from .functional.classification import (
    threshold_counts,
    confusion_counts,
    multilabel_counts,
    precision_recall_f1,
    prepare_rows,
    probabilities,
    safe_div,
    scatter_count,
    target_rank,
)
from .functional.histogram import DEFAULT_RANGE, hist_ap_auroc, hist_pr_curves, hist_state, hist_update, hist_view, to_logit
from .functional.ranking import PRCurveData, average_precision, exact_ap_auroc, pr_curves, ranking_curves, reduce_classes
from .ids import IdRegistry
from .metrics.base import VideoMetric
from .metrics.classification import top_confusions
from .metrics.ranking import check_bins

__all__ = ["VideoAggregator", "AggregatedVideos", "Coverage", "VideoClassificationMetrics", "SuiteReport", "LevelReport",
           "PRESETS"]

MISSING = ("ignore", "count_as_wrong")


@dataclass
class Coverage:
    """How complete the video-level evaluation is. ``duplicates_dropped``: rows whose
    ``(video_id, clip_id)`` was already seen (sampler padding); ``missing_videos``: expected ids
    with no clip; ``videos_with_fewer_clips``: videos with fewer than ``expected_clips`` clips."""

    num_videos: int
    num_clips: int
    duplicates_dropped: int
    min_clips: int
    max_clips: int
    missing_videos: int = 0
    missing_video_ids: List[int] = field(default_factory=list)
    videos_with_fewer_clips: int = 0


@dataclass
class AggregatedVideos:
    """Result of :class:`VideoAggregator`: one row per video, ids ascending.

    ``scores``: video probabilities (float64; for ``vote``, the mean clip probabilities);
    ``rank``: scores ordering videos as ``scores`` without fp saturation (log-probabilities or
    logits); ``key``: what the video prediction is the argmax of (for ``vote``: votes + mean
    probability / 2); ``votes``: clip-argmax counts (``vote`` only); ``num_clips`` per video."""

    video_ids: Tensor
    scores: Tensor
    rank: Tensor
    key: Tensor
    target: Tensor
    num_clips: Tensor
    coverage: Coverage
    votes: Optional[Tensor] = None


class _ClipRows(VideoMetric):
    """Per-clip rows with device-side validation; shared by the aggregator and the suite."""

    def __init__(self, num_classes: int, task: str, input: str, expected_video_ids: Optional[Sequence[int]] = None,
                 missing: str = "ignore", expected_clips: Optional[int] = None,
                 id_registry: Optional[IdRegistry] = None, keep_rows: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep_rows = keep_rows
        self.num_classes = check_num_classes(num_classes)
        check_choice("task", task, TASKS)
        check_choice("input", input, INPUTS)
        check_choice("missing", missing, MISSING)
        if expected_clips is not None and (isinstance(expected_clips, bool) or not isinstance(expected_clips, int) or expected_clips < 1):
            raise ValueError(f"`expected_clips` must be None or a positive int, got {expected_clips!r}")
        self.task, self.input, self.missing, self.expected_clips = task, input, missing, expected_clips
        self.expected_video_ids = None if expected_video_ids is None else torch.as_tensor(list(expected_video_ids), dtype=torch.long)
        self.id_registry = id_registry
        if keep_rows:
            self.add_row_states(num_classes, task)
            self.add_cat_state("video_ids", torch.long, ())
            self.add_cat_state("clip_ids", torch.long, ())
        self.add_sum_state("n_seen", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_with_clip_ids", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_with_video_ids", torch.zeros((), dtype=torch.long))

    def _append(self, scores: Tensor, target: Tensor, video_ids: Optional[Tensor], clip_ids: Optional[Tensor]) -> None:
        check_scores(scores, self.num_classes)
        check_target(target, scores, self.task)
        n = scores.shape[0]
        check_ids(video_ids, n, scores.device, "video_ids")
        check_ids(clip_ids, n, scores.device, "clip_ids")
        if clip_ids is not None and video_ids is None:
            raise ValueError("`clip_ids` need `video_ids`: a clip id is unique within its video")
        check_device(scores, self)
        if not self.keep_rows:
            if clip_ids is not None and not getattr(self, "_warned_ids", False):
                self._warned_ids = True
                warnings.warn("histogram mode (bins=...) keeps no per-clip rows, so `clip_ids` cannot remove the "
                              "duplicates a distributed sampler pads with; they are counted (use an unpadded sampler, "
                              "or exact mode)", stacklevel=3)
            step = self._stream_step
            if getattr(self, "compile_update", False) is not False:
                if self._compiled is None:
                    opts = dict(fullgraph=True, dynamic=False)
                    opts.update(self.compile_update)
                    self._compiled = torch.compile(self._stream_step, **opts)
                step = self._compiled
            step(scores, target)
            return
        s, t, valid, bad_t, bad_s = prepare_rows(scores, target, self.task, self.input, self.num_classes)
        dev = scores.device
        # placeholders for missing ids: rows are deduplicated only when clip ids were given for
        # every batch (see _rows), and grouped by video only when video ids were
        vid = video_ids.long() if video_ids is not None else torch.full((n,), -1, dtype=torch.long, device=dev)
        cid = clip_ids.long() if clip_ids is not None else torch.full((n,), -1, dtype=torch.long, device=dev)
        self.scores.append(s)
        self.target.append(t if self.task == "multiclass" else t.bool())
        self.video_ids.append(vid)
        self.clip_ids.append(cid)
        self.valid.append(valid)
        self.n_seen += n
        if clip_ids is not None:
            self.n_with_clip_ids += n
        if video_ids is not None:
            self.n_with_video_ids += n
        self._count_rows(valid, bad_t, bad_s)

    def _rows(self):
        """Valid rows after the sync, padding duplicates removed when clip ids were given.
        Returns ``(scores, target, video_ids, n_dropped)``."""
        if self.id_registry is not None:
            self.id_registry.check()
        self._check_rows()
        valid = self._cat("valid")
        s, t, vid, cid = self._cat("scores"), self._cat("target"), self._cat("video_ids"), self._cat("clip_ids")
        if not bool(valid.all()):  # avoid copying every row when all are valid
            s, t, vid, cid = s[valid], t[valid], vid[valid], cid[valid]
        n_clip_ids, n_total = int(self.n_with_clip_ids), int(self.n_seen)
        if 0 < n_clip_ids < n_total:
            raise ValueError("`clip_ids` were given for some batches only: pass them for every batch or for none")
        n_vid = int(self.n_with_video_ids)
        if 0 < n_vid < n_total:
            raise ValueError("`video_ids` were given for some batches only: pass them for every batch or for none")
        dropped = 0
        if n_clip_ids:
            keep = dedup_clips(vid, cid)
            dropped = vid.numel() - keep.numel()
            s, t, vid = s[keep], t[keep], vid[keep]
        return s, t, vid, dropped

    def _aggregate(self, s: Tensor, t: Tensor, vid: Tensor, dropped: int, reduction: str) -> "AggregatedVideos":
        return aggregate_videos(s, t, vid, dropped, self.task, self.input, reduction, self.expected_video_ids,
                                self.expected_clips)


class VideoAggregator(_ClipRows):
    """Aggregate clip scores into video scores, exactly and independently of world size, batch
    size, order and sampler padding.

    ``update(scores, target, video_ids, clip_ids=None)``: int64 ids on the scores' device (use
    :class:`~video_metrics.ids.IdRegistry` for string ids). Repeated ``(video_id, clip_id)``
    pairs count once. Clips of one video with different targets are reported at ``compute()``.
    ``reduction`` is one of ``mean_logits``, ``mean_probs``, ``max``, ``vote`` (see
    :mod:`video_metrics.functional.aggregation`). ``compute()`` returns :class:`AggregatedVideos`.
    """

    higher_is_better = None

    def __init__(self, num_classes: int, task: str = "multiclass", reduction: str = "mean_probs", input: str = "logits",
                 expected_video_ids: Optional[Sequence[int]] = None, missing: str = "ignore",
                 expected_clips: Optional[int] = None, id_registry: Optional[IdRegistry] = None, **kwargs: Any) -> None:
        super().__init__(num_classes, task, input, expected_video_ids, missing, expected_clips, id_registry, **kwargs)
        check_reduction(reduction, task, input)
        self.reduction = reduction

    def update(self, scores: Tensor, target: Tensor, video_ids: Tensor, clip_ids: Optional[Tensor] = None) -> None:
        if video_ids is None:
            raise ValueError("`video_ids` is required by VideoAggregator")
        self._append(scores, target, video_ids, clip_ids)

    def compute(self) -> AggregatedVideos:
        return self._aggregate(*self._rows(), self.reduction)


def check_reduction(reduction, task, input, name: str = "reduction") -> None:
    check_choice(name, reduction, REDUCTIONS)
    if reduction == "mean_logits" and input == "probs":
        raise ValueError(f"`{name}='mean_logits'` needs input='logits'; with probabilities use 'mean_probs'")
    if reduction == "vote" and task != "multiclass":
        raise ValueError(f"`{name}='vote'` is defined for task='multiclass' only")


def aggregate_videos(s, t, vid, dropped, task, input, reduction, expected_video_ids=None, expected_clips=None) -> AggregatedVideos:
    uniq, inverse, counts = group_rows(vid)
    v = uniq.numel()
    # one target per video: every clip must agree
    if task == "multiclass":
        tmin = torch.full((v,), 2**62, dtype=torch.long, device=s.device).scatter_reduce_(0, inverse, t, "amin")
        tmax = torch.full((v,), -1, dtype=torch.long, device=s.device).scatter_reduce_(0, inverse, t, "amax")
        bad = int((tmin != tmax).sum())
        vt = tmax
    else:
        ti = t.long()
        tmin = torch.full((v, ti.shape[1]), 2, dtype=torch.long, device=s.device).scatter_reduce_(0, inverse[:, None].expand_as(ti), ti, "amin")
        tmax = torch.zeros((v, ti.shape[1]), dtype=torch.long, device=s.device).scatter_reduce_(0, inverse[:, None].expand_as(ti), ti, "amax")
        bad = int((tmin != tmax).any(1).sum())
        vt = tmax.bool()
    if bad:
        raise ValueError(f"{bad} video(s) have clips with different targets; every clip of a video must share its target")
    probs, rank, key, votes = aggregate(s, inverse, counts, task, input, reduction)
    missing_ids: List[int] = []
    if expected_video_ids is not None:
        exp = expected_video_ids.to(uniq.device)
        missing_ids = exp[~torch.isin(exp, uniq)].tolist()
    fewer = int((counts < expected_clips).sum()) if expected_clips is not None else 0
    cov = Coverage(
        num_videos=v, num_clips=int(counts.sum()), duplicates_dropped=int(dropped),
        min_clips=int(counts.min()) if v else 0, max_clips=int(counts.max()) if v else 0,
        missing_videos=len(missing_ids), missing_video_ids=missing_ids, videos_with_fewer_clips=fewer,
    )
    return AggregatedVideos(uniq, probs, rank, key, vt, counts, cov, votes)


# ----------------------------------------------------------------------------------- the suite
PRESETS: Dict[str, Dict[str, Any]] = {
    # Kinetics: video-level top-1/top-5 of mean clip scores; a video with no prediction is a miss;
    # challenge score = mean of top-1 and top-5 error.
    "kinetics": {"task": "multiclass", "top_k": (1, 5), "video_reduction": "mean_logits", "missing": "count_as_wrong"},
    # Charades: multi-label, max over clips, mAP over classes with a positive, class-size weighted mAP.
    "charades": {"task": "multilabel", "video_reduction": "max", "empty_class": "skip"},
}

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


@dataclass
class SuiteReport:
    """What :meth:`VideoClassificationMetrics.report` returns: scalars (the ``compute()``
    dict), one :class:`LevelReport` per level, coverage and class names. ``to_dict()`` is
    JSON-serialisable and small (per-class vectors, bins, top confusions; no per-clip arrays,
    no curves)."""

    task: str
    num_classes: int
    class_names: List[str]
    scalars: Dict[str, float]
    clip: LevelReport
    video: Optional[LevelReport]
    coverage: Optional[Coverage]
    video_reduction: Optional[str]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "task": self.task, "num_classes": self.num_classes, "class_names": self.class_names,
            "video_reduction": self.video_reduction, "scalars": _clean(self.scalars), "clip": self.clip.to_dict(),
            "video": None if self.video is None else self.video.to_dict(),
            "coverage": None if self.coverage is None else asdict(self.coverage),
        }


def _clean(x):
    """NaN/inf -> None so that the dict is strict JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class VideoClassificationMetrics(_ClipRows):
    """Every metric a video-classification evaluation reports, at clip and video level, from one
    ``update(scores, target, video_ids=None, clip_ids=None)``.

    ``compute()`` returns a flat ``dict[str, Tensor]`` of scalars for ``self.log_dict``: keys
    ``clip/<name>`` and, with ``video_reduction``, ``video/<name>`` (see :func:`keys_for` and the
    README table), plus ``video/num_videos``, ``video/num_clips``, ``video/missing_videos`` and,
    for ``preset="kinetics"``, ``video/challenge_score``.

    Definitions: as the single metric classes (``TopKAccuracy``, ``BalancedAccuracy``,
    ``PrecisionRecallF1``, ``MeanAveragePrecision``, ``AUROC``, ``CalibrationError``);
    ``auprc_macro`` is one-vs-rest AP; ``nll = mean(-log p[target])`` and
    ``brier = mean(sum_c (p_c - 1[c = target])**2)`` over samples (clips or videos).
    ``missing="count_as_wrong"`` counts expected videos without any clip as misses in the video
    ``top{k}`` (their targets are unknown, so the other metrics use the videos seen).
    """

    higher_is_better = None

    def __init__(self, num_classes: int, task: str = "multiclass", top_k: Sequence[int] = (1, 5),
                 video_reduction: Optional[str] = None, calibration_bins: int = 15, empty_class: str = "skip",
                 input: str = "logits", class_names: Optional[Sequence[str]] = None,
                 expected_video_ids: Optional[Sequence[int]] = None, missing: str = "ignore",
                 expected_clips: Optional[int] = None, ap_mode: str = "step", preset: Optional[str] = None,
                 threshold: float = 0.5, id_registry: Optional[IdRegistry] = None, bins: Optional[int] = None,
                 bin_range: float = DEFAULT_RANGE, compile_update: Any = False, **kwargs: Any) -> None:
        check_choice("preset", preset, (None,) + tuple(PRESETS))
        check_bins(bins, bin_range)
        if preset is not None:
            p = PRESETS[preset]
            task = p.get("task", task)
            top_k = p.get("top_k", top_k)
            video_reduction = p.get("video_reduction", video_reduction) if video_reduction is None else video_reduction
            missing = p.get("missing", missing)
            empty_class = p.get("empty_class", empty_class)
        if bins is not None and video_reduction is not None:
            raise ValueError("`bins` (histogram mode) bounds the clip-level state only: video-level aggregation needs "
                             "every clip's scores. Use bins with video_reduction=None, or exact mode (bins=None) with "
                             f"video_reduction={video_reduction!r}")
        if bins is not None and ap_mode != "step":
            raise ValueError(f"`ap_mode={ap_mode!r}` needs exact mode; histogram mode (`bins`) computes step AP")
        super().__init__(num_classes, task, input, expected_video_ids, missing, expected_clips, id_registry,
                         keep_rows=bins is None, **kwargs)
        self.bins, self.bin_range = bins, float(bin_range)
        if compile_update and bins is None:
            raise ValueError("`compile_update` needs histogram mode (bins=...): exact mode appends rows of varying "
                             "number, which no graph can capture")
        if compile_update is True:
            compile_update = {}
        elif isinstance(compile_update, str):
            compile_update = {"mode": compile_update}
        elif compile_update is not False and not isinstance(compile_update, dict):
            raise ValueError(f"`compile_update` must be False, True, a torch.compile mode or a dict of torch.compile "
                             f"options, got {compile_update!r}")
        self.compile_update = compile_update
        self._compiled = None
        top_k = tuple(int(k) for k in top_k)
        if task == "multiclass" and (not top_k or any(k < 1 for k in top_k)):
            raise ValueError(f"`top_k` must be positive ints, got {top_k!r}")
        self.top_k = tuple(k for k in top_k if k <= num_classes) or (1,)
        if video_reduction is not None:
            check_reduction(video_reduction, task, input, "video_reduction")
        check_choice("empty_class", empty_class, ("skip", "nan", "zero"))
        check_choice("ap_mode", ap_mode, ("step", "interpolated", "voc11"))
        if not isinstance(calibration_bins, int) or calibration_bins < 1:
            raise ValueError(f"`calibration_bins` must be a positive int, got {calibration_bins!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"`class_names` must have num_classes={num_classes} entries, got {len(class_names)}")
        self.video_reduction, self.calibration_bins, self.empty_class = video_reduction, calibration_bins, empty_class
        self.ap_mode, self.preset = ap_mode, preset
        self.threshold = float(threshold)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        if bins is not None:
            c = self.num_classes
            self.add_sum_state("hist", hist_state(c, bins))
            self.add_sum_state("cal", torch.zeros(3, calibration_bins, dtype=torch.float64))
            if task == "multiclass":
                self.add_sum_state("cm", torch.zeros(c, c, dtype=torch.long))
                self.add_sum_state("topk_hits", torch.zeros(len(self.top_k), c, dtype=torch.long))
                self.add_sum_state("loss_sums", torch.zeros(2, dtype=torch.float64))  # nll, brier
            else:
                self.add_sum_state("ml_counts", torch.zeros(3, c, dtype=torch.long))

    def _stream_step(self, scores: Tensor, target: Tensor) -> None:
        """Histogram mode: validate on the device and add the batch to the summed states. Pure
        tensor code with static shapes, no host sync: ``torch.compile(fullgraph=True)`` traces it
        whole (``compile_update``), and on CUDA ``mode="reduce-overhead"`` replays it as a CUDA graph."""
        s, t, valid, bad_t, bad_s = prepare_rows(scores, target, self.task, self.input, self.num_classes)
        self._accumulate(s, t, valid)
        self.n_seen += scores.shape[0]
        self._count_rows(valid, bad_t, bad_s)

    def _accumulate(self, s: Tensor, t: Tensor, valid: Tensor) -> None:
        """Histogram mode: add a batch's sufficient statistics (no host sync)."""
        c = self.num_classes
        probs = probabilities(s, self.task, self.input)
        if self.task == "multiclass":
            pos = torch.nn.functional.one_hot(t, c).bool()
            pred = s.argmax(1)
            self.cm += confusion_counts(pred, t, valid, c)
            rank_t = target_rank(s, t)
            self.topk_hits += torch.stack([scatter_count(t, (rank_t < k) & valid, c) for k in self.top_k])
            conf = probs.gather(1, pred[:, None]).squeeze(1)
            self.cal += bin_update(conf, pred == t, valid, self.calibration_bins)
            logp = s.log_softmax(1) if self.input == "logits" else s.log()
            nll = -logp.gather(1, t[:, None]).squeeze(1).double()
            brier = ((probs.double() - pos.double()) ** 2).sum(1)
            zero = torch.zeros_like(nll)
            self.loss_sums += torch.stack([torch.where(valid, nll, zero).sum(), torch.where(valid, brier, zero).sum()])
        else:
            pos = t.bool()
            self.ml_counts += multilabel_counts(probs > self.threshold, pos, valid)
            w = valid[:, None].expand_as(pos)
            self.cal += bin_update(probs.reshape(-1), pos.reshape(-1), w.reshape(-1), self.calibration_bins)
        hist_update(self.hist, to_logit(s, self.task, self.input), pos, valid, self.bin_range)

    def update(self, scores: Tensor, target: Tensor, video_ids: Optional[Tensor] = None, clip_ids: Optional[Tensor] = None) -> None:
        if self.video_reduction is not None and video_ids is None:
            raise ValueError("`video_ids` is required when `video_reduction` is set")
        self._append(scores, target, video_ids, clip_ids)

    # ------------------------------------------------------------------------------ compute
    def compute(self) -> Dict[str, Tensor]:
        return self._evaluate(detail=False)[0]

    def report(self) -> SuiteReport:
        """Scalars plus everything plots, callbacks and the CLI need, for both levels (synced)."""
        out, clip, video, coverage = self._synced(lambda: self._evaluate(detail=True))
        return SuiteReport(self.task, self.num_classes, self.class_names, {k: float(v) for k, v in out.items()},
                           clip, video, coverage, self.video_reduction)

    def _evaluate(self, detail: bool):
        if self.bins is not None:
            if self.id_registry is not None:
                self.id_registry.check()
            self._check_rows()
            clip = _HistLevel(self)
            out = {f"clip/{k}": v for k, v in clip.scalars().items()}
            return (out, None, None, None) if not detail else (out, clip.report(), None, None)
        s, t, vid, dropped = self._rows()
        clip = _Level(self, "clip", None)
        clip.from_clips(s, t)
        out = {f"clip/{k}": v for k, v in clip.scalars().items()}
        video = coverage = None
        if self.video_reduction is not None:
            agg = self._aggregate(s, t, vid, dropped, self.video_reduction)
            coverage = agg.coverage
            video = _Level(self, "video", self.video_reduction, missing=coverage.missing_videos if self.missing == "count_as_wrong" else 0)
            video.from_videos(agg)
            out.update({f"video/{k}": v for k, v in video.scalars().items()})
            out["video/num_videos"] = torch.tensor(float(coverage.num_videos), dtype=torch.float64)
            out["video/num_clips"] = torch.tensor(float(coverage.num_clips), dtype=torch.float64)
            if self.expected_video_ids is not None:
                out["video/missing_videos"] = torch.tensor(float(coverage.missing_videos), dtype=torch.float64)
            if self.preset == "kinetics" and 1 in self.top_k and 5 in self.top_k:
                out["video/challenge_score"] = 1.0 - (out["video/top1"] + out["video/top5"]) / 2
        if not detail:
            return out, None, None, None
        return out, clip.report(), (video.report() if video is not None else None), coverage


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


class _Level:
    """Metrics of one level from its probabilities, ranking scores and prediction key."""

    def __init__(self, suite: VideoClassificationMetrics, level: str, reduction: Optional[str], missing: int = 0) -> None:
        self.suite, self.level, self.reduction, self.missing = suite, level, reduction, missing
        self.task, self.c = suite.task, suite.num_classes

    def from_clips(self, s: Tensor, t: Tensor) -> None:
        su = self.suite
        if self.task == "multiclass":
            logp = s.log_softmax(1) if su.input == "logits" else s.log()
            self.probs, self.rank, self.key = probabilities(s, self.task, su.input), logp, s
        else:
            self.probs = s.sigmoid() if su.input == "logits" else s
            self.rank, self.key = s, s
        self.target = t

    def from_videos(self, agg: AggregatedVideos) -> None:
        self.probs, self.rank, self.key, self.target = agg.scores, agg.rank, agg.key, agg.target

    def scalars(self) -> Dict[str, Tensor]:
        if not hasattr(self, "_scalars"):
            self._scalars = self._compute()
        return self._scalars

    def _compute(self) -> Dict[str, Tensor]:
        su, c = self.suite, self.c
        keys = keys_for(self.task, su.top_k, self.reduction)
        out: Dict[str, Tensor] = {}
        dev = self.key.device
        n = self.key.shape[0]
        ones = torch.ones(n, dtype=torch.bool, device=dev)
        if self.task == "multiclass":
            t = self.target
            pos = torch.zeros(n, c, dtype=torch.bool, device=dev)
            pos[torch.arange(n, device=dev), t] = True
            rank_t = target_rank(self.key, t)
            support = scatter_count(t, ones, c)
            for k in su.top_k:
                hit = rank_t < k
                out[f"top{k}"] = hit.sum().double() / (n + self.missing)
                per = safe_div(scatter_count(t, hit, c), support)
                out[f"mean_class_top{k}"] = per[support > 0].mean()
            pred = self.key.argmax(1)
            cm = confusion_counts(pred, t, ones, c)
            tp, pc = cm.diagonal(), cm.sum(0)
            self.cm, self.tp, self.pc, self.support = cm, tp, pc, support
            out["balanced_acc"] = safe_div(tp, support)[support > 0].mean()
            out.update(_prf_scalars(tp, pc, support, ("macro", "micro", "weighted"), (support > 0) | (pc > 0)))
            self.pos = pos
            if "auroc_macro" in keys:
                ap, auc, npos = exact_ap_auroc(self.rank, target=t)
                self.ap = ap
                out["auroc_macro"] = reduce_classes(auc, (npos > 0) & (npos < n), "macro", su.empty_class)
                out["auprc_macro"] = reduce_classes(self._ap(ap, pos), npos > 0, "macro", su.empty_class)
            if "ece" in keys:
                conf = self.probs.gather(1, pred[:, None]).squeeze(1)
                self.bins = bin_update(conf, pred == t, ones, su.calibration_bins)
                out["ece"] = calibration_error(self.bins, "l1")
                out["mce"] = calibration_error(self.bins, "max")
                out["nll"] = -self.rank.gather(1, t[:, None]).double().mean()
                out["brier"] = ((self.probs.double() - pos.double()) ** 2).sum(1).mean()
        else:
            pos = self.target.bool()
            self.pos = pos
            ap, auc, npos = exact_ap_auroc(self.rank, pos)
            ap = self._ap(ap, pos)
            self.ap = ap
            out["mAP"] = reduce_classes(ap, npos > 0, "macro", su.empty_class)
            out["mAP_weighted"] = reduce_classes(ap, npos > 0, "weighted", su.empty_class, npos)
            flat_ap, _, _ = exact_ap_auroc(self.rank.reshape(-1, 1), pos.reshape(-1, 1))
            out["mAP_micro"] = flat_ap[0]
            out["auroc_macro"] = reduce_classes(auc, (npos > 0) & (npos < n), "macro", su.empty_class)
            pred = self.probs > su.threshold
            tp, fp, fn = multilabel_counts(pred, pos, ones)
            self.tp, self.pc, self.support = tp, tp + fp, tp + fn
            out.update(_prf_scalars(tp, tp + fp, tp + fn, ("macro", "micro")))
            if "ece" in keys:
                self.bins = bin_update(self.probs.reshape(-1), pos.reshape(-1), torch.ones_like(pos.reshape(-1)), su.calibration_bins)
                out["ece"] = calibration_error(self.bins, "l1")
        return {k: out[k].double() for k in keys}

    def _ap(self, step_ap: Tensor, pos: Tensor) -> Tensor:
        if self.suite.ap_mode == "step":
            return step_ap
        return average_precision(ranking_curves(self.rank, pos), self.suite.ap_mode)

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
        if self.task == "multiclass":
            rep.confusion = self.cm
            rep.top_confusions = top_confusions(self.cm, 20)
        else:
            micro = _downsample(pr_curves(ranking_curves(self.rank.float().reshape(-1, 1), self.pos.reshape(-1, 1))), max_points)
            rep.pr_micro = (micro.precision[0], micro.recall[0], scalars["mAP_micro"])
            rep.pr_counts = threshold_counts(self.probs, self.pos, 101)
        return rep


class _HistLevel:
    """Clip-level metrics of histogram mode, from the suite's summed states (same keys and
    definitions as :class:`_Level`; AP/AUROC/PR curves from the score histograms)."""

    def __init__(self, suite: VideoClassificationMetrics) -> None:
        self.suite, self.task, self.c = suite, suite.task, suite.num_classes
        self.hist = hist_view(suite.hist, suite.num_classes, suite.bins)
        self.ap, self.auc, self.npos, self.nneg = hist_ap_auroc(self.hist)
        self.n = int(suite.n_rows)

    def scalars(self) -> Dict[str, Tensor]:
        if not hasattr(self, "_scalars"):
            self._scalars = self._compute()
        return self._scalars

    def _compute(self) -> Dict[str, Tensor]:
        su, c, n = self.suite, self.c, self.n
        keys = keys_for(self.task, su.top_k, None)
        out: Dict[str, Tensor] = {}
        defined_auc = (self.npos > 0) & (self.nneg > 0)
        if self.task == "multiclass":
            cm = su.cm
            self.tp, self.pc, self.support = cm.diagonal(), cm.sum(0), cm.sum(1)
            for i, k in enumerate(su.top_k):
                out[f"top{k}"] = su.topk_hits[i].sum().double() / n
                per = safe_div(su.topk_hits[i], self.support)
                out[f"mean_class_top{k}"] = per[self.support > 0].mean()
            out["balanced_acc"] = safe_div(self.tp, self.support)[self.support > 0].mean()
            out.update(_prf_scalars(self.tp, self.pc, self.support, ("macro", "micro", "weighted"),
                                    (self.support > 0) | (self.pc > 0)))
            out["auroc_macro"] = reduce_classes(self.auc, defined_auc, "macro", su.empty_class)
            out["auprc_macro"] = reduce_classes(self.ap, self.npos > 0, "macro", su.empty_class)
            out["ece"] = calibration_error(su.cal, "l1")
            out["mce"] = calibration_error(su.cal, "max")
            out["nll"] = su.loss_sums[0] / n
            out["brier"] = su.loss_sums[1] / n
        else:
            tp, fp, fn = su.ml_counts
            self.tp, self.pc, self.support = tp, tp + fp, tp + fn
            out["mAP"] = reduce_classes(self.ap, self.npos > 0, "macro", su.empty_class)
            out["mAP_weighted"] = reduce_classes(self.ap, self.npos > 0, "weighted", su.empty_class, self.npos)
            out["mAP_micro"] = hist_ap_auroc(self.hist.sum(0, keepdim=True))[0][0]
            out["auroc_macro"] = reduce_classes(self.auc, defined_auc, "macro", su.empty_class)
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
