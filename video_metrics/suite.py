"""Clip -> video aggregation (:class:`VideoAggregator`) and the one-object evaluation suite
(:class:`VideoClassificationMetrics`).

State: one row per clip — its scores (fp32, ``C`` values), target, ``video_id``, ``clip_id``
and a validity flag — kept as concatenated states, i.e. about ``N * (4*C + 25)`` bytes for N
clips (multilabel targets add ``N * C`` bytes): 30,000 clips x 400 classes is 49 MB. Video-level
aggregation needs those per-clip rows, because clips of one video may sit on different processes
and padding duplicates can only be recognised once everything is gathered. ``update()`` only
validates on the device and appends; ``compute()`` gathers all rows in one packed sync (at most
three collectives for everything), drops repeated ``(video_id, clip_id)`` pairs, then computes
clip- and video-level metrics with the same kernels as the single metric classes. With
``shard_classes`` (default ``"auto"``: large states) ``compute()`` under DDP splits the classes
across ranks instead (:mod:`video_metrics.sharded`: per-rank memory ~ ``N * C / world``).

Without ``clip_ids``, each row counts as its own clip and padding duplicates (the
``DistributedSampler`` repeats up to ``world_size - 1`` samples) cannot be removed: pass clip ids
(e.g. the dataset index of the view), or evaluate with an unpadded sampler.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .functional.checks import Layout, check_choice, check_device, check_ids, check_probability
from .functional.calibration import bin_update
from .functional.classification import (
    binary_losses,
    confusion_counts,
    log_softmax_rows,
    multilabel_counts,
    prepare_rows,
    probabilities,
    scatter_count,
    target_rank,
)
from .functional.histogram import DEFAULT_RANGE, hist_state, hist_update, to_logit
from .ids import IdRegistry, id_tensor
from .levels import HistLevel, Level, LevelReport, add_video_counts, block_sizes, clean_json, keys_for  # noqa: F401 (keys_for: re-exported)
from . import bootstrap as _bootstrap
from . import sharded as _sharded
from . import slices as _slices
from . import views as _views
from .config import SuiteConfig
from .metrics.base import VideoMetric
from .functional.aggregation import (AggregatedVideos, Coverage, RowStore, aggregate_rows, check_expected_clips,
                                     check_reduction, kept_rows, same_rows_in)
from .videos import EvalContext
from .functional.rank_metrics import check_bins

__all__ = ["VideoAggregator", "AggregatedVideos", "Coverage", "VideoClassificationMetrics", "SuiteReport", "LevelReport",
           "PRESETS"]

MISSING = ("ignore", "count_as_wrong")


def _id_tuple(ids: Optional[Tensor]) -> Optional[Tuple[int, ...]]:
    return None if ids is None else tuple(int(i) for i in ids.tolist())


class _ClipRows(VideoMetric):
    """Per-clip rows with device-side validation; shared by the aggregator and the suite."""

    def __init__(self, num_classes: Optional[int], task: str, input: str, expected_video_ids: Optional[Sequence[int]] = None,
                 missing: str = "ignore", expected_clips: Optional[int] = None,
                 id_registry: Optional[IdRegistry] = None, keep_rows: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep_rows = keep_rows
        # binary rows are kept as one multilabel column (the positive class)
        self._layout = Layout.of(num_classes, task, input)
        self.num_classes, self._task, self._c = self._layout.num_classes, self._layout.rows_task, self._layout.columns
        check_choice("missing", missing, MISSING)
        check_expected_clips(expected_clips)
        self.task, self.input, self.missing, self.expected_clips = task, input, missing, expected_clips
        self.expected_video_ids = None if expected_video_ids is None else torch.as_tensor(list(expected_video_ids), dtype=torch.long)
        self.id_registry = id_registry
        if keep_rows:
            self.add_row_states(self._c, self._task)
            self.add_cat_state("video_ids", torch.long, ())
            self.add_cat_state("clip_ids", torch.long, ())
        self.add_sum_state("n_seen", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_with_clip_ids", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_with_video_ids", torch.zeros((), dtype=torch.long))
        if input == "logits":
            self.add_sum_state("n_prob_like", torch.zeros((), dtype=torch.long))

    def _append(self, scores: Tensor, target: Tensor, video_ids: Optional[Tensor], clip_ids: Optional[Tensor]) -> None:
        video_ids = id_tensor(video_ids, "video_ids")
        clip_ids = id_tensor(clip_ids, "clip_ids")
        scores, target = self._layout.batch(scores, target)
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
        s, t, valid, bad_t, bad_s, prob_like = prepare_rows(scores, target, self._task, self.input, self._c)
        self._count_prob_like(prob_like)
        dev = scores.device
        # placeholders for missing ids: rows are deduplicated only when clip ids were given for
        # every batch (see _rows), and grouped by video only when video ids were
        vid = video_ids.long() if video_ids is not None else torch.full((n,), -1, dtype=torch.long, device=dev)
        cid = clip_ids.long() if clip_ids is not None else torch.full((n,), -1, dtype=torch.long, device=dev)
        self.scores.append(s)
        self.target.append(t if self._task == "multiclass" else t.bool())
        self.video_ids.append(vid)
        self.clip_ids.append(cid)
        self.valid.append(valid)
        self.n_seen += n
        if clip_ids is not None:
            self.n_with_clip_ids += n
        if video_ids is not None:
            self.n_with_video_ids += n
        self._count_rows(valid, bad_t, bad_s)

    def _count_prob_like(self, prob_like: Tensor) -> None:
        if self.input == "logits":
            self.n_prob_like += prob_like

    def id_counts(self) -> Tuple[int, int, int]:
        """``(rows seen, rows with clip ids, rows with video ids)`` (synced inside ``compute()``)."""
        return int(self.n_seen), int(self.n_with_clip_ids), int(self.n_with_video_ids)

    def kept_rows(self):
        """Valid rows after the sync, padding duplicates removed when clip ids were given.
        Returns ``(rows, target, video_ids, n_dropped)``: ``rows`` a :class:`RowStore` over the
        stored score chunks (no copy of every row), the others for the kept rows in row order."""
        if self.id_registry is not None:
            self.id_registry.check()
        self._check_rows()
        valid = self._cat("valid")
        t, vid, cid = self._cat("target"), self._cat("video_ids"), self._cat("clip_ids")
        chunks = self.scores if isinstance(self.scores, list) else [self.scores]
        keep, dropped = kept_rows(self.id_counts(), valid, vid, cid, same_rows_in(chunks, t), self.id_registry)
        if not bool(keep.all()):
            t, vid = t[keep], vid[keep]
        rows = RowStore(chunks, keep, self._c, block_sizes(int(keep.sum()), self._c)[0])
        return rows, t, vid, dropped

    def _aggregate(self, rows: RowStore, t: Tensor, vid: Tensor, dropped: int, reduction: str,
                   full: bool = True, workspace=None) -> "AggregatedVideos":
        return aggregate_rows(rows, t, vid, dropped, self._task, self.input, reduction, self.expected_video_ids,
                                self.expected_clips, full=full, workspace=workspace)


class VideoAggregator(_ClipRows):
    """Aggregate clip scores into video scores, exactly and independently of world size, batch
    size, order and sampler padding.

    ``update(scores, target, video_ids, clip_ids=None)``: int64 ids on the scores' device (use
    :class:`~video_metrics.ids.IdRegistry` for string ids). Repeated ``(video_id, clip_id)``
    pairs count once. Clips of one video with different targets are reported at ``compute()``.
    ``reduction`` is one of ``mean_logits``, ``mean_probs``, ``max``, ``vote`` (see
    :mod:`video_metrics.functional.aggregation`). ``compute()`` returns :class:`AggregatedVideos`.

    >>> import torch
    >>> import video_metrics as vm
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 3.0]])
    >>> agg = vm.VideoAggregator(2, reduction="mean_probs")
    >>> agg.update(logits, torch.tensor([0, 0, 1, 1]), torch.tensor([7, 7, 9, 9]), torch.tensor([0, 1, 0, 0]))
    >>> videos = agg.compute()  # (9, 0) twice: a padding duplicate, counted once
    >>> videos.video_ids.tolist(), videos.num_clips.tolist(), videos.coverage.duplicates_dropped
    ([7, 9], [2, 1], 1)
    """

    higher_is_better = None

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", reduction: str = "mean_probs", input: str = "logits",
                 expected_video_ids: Optional[Sequence[int]] = None, missing: str = "ignore",
                 expected_clips: Optional[int] = None, id_registry: Optional[IdRegistry] = None, **kwargs: Any) -> None:
        super().__init__(num_classes, task, input, expected_video_ids, missing, expected_clips, id_registry, **kwargs)
        check_reduction(reduction, task, input)
        self.reduction = reduction
        self.config = SuiteConfig(task, self.num_classes, input, video_reduction=reduction, missing=missing,
                                  expected_video_ids=_id_tuple(self.expected_video_ids), expected_clips=expected_clips)

    def update(self, scores: Tensor, target: Tensor, video_ids: Tensor, clip_ids: Optional[Tensor] = None) -> None:
        """Add clip rows with their video ids (and clip ids); free checks raise at once."""
        if video_ids is None:
            raise ValueError("`video_ids` is required by VideoAggregator")
        self._append(scores, target, video_ids, clip_ids)

    def compute(self) -> AggregatedVideos:
        """The :class:`~video_metrics.functional.aggregation.AggregatedVideos` of every kept row, synced."""
        return self._aggregate(*self.kept_rows(), self.reduction)

    def plot(self, val: Optional[AggregatedVideos] = None, ax: Any = None):
        """Histogram of the video-level confidence (the top score of each video), right and wrong
        videos stacked: how sure the aggregated predictions are. ``(fig, ax)`` as torchmetrics."""
        from .metrics.draw import figure_and_axes

        agg = self.compute() if val is None else val
        fig, ax = figure_and_axes(ax, 6.4, 4.8)
        conf, pred = agg.scores.max(1)
        if self.task == "multiclass":
            right = pred == agg.target
        else:
            right = ((agg.scores > 0.5) == agg.target.bool()).all(1)
        c = conf.double().cpu().numpy()
        r = right.cpu().numpy()
        ax.hist([c[r], c[~r]], bins=20, range=(0, 1), stacked=True, label=["right", "wrong"],
                color=["tab:blue", "tab:red"])
        ax.set_xlabel("video confidence (top score)")
        ax.set_ylabel("videos")
        ax.set_title(f"{agg.coverage.num_videos} videos, reduction {self.reduction}")
        ax.legend(fontsize=8)
        return fig, ax


# ----------------------------------------------------------------------------------- the suite
PRESETS: Dict[str, Dict[str, Any]] = {
    # Kinetics: video-level top-1/top-5 of mean clip scores; a video with no prediction is a miss;
    # challenge score = mean of top-1 and top-5 error.
    "kinetics": {"task": "multiclass", "top_k": (1, 5), "video_reduction": "mean_logits", "missing": "count_as_wrong"},
    # Charades: multi-label, max over clips, mAP over classes with a positive, class-size weighted mAP.
    "charades": {"task": "multilabel", "video_reduction": "max", "empty_class": "skip"},
}

@dataclass
class Evaluation:
    """The suite's rows evaluated once (:meth:`VideoClassificationMetrics.evaluation`): the scalar
    keys, the levels, the video coverage, and — by mode — the kept rows for the analyses
    (``context``) and each level's report."""

    scalars: Dict[str, Tensor]
    clip: Any
    video: Optional[Level] = None
    coverage: Optional[Coverage] = None
    context: Optional[EvalContext] = None
    clip_report: Optional[LevelReport] = None
    video_report: Optional[LevelReport] = None


