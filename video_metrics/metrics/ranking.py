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

from ..functional.histogram import DEFAULT_RANGE, hist_auroc_bound, hist_pr_curves, hist_state, hist_update, hist_view, to_logit
from ..functional.rank_metrics import (
    exact_auroc,
    exact_map,
    hist_value,
    keep_valid,
    positive_matrix,
    rank_rows_t,
    ranking_layout,
    samples_mean,
    samples_values,
    stored_target,
)
from ..functional.ranking import PRCurveData, pr_curves, ranking_curves
from ..functional.classification import ranking_to_probability
from .inputs import ScoresMetric

__all__ = ["MeanAveragePrecision", "AUROC", "PRCurve"]


class _RankingMetric(ScoresMetric):
    """Exact (rows kept) or, with ``bins``, histogram mode (see
    :mod:`video_metrics.functional.histogram`): ``(C, bins, 2)`` int64 counts, one ``all_reduce``.
    The options, the row checks and the reductions are those of the functional twins
    (:mod:`video_metrics.functional.rank_metrics`)."""

    _kind = "pr_curve"

    def __init__(self, num_classes: Optional[int], task: str, input: str, ignore_index: Optional[int],
                 bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE, average: str = "macro",
                 empty_class: str = "skip", ap_mode: str = "step", **kwargs: Any) -> None:
        ranking_layout(self._kind, num_classes, task, input, ignore_index, bins, bin_range, average, empty_class, ap_mode)
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
            value, defined = samples_values(s, t.bool(), self._task, self.input, self._kind)
            use = defined & valid
            self.sample_sum += torch.where(use, value, torch.zeros_like(value)).sum()
            self.sample_counts += torch.stack([use.sum(), (valid & ~defined).sum()])
        else:
            hist_update(self.hist, to_logit(s, self._task, self.input), positive_matrix(s, t, self._task), valid,
                        self.bin_range)
        self._count_rows(*counts)

    def _append_rows(self, scores: Tensor, target: Tensor) -> None:
        """Exact mode: keep the rows as given. Their values are checked once over all rows at
        compute (one pass instead of ten small kernels per batch; still on the device, still
        raised by compute()); only a multilabel target's {0, 1} check runs here, because the
        target is stored as bool."""
        x = scores.float()
        self.scores.append(x.clone() if x is scores else x)
        t, label_ok = stored_target(target, self._task)
        self.target.append(t.clone() if t is target else t)
        self.valid.append(label_ok)

    def _hist(self) -> Tensor:
        return hist_view(self.hist, self._c, self.bins)

    def _rows_t(self):
        """Exact mode, after the sync: every row's values checked at once (the counts go to the
        same states, and :meth:`_check_rows` raises as for every metric), then the valid rows as
        ``(ranking scores (C, N) contiguous, targets)``."""
        chunks = self.scores if isinstance(self.scores, list) else [self.scores]
        t = self._cat("target")
        st, valid, self.n_bad_target, self.n_bad_score, prob_like = rank_rows_t(
            chunks, t, self._cat("valid"), self._layout, self.device)
        self.n_rows = valid.sum()
        if self.input == "logits":
            self.n_prob_like = prob_like
        self._check_rows()
        return keep_valid(st, t, valid)

    def compute(self) -> Tensor:
        if self.average == "samples":
            self._check_rows()
            return samples_mean(self.sample_sum, self.sample_counts[0], self.sample_counts[1], self.empty_class)
        if self.bins is not None:
            self._check_rows()
            return hist_value(self._hist(), self._kind, self.average, self.empty_class)
        st, t = self._rows_t()
        if self._kind == "ap":
            return exact_map(st, t, self._task, self.average, self.empty_class, self.ap_mode)
        return exact_auroc(st, t, self._task, self.average, self.empty_class)


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

    >>> import torch
    >>> from video_metrics import MeanAveragePrecision
    >>> scores = torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 1.5], [0.3, 2.2, 0.4], [1.1, 0.9, 0.2]])
    >>> labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    >>> metric = MeanAveragePrecision(num_classes=3, average="none")
    >>> metric.update(scores, labels)
    >>> metric.compute()
    tensor([0.8333, 0.7500, 0.4167], dtype=torch.float64)
    """

    _kind = "ap"

    def __init__(self, num_classes: Optional[int] = None, task: str = "multilabel", average: str = "macro",
                 empty_class: str = "skip", input: str = "logits", ap_mode: str = "step",
                 ignore_index: Optional[int] = None, bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE,
                 **kwargs: Any) -> None:
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, bins=bins,
                         bin_range=bin_range, average=average, empty_class=empty_class, ap_mode=ap_mode, **kwargs)
        self.empty_class, self.ap_mode = empty_class, ap_mode


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

    >>> import torch
    >>> from video_metrics import AUROC
    >>> metric = AUROC(task="binary")
    >>> metric.update(torch.tensor([2.0, -1.0, 0.5, 0.5]), torch.tensor([1, 0, 0, 1]))
    >>> metric.compute()  # the tie at 0.5 counts one half
    tensor(0.8750, dtype=torch.float64)
    """

    _kind = "auroc"

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", average: str = "macro",
                 empty_class: str = "skip", input: str = "logits", ignore_index: Optional[int] = None,
                 bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE, **kwargs: Any) -> None:
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, bins=bins,
                         bin_range=bin_range, average=average, empty_class=empty_class, **kwargs)
        self.empty_class = empty_class

    def error_bound(self) -> Tensor:
        """Histogram mode: per-class bound on ``|AUROC - exact AUROC|`` (half the share of
        positive-negative pairs that share a bin; 0 where no bin mixes them), synced."""
        if self.bins is None:
            raise ValueError("error_bound() is defined in histogram mode (bins=...) only; exact mode has no error")
        return self.synced(lambda: hist_auroc_bound(self._hist().sum(0, keepdim=True) if self.average == "micro"
                                                     else self._hist()))


class PRCurve(_RankingMetric):
    """Exact per-class precision-recall curves (:class:`~video_metrics.functional.ranking.PRCurveData`),
    point for point equal to ``sklearn.metrics.precision_recall_curve`` of each class; thresholds
    are probabilities.

    >>> import torch
    >>> from video_metrics import PRCurve
    >>> metric = PRCurve(task="binary", input="probs")
    >>> metric.update(torch.tensor([0.9, 0.6, 0.1]), torch.tensor([1, 0, 1]))
    >>> curve = metric.compute()
    >>> curve.precision[0].tolist(), curve.recall[0].tolist()
    ([0.6666666666666666, 0.5, 1.0, 1.0], [1.0, 0.5, 0.5, 0.0])
    """

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
        from .draw import draw_pr_curves, figure_and_axes

        curves = self.compute() if val is None else val
        k = min(len(curves.precision), max_curves)
        names = labels or ([f"class {i}" for i in range(len(curves.precision))] if self.task != "binary" else ["positive"])
        fig, ax = figure_and_axes(ax, 6.4, 4.8)
        draw_pr_curves(ax, curves, [names[i] for i in range(k)], list(range(k)))
        ax.set_title("Precision-recall curve" + ("s" if k > 1 else ""))
        ax.legend(fontsize=7, loc="lower left")
        return fig, ax

    def compute(self) -> PRCurveData:
        """The curves of every valid row so far, synced."""
        if self.bins is not None:
            self._check_rows()
            return hist_pr_curves(self._hist(), self.bin_range)
        st, t = self._rows_t()
        s = st.T
        return pr_curves(ranking_curves(s, positive_matrix(s, t, self._task)),
                         lambda v: ranking_to_probability(v, self._task, self.input))
