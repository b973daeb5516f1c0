"""Ranking metrics: mean average precision, AUROC and per-class PR curves.

Exact mode (default): the state is the scores of every valid row (one ``(N, C)`` fp32 tensor;
memory grows with the number of rows) and the targets; ``compute()`` ranks all classes at once
with the kernels of :mod:`video_metrics.functional.ranking` — no Python loop over classes, no
per-class host sync.

Histogram mode (``bins=B``): the state is ``(C, B, 2)`` int64 counts of positive and negative
scores per class, placed in logit-of-probability space over ``[-bin_range, bin_range]`` (see
:mod:`video_metrics.functional.histogram` for the placement and the error bound); constant
memory, one ``all_reduce``, O(N·C) scatter-add per update. ``AUROC.error_bound()`` gives the
per-class bound on the AUROC error from the state itself.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from ..functional._checks import check_choice
from ..functional.classification import (
    check_row_values,
    multilabel_target_ok,
    log_softmax_rows,
    ranking_scores,
    ranking_to_probability,
)
from ..functional.histogram import (
    DEFAULT_RANGE,
    hist_ap_auroc,
    hist_auroc_bound,
    hist_pr_curves,
    hist_state,
    hist_update,
    hist_view,
    to_logit,
)
from ..functional.ranking import (
    PRCurveData,
    average_precision,
    exact_ap_auroc,
    per_row_ap_auroc,
    transpose_rows,
    pr_curves,
    ranking_curves,
    reduce_classes,
    reduce_pooled,
)
from ._inputs import ScoresMetric

__all__ = ["MeanAveragePrecision", "AUROC", "PRCurve"]

AVERAGES = ("macro", "micro", "weighted", "none", "samples")
EMPTY = ("skip", "nan", "zero")
AP_MODES = ("step", "interpolated", "voc11")


def check_bins(bins: Optional[int], bin_range: float) -> None:
    if bins is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 2):
        raise ValueError(f"`bins` must be None (exact) or an int >= 2, got {bins!r}")
    if not (isinstance(bin_range, (int, float)) and bin_range > 0 and bin_range == bin_range):
        raise ValueError(f"`bin_range` must be a positive number, got {bin_range!r}")


class _RankingMetric(ScoresMetric):
    """Exact (rows kept) or, with ``bins``, histogram mode (see
    :mod:`video_metrics.functional.histogram`): ``(C, bins, 2)`` int64 counts, one ``all_reduce``."""

    def __init__(self, num_classes: Optional[int], task: str, input: str, ignore_index: Optional[int],
                 bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE, average: str = "macro",
                 **kwargs: Any) -> None:
        check_bins(bins, bin_range)
        check_choice("average", average, AVERAGES)
        if average == "samples" and task != "multilabel":
            raise ValueError(f"`average='samples'` (per-sample value over labels, then the mean over samples) needs "
                             f"task='multilabel', got task={task!r}")
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        self.bins, self.bin_range, self.average = bins, float(bin_range), average
        if average == "samples":
            # per-sample values are final at update(): sums of the defined values, their number,
            # and the number of samples where the value is undefined (any mode, O(1) memory)
            self.add_sum_state("sample_sum", torch.zeros((), dtype=torch.float64))
            self.add_sum_state("sample_counts", torch.zeros(2, dtype=torch.long))
        elif bins is None:
            # the rows as given (fp32); ``valid`` holds whether each row's multilabel target is
            # {0, 1}: the other value checks run once over all rows at compute (see _rows_t)
            self.add_row_states(self._c, self._task)
        else:
            self.add_sum_state("hist", hist_state(self._c, bins))

    def update(self, scores: Tensor, target: Tensor) -> None:
        if self.bins is None and self.average != "samples":
            self._append_rows(*self._check_batch(scores, target))
            return
        s, t, valid, counts = self._prepare(scores, target)
        if self.average == "samples":
            value, defined = self._per_sample(s, t.bool())
            use = defined & valid
            self.sample_sum += torch.where(use, value, torch.zeros_like(value)).sum()
            self.sample_counts += torch.stack([use.sum(), (valid & ~defined).sum()])
        else:
            hist_update(self.hist, to_logit(s, self._task, self.input), self._positive(s, t), valid, self.bin_range)
        self._count_rows(*counts)

    def _append_rows(self, scores: Tensor, target: Tensor) -> None:
        """Exact mode: keep the rows as given. Their values are checked once over all rows at
        compute (one pass instead of ten small kernels per batch; still on the device, still
        raised by compute()); only a multilabel target's {0, 1} check runs here, because the
        target is stored as bool."""
        x = scores.float()
        self.scores.append(x.clone() if x is scores else x)
        n = scores.shape[0]
        if self._task == "multiclass":
            self.target.append(target.long().clone() if target.dtype == torch.long else target.long())
            self.valid.append(torch.ones(n, dtype=torch.bool, device=scores.device))
        else:
            self.target.append(target.clone() if target.dtype == torch.bool else target != 0)
            self.valid.append(multilabel_target_ok(target))

    def _samples_mean(self) -> Tensor:
        """``average="samples"``: the mean of the per-sample values; samples where the value is
        undefined follow ``empty_class`` (skip / NaN / count as 0)."""
        n_def, n_undef = self.sample_counts[0], self.sample_counts[1]
        if self.empty_class == "nan" and int(n_undef) > 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.sample_sum.device)
        den = n_def + (n_undef if self.empty_class == "zero" else 0)
        if int(den) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.sample_sum.device)
        return self.sample_sum / den.double()

    def _hist(self, average: str = "macro") -> Tensor:
        h = hist_view(self.hist, self._c, self.bins)
        return h.sum(0, keepdim=True) if average == "micro" else h

    def _rows(self):
        """Valid rows after the sync: ``(ranking scores (N, C), targets)`` — targets are class
        indices (multiclass) or a (N, C) bool matrix (multilabel)."""
        st, t = self._rows_t()
        return st.T, t

    def _rows_t(self):
        """Exact mode, after the sync: check every row's values at once (the counts go to the
        same states, and :meth:`_check_rows` raises as for every metric), then return the valid
        rows as ``(ranking scores (C, N) contiguous, targets)``. The ranking kernels sort each
        class's column; transposing batch by batch is ~3x faster on CPU than concatenating the
        rows and transposing the result."""
        label_ok = self._cat("valid")
        t = self._cat("target")
        mc_logits = self._task == "multiclass" and self.input == "logits"
        stats = []

        def ranking_rows(x: Tensor) -> Tensor:
            # multiclass logits: value checks on the rows as given (the row's min and max see NaN
            # and +-inf; the sum is for the probabilities warning), then the ranking scores, the
            # log-softmax of each row (ranking_scores)
            if x.shape[1]:
                stats.append((x.amin(1), x.amax(1), x.sum(1)))
            return log_softmax_rows(x)

        chunks = self.scores if isinstance(self.scores, list) else [self.scores]
        st = transpose_rows(chunks, self._c, ranking_rows if mc_logits else None)
        if st.device != self.device:
            st = st.to(self.device)
        n = st.shape[1]
        row_sum = None
        if stats:
            lo, hi = torch.cat([a for a, _, _ in stats]), torch.cat([b for _, b, _ in stats])
            row_sum = torch.cat([c for _, _, c in stats])
        elif n and self._c and not mc_logits:
            lo, hi = st.amin(0), st.amax(0)  # the rows are the columns of st
        else:
            lo = hi = row_sum = torch.zeros(n, device=st.device)
        valid, self.n_bad_target, self.n_bad_score, prob_like = check_row_values(
            lo, hi, t, self._task, self.input, self._c, self.ignore_index, label_ok, row_sum,
            count_prob_like=self.input == "logits")
        self.n_rows = valid.sum()
        if self.input == "logits":
            self.n_prob_like = prob_like
        self._check_rows()
        if not bool(valid.all()):
            st, t = st[:, valid].contiguous(), t[valid]
        return st, t

    def _positive(self, s, t):
        if self._task == "multilabel":
            return t.bool()
        pos = torch.zeros(s.shape, dtype=torch.bool, device=s.device)
        pos[torch.arange(t.numel(), device=s.device), t] = True
        return pos


class MeanAveragePrecision(_RankingMetric):
    """Exact average precision, one-vs-rest per class, reduced over classes.

    AP of a class is scikit-learn's ``average_precision_score`` (step AP, tied scores grouped
    into one threshold) with ``ap_mode="step"``; ``"interpolated"`` uses the precision envelope
    (VOC 2010+, ActivityNet) and ``"voc11"`` the VOC 2007 11-point mean.

    ``average``: ``"macro"`` mean over classes, ``"weighted"`` weighted by the number of positives
    (Charades' class-size weighted mAP), ``"micro"`` AP of all (sample, class) pairs pooled,
    ``"none"`` the per-class vector, ``"samples"`` (multilabel) the AP of each sample's ranking of
    the labels, averaged over samples (scikit-learn's ``average="samples"``, mmaction2's
    ``mmit_mean_average_precision``); it is computed batch by batch, so its state is three
    numbers. ``task="binary"``: scores ``(N,)``, the AP of the positive class.

    ``empty_class`` says what to do with classes that have **no positive target**, whose AP is
    undefined: ``"skip"`` (default) leaves them out of the mean — the Charades protocol and what
    PySlowFast, mmaction2 and torchmetrics do; ``"nan"`` makes the mean NaN; ``"zero"`` counts them
    as AP 0 (what ``sklearn.metrics.average_precision_score`` does for multilabel input). With no
    positive at all, ``"weighted"`` and ``"micro"`` give 0 under ``"zero"`` (as scikit-learn) and
    NaN otherwise; with ``"samples"``, a sample without a positive label follows the same policy.
    """

    def __init__(self, num_classes: Optional[int] = None, task: str = "multilabel", average: str = "macro",
                 empty_class: str = "skip", input: str = "logits", ap_mode: str = "step",
                 ignore_index: Optional[int] = None, bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE,
                 **kwargs: Any) -> None:
        check_choice("empty_class", empty_class, EMPTY)
        check_choice("ap_mode", ap_mode, AP_MODES)
        if bins is not None and ap_mode != "step":
            raise ValueError(f"`ap_mode={ap_mode!r}` needs exact mode; histogram mode (`bins`) computes step AP")
        if average == "samples" and ap_mode != "step":
            raise ValueError(f"`average='samples'` computes step AP; `ap_mode={ap_mode!r}` is not available with it")
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, bins=bins,
                         bin_range=bin_range, average=average, **kwargs)
        self.empty_class, self.ap_mode = empty_class, ap_mode

    def _per_sample(self, s: Tensor, pos: Tensor):
        ap, _, defined_ap, _ = per_row_ap_auroc(ranking_scores(s, self._task, self.input), pos)
        return ap, defined_ap

    def compute(self) -> Tensor:
        if self.average == "samples":
            self._check_rows()
            return self._samples_mean()
        if self.bins is not None:
            self._check_rows()
            ap, _, positives, _ = hist_ap_auroc(self._hist(self.average))
            if self.average == "micro":
                return reduce_pooled(ap[0], bool(positives[0] > 0), self.empty_class)
            weights = positives if self.average == "weighted" else None
            return reduce_classes(ap, positives > 0, self.average, self.empty_class, weights)
        st, t = self._rows_t()
        if self._task == "multiclass" and self.average != "micro" and self.ap_mode == "step":
            ap, _, positives = exact_ap_auroc(None, target=t, scores_t=st, overwrite=True)
            weights = positives if self.average == "weighted" else None
            return reduce_classes(ap, positives > 0, self.average, self.empty_class, weights)
        return mean_average_precision(st.T, self._positive(st.T, t), self.average, self.empty_class, self.ap_mode,
                                      scores_t=st)


def mean_average_precision(s: Tensor, pos: Tensor, average: str, empty_class: str, ap_mode: str = "step",
                           scores_t: Optional[Tensor] = None) -> Tensor:
    """``s`` (N, C) ranking scores (``scores_t``: the same transposed, (C, N) contiguous, if at hand)."""
    if average == "micro":
        s, pos, scores_t = s.reshape(-1, 1), pos.reshape(-1, 1), None
    if ap_mode == "step":
        ap, _, positives = exact_ap_auroc(s, pos, scores_t=scores_t, overwrite=scores_t is not None)
    else:
        curves = ranking_curves(s, pos)
        ap, positives = average_precision(curves, ap_mode), curves.positives
    if average == "micro":
        return reduce_pooled(ap[0], bool(positives[0] > 0), empty_class)
    weights = positives if average == "weighted" else None
    return reduce_classes(ap, positives > 0, average, empty_class, weights)


class AUROC(_RankingMetric):
    """Exact area under the ROC curve, one-vs-rest per class, as ``sklearn.metrics.roc_auc_score``
    (trapezoidal, ties counted one half).

    ``average`` as in :class:`MeanAveragePrecision` (``"weighted"``: by number of positives).
    A class with no positive **or** no negative has no AUROC; ``empty_class="skip"`` (default)
    leaves it out of the mean, ``"nan"`` makes the mean NaN (sklearn raises or returns NaN),
    ``"zero"`` counts it as 0 (torchmetrics' behaviour, which drags the macro mean down). The same
    policy applies when nothing is left: ``"micro"`` with no positive or no negative pair,
    ``"weighted"`` with no positive at all (0 under ``"zero"``, NaN otherwise), and, with
    ``average="samples"`` (multilabel: each sample's AUROC over its labels, averaged over samples,
    scikit-learn's ``average="samples"``; computed batch by batch), samples whose labels are all
    0 or all 1. ``task="binary"``: scores ``(N,)``, the AUROC of the positive class.
    """

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", average: str = "macro",
                 empty_class: str = "skip", input: str = "logits", ignore_index: Optional[int] = None,
                 bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE, **kwargs: Any) -> None:
        check_choice("empty_class", empty_class, EMPTY)
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, bins=bins,
                         bin_range=bin_range, average=average, **kwargs)
        self.empty_class = empty_class

    def _per_sample(self, s: Tensor, pos: Tensor):
        _, auc, _, defined_auc = per_row_ap_auroc(ranking_scores(s, self._task, self.input), pos)
        return auc, defined_auc

    def error_bound(self) -> Tensor:
        """Histogram mode: per-class bound on ``|AUROC - exact AUROC|`` (half the share of
        positive-negative pairs that share a bin; 0 where no bin mixes them), synced."""
        if self.bins is None:
            raise ValueError("error_bound() is defined in histogram mode (bins=...) only; exact mode has no error")
        return self.synced(lambda: hist_auroc_bound(self._hist(self.average)))

    def compute(self) -> Tensor:
        if self.average == "samples":
            self._check_rows()
            return self._samples_mean()
        if self.bins is not None:
            self._check_rows()
            _, auc, positives, negatives = hist_ap_auroc(self._hist(self.average))
            if self.average == "micro":
                return reduce_pooled(auc[0], bool((positives[0] > 0) & (negatives[0] > 0)), self.empty_class)
            weights = positives if self.average == "weighted" else None
            return reduce_classes(auc, (positives > 0) & (negatives > 0), self.average, self.empty_class, weights)
        st, t = self._rows_t()
        if self._task == "multiclass" and self.average != "micro":
            return mean_auroc(st.T, None, self.average, self.empty_class, target=t, scores_t=st)
        return mean_auroc(st.T, self._positive(st.T, t), self.average, self.empty_class, scores_t=st)


def mean_auroc(s: Tensor, pos: Optional[Tensor], average: str, empty_class: str, target: Optional[Tensor] = None,
               scores_t: Optional[Tensor] = None) -> Tensor:
    if average == "micro":
        s, pos, scores_t = s.reshape(-1, 1), pos.reshape(-1, 1), None
    _, auc, positives = exact_ap_auroc(s, pos, target=target, scores_t=scores_t, overwrite=scores_t is not None)
    if average == "micro":
        return reduce_pooled(auc[0], bool((positives[0] > 0) & (positives[0] < s.shape[0])), empty_class)
    n = s.shape[0]
    defined = (positives > 0) & (positives < n)
    weights = positives if average == "weighted" else None
    return reduce_classes(auc, defined, average, empty_class, weights)


class PRCurve(_RankingMetric):
    """Exact per-class precision-recall curves (:class:`~video_metrics.functional.ranking.PRCurveData`),
    point for point equal to ``sklearn.metrics.precision_recall_curve`` of each class; thresholds
    are probabilities."""

    higher_is_better = None

    def __init__(self, num_classes: Optional[int] = None, task: str = "multilabel", input: str = "logits",
                 ignore_index: Optional[int] = None, bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE,
                 **kwargs: Any) -> None:
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, bins=bins,
                         bin_range=bin_range, **kwargs)

    def plot(self, val: Optional[PRCurveData] = None, ax: Any = None, labels: Optional[list] = None,
             max_curves: int = 10) -> Tuple[Any, Any]:
        """Step PR curves (recall on x, precision on y) of up to ``max_curves`` classes, as
        torchmetrics' ``PrecisionRecallCurve.plot``; ``labels`` names the classes."""
        from ._draw import draw_pr_curves, figure_and_axes

        curves = self.compute() if val is None else val
        k = min(len(curves.precision), max_curves)
        names = labels or ([f"class {i}" for i in range(len(curves.precision))] if self.task != "binary" else ["positive"])
        fig, ax = figure_and_axes(ax, 6.4, 4.8)
        draw_pr_curves(ax, curves, [names[i] for i in range(k)], list(range(k)))
        ax.set_title("Precision-recall curve" + ("s" if k > 1 else ""))
        ax.legend(fontsize=7, loc="lower left")
        return fig, ax

    def compute(self) -> PRCurveData:
        if self.bins is not None:
            self._check_rows()
            return hist_pr_curves(self._hist(), self.bin_range)
        s, t = self._rows()
        return pr_curves(ranking_curves(s, self._positive(s, t)), lambda v: ranking_to_probability(v, self._task, self.input))