@dataclass
class SuiteReport:
    """What :meth:`VideoClassificationMetrics.report` returns: scalars (the ``compute()``
    dict), one :class:`LevelReport` per level, coverage and class names. ``to_dict()`` is
    JSON-serialisable and small (per-class vectors, bins, top confusions; no per-clip arrays,
    no curves).

    >>> import video_metrics as vm
    >>> from video_metrics.data.predictions import synthetic_predictions
    >>> p = synthetic_predictions(num_videos=40, clips_per_video=3, num_classes=5, seed=1)
    >>> suite = vm.VideoClassificationMetrics(5, video_reduction="mean_logits")
    >>> suite.update(p.scores, p.target, p.video_ids, p.clip_ids)
    >>> report = suite.report()
    >>> round(report.scalars["video/top1"], 4), len(report.video.f1), report.video.support
    (0.75, 5, [12, 11, 3, 6, 8])
    """

    task: str
    num_classes: int
    class_names: List[str]
    scalars: Dict[str, float]
    clip: Optional[LevelReport]
    video: Optional[LevelReport]
    coverage: Optional[Coverage]
    video_reduction: Optional[str]
    #: ``bootstrap > 0``: ``{key: (low, high)}`` percentile intervals of every scalar key but the counts
    intervals: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    #: ``slices``/``class_frequency``/``class_slices``: one :class:`~video_metrics.slices.SliceResult` each
    slices: List[Any] = field(default_factory=list)
    ci: Optional[float] = None
    #: set by ``video-metrics report --fit-temperature``: a TemperatureFit's ``to_dict()``
    temperature: Optional[Dict[str, Any]] = None
    #: multiclass with video and clip ids: a :class:`~video_metrics.views.ViewsReport`
    views: Optional[Any] = None
    #: what a row is: "clips", or e.g. "videos as aggregated by mmaction2" (then ``clip`` is None)
    rows: str = "clips"

    def __repr__(self) -> str:
        """A short table (clip and video columns, intervals when bootstrapped), not every field."""
        from .tables import format_table

        what = f"{self.task}, {self.num_classes} classes" + (f", video reduction {self.video_reduction}"
                                                             if self.video is not None else "")
        extra = [f"{len(self.slices)} slice(s)"] if self.slices else []
        extra += ["temperature fit"] if self.temperature else []
        extra += ["views"] if self.views is not None else []
        more = f"; also {', '.join(extra)} (see .to_dict())" if extra else ""
        return f"SuiteReport({what}{more})\n" + format_table(self.scalars, self.intervals)

    __str__ = __repr__

    def to_dict(self) -> Dict[str, Any]:
        """The report as JSON-ready values (what ``metrics.json`` holds)."""
        return {
            "task": self.task, "num_classes": self.num_classes, "class_names": self.class_names,
            "video_reduction": self.video_reduction, "scalars": clean_json(self.scalars), "rows": self.rows,
            "clip": None if self.clip is None else self.clip.to_dict(),
            "video": None if self.video is None else self.video.to_dict(),
            "coverage": None if self.coverage is None else asdict(self.coverage),
            "ci": self.ci, "intervals": {k: clean_json(list(v)) for k, v in self.intervals.items()},
            "slices": [x.to_dict() for x in self.slices], "temperature": self.temperature,
            "views": None if self.views is None else self.views.to_dict(),
        }


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

    Options of other projects' protocols:

    * ``task="binary"``: scores ``(N,)`` of the positive class, targets ``(N,)`` in {0, 1} (a
      video-level question such as "is the action present?"); keys ``acc``, ``balanced_acc``,
      ``precision``, ``recall``, ``f1`` (positive class, ``p > threshold``), ``ap``, ``auroc``,
      ``ece``/``mce`` (of P(y=1)), ``nll`` (binary cross-entropy), ``brier``;
    * ``predicted_absent``: ``"ignore"`` (default, sklearn) or ``"zero"`` (mmaction2's
      ``mean_class_accuracy``: a class predicted but never a target counts 0) for
      ``balanced_acc`` and ``mean_class_top1``;
    * ``ap_empty_class`` / ``auroc_empty_class``: the empty-class policy of AP (``mAP*``,
      ``auprc_macro``, ``ap``) and of AUROC separately (default: ``empty_class``); torchmetrics
      skips empty classes in AP but counts them 0 in AUROC (``ap_empty_class="skip",
      auroc_empty_class="zero"``);
    * ``empty_videos``: ``"keep"`` (default; PySlowFast: videos with no positive label stay in the
      ranking as negatives) or ``"exclude"`` (the official Charades script: they leave the
      ranking) for multilabel ``mAP`` and ``mAP_weighted``.

    Decision support (exact mode; computed by :meth:`report`, never by ``compute()``):

    * ``bootstrap=B``, ``ci``, ``bootstrap_unit`` (``"video"``; ``"clip"`` only without video ids:
      clips of one video are correlated, so clip resampling is too narrow), ``seed``:
      ``report().intervals`` (:mod:`video_metrics.bootstrap`);
    * ``slices=("participant", ...)`` with ``update(..., groups=...)``, ``class_frequency`` /
      ``frequency_thresholds`` (many/medium/few), ``class_slices``, ``min_slice_size``:
      ``report().slices`` (:mod:`video_metrics.slices`);
    * two suites on the same videos: :func:`video_metrics.compare`.

    ``shard_classes``: ``"auto"`` / ``True`` / ``False``, class-sharded ``compute()`` under DDP
    (:mod:`video_metrics.sharded`).

    >>> import video_metrics as vm
    >>> from video_metrics.data.predictions import synthetic_predictions
    >>> p = synthetic_predictions(num_videos=40, clips_per_video=3, num_classes=5, seed=1)
    >>> suite = vm.VideoClassificationMetrics(5, top_k=(1, 3), video_reduction="mean_logits")
    >>> suite.update(p.scores, p.target, p.video_ids, p.clip_ids)
    >>> out = suite.compute()
    >>> round(float(out["clip/top1"]), 4), round(float(out["video/top1"]), 4), int(out["video/num_videos"])
    (0.6417, 0.75, 40)
    """

    higher_is_better = None

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", top_k: Optional[Sequence[int]] = None,
                 video_reduction: Optional[str] = None, calibration_bins: int = 15, empty_class: str = "skip",
                 input: str = "logits", class_names: Optional[Sequence[str]] = None,
                 expected_video_ids: Optional[Sequence[int]] = None, missing: str = "ignore",
                 expected_clips: Optional[int] = None, ap_mode: str = "step", preset: Optional[str] = None,
                 threshold: float = 0.5, id_registry: Optional[IdRegistry] = None, bins: Optional[int] = None,
                 bin_range: float = DEFAULT_RANGE, compile_update: Any = False, predicted_absent: str = "ignore",
                 ap_empty_class: Optional[str] = None, auroc_empty_class: Optional[str] = None,
                 empty_videos: str = "keep", bootstrap: int = 0, ci: float = 0.95, bootstrap_unit: str = "video",
                 seed: int = 0, slices: Sequence[str] = (), class_frequency: Optional[Sequence[int]] = None,
                 frequency_thresholds: Tuple[int, int] = (20, 100), class_slices: Optional[Dict[str, Sequence[int]]] = None,
                 min_slice_size: int = 30, shard_classes: Any = "auto", **kwargs: Any) -> None:
        check_choice("preset", preset, (None,) + tuple(PRESETS))
        _bootstrap.check_bootstrap(bootstrap, ci, bootstrap_unit, seed)
        check_choice("shard_classes", shard_classes, ("auto", True, False))
        check_bins(bins, bin_range)
        task, top_k, video_reduction, missing, empty_class = _apply_preset(preset, task, top_k, video_reduction,
                                                                           missing, empty_class)
        _check_exact_mode(bins, bootstrap, ap_mode, video_reduction)
        super().__init__(num_classes, task, input, expected_video_ids, missing, expected_clips, id_registry,
                         keep_rows=bins is None, **kwargs)
        self.bootstrap, self.ci, self.bootstrap_unit, self.seed = bootstrap, float(ci), bootstrap_unit, seed
        self.shard_classes, self.bins, self.bin_range = shard_classes, bins, float(bin_range)
        self.slices, self.class_sets, self.min_slice_size = _slices.check_slices(
            task, self.num_classes, slices, class_frequency, frequency_thresholds, class_slices, min_slice_size, bins)
        if self.slices:
            self.add_cat_state("groups", torch.long, (len(self.slices),))
        self.compile_update, self._compiled = _compile_options(compile_update, bins), None
        self.top_k = _check_top_k(top_k, task, self.num_classes)
        _check_policies(task, input, video_reduction, empty_class, ap_empty_class, auroc_empty_class, predicted_absent,
                        empty_videos, threshold, ap_mode, calibration_bins, class_names, self.num_classes)
        self.predicted_absent, self.empty_videos = predicted_absent, empty_videos
        self.ap_empty_class = ap_empty_class or empty_class
        self.auroc_empty_class = auroc_empty_class or empty_class
        self.video_reduction, self.calibration_bins, self.empty_class = video_reduction, calibration_bins, empty_class
        self.ap_mode, self.preset = ap_mode, preset
        self.threshold = float(threshold)
        default_names = ["positive"] if task == "binary" else [str(i) for i in range(self.num_classes)]
        self.class_names = list(class_names) if class_names is not None else default_names
        if bins is not None:
            self._add_histogram_states(bins, calibration_bins)
        self.config = SuiteConfig(
            task, self.num_classes, input, self.top_k, video_reduction, calibration_bins, self.threshold, ap_mode,
            self.ap_empty_class, self.auroc_empty_class, predicted_absent, empty_videos, preset, self.missing,
            _id_tuple(self.expected_video_ids), expected_clips, bootstrap, self.ci, bootstrap_unit, seed, self.slices,
            self.class_sets, self.min_slice_size, bins, self.bin_range, tuple(self.class_names))

    def _add_histogram_states(self, bins: int, calibration_bins: int) -> None:
        c = self._c
        self.add_sum_state("hist", hist_state(c, bins))
        self.add_sum_state("cal", torch.zeros(3, calibration_bins, dtype=torch.float64))
        if self.task == "multiclass":
            self.add_sum_state("cm", torch.zeros(c, c, dtype=torch.long))
            self.add_sum_state("topk_hits", torch.zeros(len(self.top_k), c, dtype=torch.long))
        else:
            self.add_sum_state("ml_counts", torch.zeros(3, c, dtype=torch.long))
        if self.task != "multilabel":
            self.add_sum_state("loss_sums", torch.zeros(2, dtype=torch.float64))  # nll, brier

    def _stream_step(self, scores: Tensor, target: Tensor) -> None:
        """Histogram mode: validate on the device and add the batch to the summed states. Pure
        tensor code with static shapes, no host sync: ``torch.compile(fullgraph=True)`` traces it
        whole (``compile_update``), and on CUDA ``mode="reduce-overhead"`` replays it as a CUDA graph."""
        s, t, valid, bad_t, bad_s, prob_like = prepare_rows(scores, target, self._task, self.input, self._c)
        self._count_prob_like(prob_like)
        self._accumulate(s, t, valid)
        self.n_seen += scores.shape[0]
        self._count_rows(valid, bad_t, bad_s)

    def _accumulate(self, s: Tensor, t: Tensor, valid: Tensor) -> None:
        """Histogram mode: add a batch's sufficient statistics (no host sync)."""
        c = self._c
        probs = probabilities(s, self._task, self.input)
        if self._task == "multiclass":
            pos = torch.nn.functional.one_hot(t, c).bool()
            pred = s.argmax(1)
            self.cm += confusion_counts(pred, t, valid, c)
            rank_t = target_rank(s, t)
            self.topk_hits += torch.stack([scatter_count(t, (rank_t < k) & valid, c) for k in self.top_k])
            conf = probs.gather(1, pred[:, None]).squeeze(1)
            self.cal += bin_update(conf, pred == t, valid, self.calibration_bins)
            logp = log_softmax_rows(s) if self.input == "logits" else s.log()
            nll = -logp.gather(1, t[:, None]).squeeze(1).double()
            brier = ((probs.double() - pos.double()) ** 2).sum(1)
            zero = torch.zeros_like(nll)
            self.loss_sums += torch.stack([torch.where(valid, nll, zero).sum(), torch.where(valid, brier, zero).sum()])
        else:
            pos = t.bool()
            self.ml_counts += multilabel_counts(probs > self.threshold, pos, valid)
            w = valid[:, None].expand_as(pos)
            self.cal += bin_update(probs.reshape(-1), pos.reshape(-1), w.reshape(-1), self.calibration_bins)
            if self.task == "binary":  # binary cross-entropy and Brier score of P(y=1)
                nll, brier = binary_losses(pos[:, 0], probs[:, 0], s[:, 0] if self.input == "logits" else None)
                zero = torch.zeros_like(nll)
                self.loss_sums += torch.stack([torch.where(valid, nll, zero).sum(), torch.where(valid, brier, zero).sum()])
        hist_update(self.hist, to_logit(s, self._task, self.input), pos, valid, self.bin_range)

    def update(self, scores: Tensor, target: Tensor, video_ids: Optional[Tensor] = None, clip_ids: Optional[Tensor] = None,
               groups: Optional[Tensor] = None) -> None:
        """``groups``: the integer group columns named by ``slices``, ``(N,)`` for one name or
        ``(N, G)``; required when ``slices`` is set."""
        if self.video_reduction is not None and video_ids is None:
            raise ValueError("`video_ids` is required when `video_reduction` is set")
        groups = _slices.check_groups(groups, self.slices, scores)
        self._append(scores, target, video_ids, clip_ids)
        if groups is not None:
            self.groups.append(groups)

    # ------------------------------------------------------------------------------ compute
    def compute(self) -> Dict[str, Tensor]:
        """Every key (``clip/...``, ``video/...``) as float64 scalars, synced; raises for bad rows or no data."""
        if getattr(self, "_sharded", False):  # under DDP, classes split across ranks (video_metrics.sharded)
            return _sharded.evaluate(self.config, self._rank_rows(), self._shard_group)
        return self.evaluation("scalars").scalars

    def _wrap_compute(self, compute):
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def in_compute(*args: Any, **kwargs: Any) -> Any:
            self._in_compute = True
            try:
                return wrapped(*args, **kwargs)
            finally:
                self._in_compute = self._sharded = False

        return in_compute

    def _sync_rows(self, names, group) -> None:
        """``compute()`` under DDP with ``shard_classes``: the rows stay on their rank (the sums are
        already all-reduced); :mod:`video_metrics.sharded` exchanges class shards."""
        if (getattr(self, "_in_compute", False) and self.shard_classes is not False and self.keep_rows
                and _sharded.should_shard(self.config, self.shard_classes, int(self.n_seen), group)):
            self._sharded, self._shard_group = True, group
            return
        self._sync_cats(names, group)

    def _rank_rows(self) -> "_sharded.RankRows":
        """This rank's rows for the class-sharded compute (after the summed states' checks, which
        raise on every rank alike)."""
        if self.id_registry is not None:
            self.id_registry.check()
        self._check_rows()
        chunks = [x for x in (self.scores if isinstance(self.scores, list) else [self.scores]) if x.shape[0]]
        return _sharded.RankRows(chunks, self._cat("target"), self._cat("valid"), self._cat("video_ids"),
                                 self._cat("clip_ids"), self.id_counts(), self.id_registry)

    def report(self) -> SuiteReport:
        """Scalars plus everything plots, callbacks and the CLI need, for both levels (synced)."""
        cfg = self.config

        def run():
            ev = self.evaluation("report")
            ctx = ev.context
            intervals = _bootstrap.intervals_for(cfg, ctx) if self.bootstrap and ctx is not None else {}
            slices = _slices.slice_results(cfg, ctx) if ctx is not None else []
            views = _views.views_report(cfg, ctx) if ctx is not None else None
            return ev, intervals, slices, views

        ev, intervals, slices, views = self.synced(run)
        return SuiteReport(self.task, self.num_classes, self.class_names, {k: float(v) for k, v in ev.scalars.items()},
                           ev.clip_report, ev.video_report, ev.coverage, self.video_reduction, intervals, slices,
                           ci=self.ci if self.bootstrap else None, views=views)

    def fit_temperature(self, level: str = "video"):
        """Temperature scaling at ``level`` (``"clip"``, or ``"video"``: T applied to the clip logits
        before a ``mean_logits``/``mean_probs`` reduction): a
        :class:`~video_metrics.temperature.TemperatureFit` with ``temperature``, NLL and ECE before
        and after, and the cross-fitted ECE (T fitted on half of the videos, ECE on the other)."""
        from . import temperature

        temperature.check_level(self.config, level)
        return self.synced(lambda: temperature.fit(self.config, *self.kept_rows()[:3], level))

    def evaluation(self, mode: str = "scalars") -> "Evaluation":
        """The suite's rows evaluated (call inside :meth:`synced` under DDP): ``mode="scalars"``
        (what ``compute()`` returns; the levels may sort their buffers in place), ``"context"``
        (also the kept rows as an :class:`~video_metrics.videos.EvalContext` for the analyses) or
        ``"report"`` (also each level's :class:`LevelReport`)."""
        cfg = self.config
        if self.bins is not None:
            if self.id_registry is not None:
                self.id_registry.check()
            self._check_rows()
            clip = HistLevel(cfg, self._hist_states())
            out = {f"clip/{k}": v for k, v in clip.scalars().items()}
            return Evaluation(out, clip, clip_report=clip.report() if mode == "report" else None)
        detail = mode != "scalars"
        rows, t, vid, dropped = self.kept_rows()
        clip = Level.of_rows(cfg, "clip", rows, t, detail=detail)
        out = {f"clip/{k}": v for k, v in clip.scalars().items()}
        video = coverage = agg = None
        if self.video_reduction is not None:
            ws = clip.lend_workspace()  # compute(): the video arrays reuse the clip ranking matrix's memory
            agg = self._aggregate(rows, t, vid, dropped, self.video_reduction, full=False, workspace=ws)
            coverage = agg.coverage
            video = Level.of_videos(cfg, self.video_reduction, agg, detail=detail, workspace=ws,
                                    missing=coverage.missing_videos if self.missing == "count_as_wrong" else 0)
            out.update({f"video/{k}": v for k, v in video.scalars().items()})
            add_video_counts(cfg, out, coverage.num_videos, coverage.num_clips, coverage.missing_videos)
        if not detail:
            return Evaluation(out, clip, video, coverage)
        ctx = EvalContext(cfg, rows, t, vid, self._kept_column("clip_ids", rows.mask), dropped,
                          bool(int(self.n_with_video_ids)), clip, video, agg.video_ids if agg is not None else None,
                          self._kept_column("groups", rows.mask) if self.slices else None)
        if mode == "context":
            return Evaluation(out, clip, video, coverage, ctx)
        return Evaluation(out, clip, video, coverage, ctx, clip.report(), video.report() if video is not None else None)

    def _kept_column(self, name: str, mask: Optional[Tensor]) -> Optional[Tensor]:
        """A row state (clip ids, groups) of the kept rows; None for clip ids never given."""
        if name == "clip_ids" and not int(self.n_with_clip_ids):
            return None
        col = self._cat(name)
        return col[mask] if mask is not None else col

    def _hist_states(self) -> Dict[str, Tensor]:
        names = ["hist", "cal", "n_rows"] + (["cm", "topk_hits"] if self._task == "multiclass" else ["ml_counts"])
        names += ["loss_sums"] if self.task != "multilabel" else []
        return {k: getattr(self, k) for k in names}


def _apply_preset(preset, task, top_k, video_reduction, missing, empty_class):
    """The options a preset fixes (an explicit ``video_reduction`` wins)."""
    if preset is None:
        return task, top_k, video_reduction, missing, empty_class
    p = PRESETS[preset]
    return (p.get("task", task), p.get("top_k", top_k),
            p.get("video_reduction", video_reduction) if video_reduction is None else video_reduction,
            p.get("missing", missing), p.get("empty_class", empty_class))


def _check_exact_mode(bins, bootstrap: int, ap_mode: str, video_reduction) -> None:
    if bootstrap and bins is not None:
        raise ValueError("`bootstrap` resamples videos, which needs every clip's row: use exact mode (bins=None)")
    if bootstrap and ap_mode != "step":
        raise ValueError(f"`bootstrap` intervals are computed for step AP; `ap_mode={ap_mode!r}` has none")
    if bins is not None and video_reduction is not None:
        raise ValueError("`bins` (histogram mode) bounds the clip-level state only: video-level aggregation needs "
                         "every clip's scores. Use bins with video_reduction=None, or exact mode (bins=None) with "
                         f"video_reduction={video_reduction!r}")
    if bins is not None and ap_mode != "step":
        raise ValueError(f"`ap_mode={ap_mode!r}` needs exact mode; histogram mode (`bins`) computes step AP")


def _compile_options(compile_update, bins):
    if compile_update and bins is None:
        raise ValueError("`compile_update` needs histogram mode (bins=...): exact mode appends rows of varying "
                         "number, which no graph can capture")
    if compile_update is True:
        return {}
    if isinstance(compile_update, str):
        return {"mode": compile_update}
    if compile_update is not False and not isinstance(compile_update, dict):
        raise ValueError(f"`compile_update` must be False, True, a torch.compile mode or a dict of torch.compile "
                         f"options, got {compile_update!r}")
    return compile_update


def _check_top_k(top_k, task: str, num_classes: int) -> Tuple[int, ...]:
    if top_k is None:  # default: top-1 and, when there are at least 5 classes, top-5
        top_k = (1, 5) if num_classes >= 5 else (1,)
    if isinstance(top_k, int) or any(isinstance(k, bool) or not isinstance(k, int) for k in top_k):
        raise ValueError(f"`top_k` must be a sequence of positive ints, got {top_k!r}")
    top_k = tuple(top_k)
    if task == "multiclass" and (not top_k or any(k < 1 for k in top_k)):
        raise ValueError(f"`top_k` must be positive ints, got {top_k!r}")
    if task == "multiclass" and any(k > num_classes for k in top_k):
        raise ValueError(f"`top_k`={top_k} has k larger than `num_classes`={num_classes}: top-k accuracy "
                         "would count every sample as a hit")
    return top_k if task == "multiclass" else ()


def _check_policies(task, input, video_reduction, empty_class, ap_empty_class, auroc_empty_class, predicted_absent,
                    empty_videos, threshold, ap_mode, calibration_bins, class_names, num_classes) -> None:
    if video_reduction is not None:
        check_reduction(video_reduction, task, input, "video_reduction")
    check_choice("empty_class", empty_class, ("skip", "nan", "zero"))
    check_choice("ap_empty_class", ap_empty_class, (None, "skip", "nan", "zero"))
    check_choice("auroc_empty_class", auroc_empty_class, (None, "skip", "nan", "zero"))
    check_choice("predicted_absent", predicted_absent, ("ignore", "zero"))
    check_choice("empty_videos", empty_videos, ("keep", "exclude"))
    if empty_videos == "exclude" and task != "multilabel":
        raise ValueError(f"`empty_videos='exclude'` (Charades) applies to task='multilabel' mAP, got task={task!r}")
    check_probability("threshold", threshold)
    check_choice("ap_mode", ap_mode, ("step", "interpolated", "voc11"))
    if not isinstance(calibration_bins, int) or calibration_bins < 1:
        raise ValueError(f"`calibration_bins` must be a positive int, got {calibration_bins!r}")
    n_names = 1 if task == "binary" else num_classes
    if class_names is not None and len(class_names) != n_names:
        what = "1 entry (the positive class) for task='binary'" if task == "binary" else f"num_classes={n_names} entries"
        raise ValueError(f"`class_names` must have {what}, got {len(class_names)}")
