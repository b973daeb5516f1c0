"""The ranking metrics of all rows (average precision, AUROC, PR curves) and the kernels their
classes (:class:`~video_metrics.metrics.MeanAveragePrecision`, :class:`~video_metrics.metrics.AUROC`,
:class:`~video_metrics.metrics.PRCurve`) share with them: the option checks, the value
check and transposition of the kept rows (exact mode), and the exact, histogram
(:mod:`~video_metrics.functional.histogram`) and per-sample (``average="samples"``) reductions.

Exact mode ranks every row (:mod:`~video_metrics.functional.ranking`); ``bins=B`` counts the rows
into ``(C, B, 2)`` histograms in logit space (constant memory, a bounded AUROC error).
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .checks import Layout, check_choice, check_row_counts, probabilities_warning
from .classification import (
    check_row_values,
    log_softmax_rows,
    multilabel_target_ok,
    ranking_scores,
    ranking_to_probability,
    valid_rows,
)
from .histogram import DEFAULT_RANGE, hist_ap_auroc, hist_pr_curves, hist_state, hist_update, hist_view, to_logit
from .ranking import (
    PRCurveData,
    curves_average_precision,
    exact_ap_auroc,
    per_row_ap_auroc,
    pr_curves,
    ranking_curves,
    reduce_classes,
    reduce_pooled,
    transpose_rows,
)

AVERAGES = ("macro", "micro", "weighted", "none", "samples")
EMPTY = ("skip", "nan", "zero")
AP_MODES = ("step", "interpolated", "voc11")


def check_bins(bins: Optional[int], bin_range: float) -> None:
    """``bins``: None (exact) or an int >= 2; ``bin_range``: a positive number."""
    if bins is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 2):
        raise ValueError(f"`bins` must be None (exact) or an int >= 2, got {bins!r}")
    if not (isinstance(bin_range, (int, float)) and bin_range > 0 and bin_range == bin_range):
        raise ValueError(f"`bin_range` must be a positive number, got {bin_range!r}")


def ranking_layout(kind: str, num_classes, task: str, input: str, ignore_index, bins, bin_range, average: str = "macro",
                   empty_class: str = "skip", ap_mode: str = "step") -> Layout:
    """The options of a ranking metric class and its functional twin; ``kind``: ``"ap"``,
    ``"auroc"`` or ``"pr_curve"``."""
    if kind != "pr_curve":
        check_choice("empty_class", empty_class, EMPTY)
    if kind == "ap":
        check_choice("ap_mode", ap_mode, AP_MODES)
        if bins is not None and ap_mode != "step":
            raise ValueError(f"`ap_mode={ap_mode!r}` needs exact mode; histogram mode (`bins`) computes step AP")
        if average == "samples" and ap_mode != "step":
            raise ValueError(f"`average='samples'` computes step AP; `ap_mode={ap_mode!r}` is not available with it")
    check_bins(bins, bin_range)
    check_choice("average", average, AVERAGES)
    if average == "samples" and task != "multilabel":
        raise ValueError(f"`average='samples'` (per-sample value over labels, then the mean over samples) needs "
                         f"task='multilabel', got task={task!r}")
    return Layout.of(num_classes, task, input, ignore_index)


def stored_target(target: Tensor, rows_task: str) -> Tuple[Tensor, Tensor]:
    """Exact mode keeps each batch's targets as class indices (int64) or a bool matrix, and
    whether each multilabel row's target is 0/1 (checked here: the bool matrix cannot tell)."""
    if rows_task == "multiclass":
        return target.long(), torch.ones(target.shape[0], dtype=torch.bool, device=target.device)
    return (target if target.dtype == torch.bool else target != 0), multilabel_target_ok(target)


def rank_rows_t(chunks: Sequence[Tensor], t: Tensor, label_ok: Tensor, layout: Layout, device=None):
    """Exact mode, the rows of every batch (``chunks`` of fp32 ``(n, C)`` scores as given): the
    value checks of every row at once and the ranking scores transposed, ``(C, N)`` contiguous
    (the ranking kernels sort each class's column; transposing chunk by chunk is ~3x faster on CPU
    than concatenating the rows and transposing the result). Returns ``(st, valid, bad_target,
    bad_score, prob_like)`` as :func:`~video_metrics.functional.classification.check_row_values`."""
    task, c = layout.rows_task, layout.columns
    mc_logits = task == "multiclass" and layout.input == "logits"
    stats = []

    def ranking_rows(x: Tensor) -> Tensor:
        # multiclass logits: the row's min and max (NaN and +-inf reach them) and sum (for the
        # probabilities warning) from the rows as given, then the ranking scores (log-softmax)
        if x.shape[1]:
            stats.append((x.amin(1), x.amax(1), x.sum(1)))
        return log_softmax_rows(x)

    st = transpose_rows(chunks, c, ranking_rows if mc_logits else None)
    if device is not None and st.device != device:
        st = st.to(device)
    n = st.shape[1]
    row_sum = None
    if stats:
        lo, hi, row_sum = (torch.cat([x[i] for x in stats]) for i in range(3))
    elif n and c and not mc_logits:
        lo, hi = st.amin(0), st.amax(0)  # the rows are the columns of st
    else:
        lo = hi = row_sum = torch.zeros(n, device=st.device)
    checks = check_row_values(lo, hi, t, task, layout.input, c, layout.ignore_index, label_ok, row_sum,
                              count_prob_like=layout.input == "logits")
    return (st, *checks)


def keep_valid(st: Tensor, t: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor]:
    """The valid rows' columns of ``st`` and their targets."""
    if bool(valid.all()):
        return st, t
    return st[:, valid].contiguous(), t[valid]


def positive_matrix(s: Tensor, t: Tensor, rows_task: str) -> Tensor:
    """``(N, C)`` bool positives: the multilabel target, or the one-hot of class indices."""
    if rows_task == "multilabel":
        return t.bool()
    pos = torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    pos[torch.arange(t.numel(), device=s.device), t] = True
    return pos


def _reduce(values: Tensor, positives: Tensor, defined: Tensor, average: str, empty_class: str) -> Tensor:
    return reduce_classes(values, defined, average, empty_class, positives if average == "weighted" else None)


def exact_map(st: Tensor, t: Tensor, rows_task: str, average: str, empty_class: str, ap_mode: str = "step") -> Tensor:
    """Mean (or per-class) AP of the kept rows, ``st`` their ``(C, N)`` ranking scores (sorted in
    place: a temporary), ``t`` their targets."""
    if rows_task == "multiclass" and average != "micro" and ap_mode == "step":
        ap, _, positives = exact_ap_auroc(None, target=t, scores_t=st, overwrite=True)
        return _reduce(ap, positives, positives > 0, average, empty_class)
    s, pos, scores_t = st.T, positive_matrix(st.T, t, rows_task), st
    if average == "micro":
        s, pos, scores_t = s.reshape(-1, 1), pos.reshape(-1, 1), None
    if ap_mode == "step":
        ap, _, positives = exact_ap_auroc(s, pos, scores_t=scores_t, overwrite=scores_t is not None)
    else:
        curves = ranking_curves(s, pos)
        ap, positives = curves_average_precision(curves, ap_mode), curves.positives
    if average == "micro":
        return reduce_pooled(ap[0], bool(positives[0] > 0), empty_class)
    return _reduce(ap, positives, positives > 0, average, empty_class)


def exact_auroc(st: Tensor, t: Tensor, rows_task: str, average: str, empty_class: str) -> Tensor:
    """Mean (or per-class) AUROC of the kept rows (see :func:`exact_map`)."""
    s, n = st.T, st.shape[1]
    if rows_task == "multiclass" and average != "micro":
        _, auc, positives = exact_ap_auroc(s, None, target=t, scores_t=st, overwrite=True)
    elif average == "micro":
        _, auc, positives = exact_ap_auroc(s.reshape(-1, 1), positive_matrix(s, t, rows_task).reshape(-1, 1))
        return reduce_pooled(auc[0], bool((positives[0] > 0) & (positives[0] < s.numel())), empty_class)
    else:
        _, auc, positives = exact_ap_auroc(s, positive_matrix(s, t, rows_task), scores_t=st, overwrite=True)
    return _reduce(auc, positives, (positives > 0) & (positives < n), average, empty_class)


def hist_value(hist: Tensor, kind: str, average: str, empty_class: str) -> Tensor:
    """Mean (or per-class) AP (``kind="ap"``) or AUROC from ``(C, B, 2)`` histograms."""
    h = hist.sum(0, keepdim=True) if average == "micro" else hist
    ap, auc, positives, negatives = hist_ap_auroc(h)
    value = ap if kind == "ap" else auc
    defined = positives > 0 if kind == "ap" else (positives > 0) & (negatives > 0)
    if average == "micro":
        return reduce_pooled(value[0], bool(defined[0]), empty_class)
    return _reduce(value, positives, defined, average, empty_class)


def samples_values(s: Tensor, pos: Tensor, task: str, input: str, kind: str) -> Tuple[Tensor, Tensor]:
    """``average="samples"``: each row's AP or AUROC over its labels, and whether it is defined."""
    ap, auc, defined_ap, defined_auc = per_row_ap_auroc(ranking_scores(s, task, input), pos)
    return (ap, defined_ap) if kind == "ap" else (auc, defined_auc)


def samples_mean(total: Tensor, n_defined: Tensor, n_undefined: Tensor, empty_class: str) -> Tensor:
    """The mean of the per-sample values; samples whose value is undefined follow ``empty_class``
    (skip / NaN / count as 0)."""
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=total.device)
    if empty_class == "nan" and int(n_undefined) > 0:
        return nan
    den = n_defined + (n_undefined if empty_class == "zero" else 0)
    return nan if int(den) == 0 else total / den.double()


def _ranking(kind: str, owner: str, scores: Tensor, target: Tensor, num_classes, task: str, input: str, ignore_index,
             bins, bin_range: float, average: str = "macro", empty_class: str = "skip", ap_mode: str = "step"):
    layout = ranking_layout(kind, num_classes, task, input, ignore_index, bins, bin_range, average, empty_class, ap_mode)
    rt, c = layout.rows_task, layout.columns
    if average == "samples" or bins is not None:
        s, t, valid = valid_rows(layout, scores, target, owner, count_prob_like=True)
        if average == "samples":
            value, defined = samples_values(s, t.bool(), rt, input, kind)
            use = defined & valid
            return samples_mean(torch.where(use, value, torch.zeros_like(value)).sum(), use.sum(),
                                (valid & ~defined).sum(), empty_class)
        hist = hist_state(c, bins, s.device)
        hist_update(hist, to_logit(s, rt, input), positive_matrix(s, t, rt), valid, bin_range)
        h = hist_view(hist, c, bins)
        return hist_pr_curves(h, bin_range) if kind == "pr_curve" else hist_value(h, kind, average, empty_class)
    s, t = layout.batch(scores, target)
    t, label_ok = stored_target(t, rt)
    st, valid, bad_t, bad_s, prob_like = rank_rows_t([s.float()], t, label_ok, layout)
    n = int(valid.sum())
    check_row_counts(owner, layout.rules(), int(bad_t), int(bad_s), n, functional=True)
    if input == "logits" and int(prob_like) == n:
        warnings.warn(probabilities_warning(owner, n, layout.task), UserWarning, stacklevel=3)
    st, t = keep_valid(st, t, valid)
    if kind == "ap":
        return exact_map(st, t, rt, average, empty_class, ap_mode)
    if kind == "auroc":
        return exact_auroc(st, t, rt, average, empty_class)
    return pr_curves(ranking_curves(st.T, positive_matrix(st.T, t, rt)), lambda v: ranking_to_probability(v, rt, input))


def mean_average_precision(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, task: str = "multilabel",
                           average: str = "macro", empty_class: str = "skip", input: str = "logits",
                           ap_mode: str = "step", ignore_index: Optional[int] = None, bins: Optional[int] = None,
                           bin_range: float = DEFAULT_RANGE) -> Tensor:
    """Mean average precision of all rows, the twin of
    :class:`~video_metrics.metrics.MeanAveragePrecision`: one-vs-rest AP per class (scikit-learn's
    step AP; ``ap_mode="interpolated"`` or ``"voc11"``), reduced over the classes (``average``)
    under the ``empty_class`` policy for classes without a positive.

    >>> scores = torch.tensor([[0.9, 0.2], [0.6, 0.8], [0.1, 0.7]])
    >>> target = torch.tensor([[1, 0], [0, 1], [1, 0]])
    >>> mean_average_precision(scores, target, num_classes=2, input="probs")
    tensor(0.9167, dtype=torch.float64)
    """
    return _ranking("ap", "mean_average_precision", scores, target, num_classes, task, input, ignore_index, bins,
                    bin_range, average, empty_class, ap_mode)


def average_precision(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, task: str = "multilabel",
                      average: str = "none", **options) -> Tensor:
    """Average precision per class (``average="none"``, NaN for a class without a positive) or
    reduced: :func:`mean_average_precision` with another default.

    >>> scores = torch.tensor([[0.9, 0.2], [0.6, 0.8], [0.1, 0.7]])
    >>> average_precision(scores, torch.tensor([[1, 0], [0, 1], [1, 0]]), num_classes=2, input="probs")
    tensor([0.8333, 1.0000], dtype=torch.float64)
    """
    return mean_average_precision(scores, target, num_classes, task, average, **options)


def auroc(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, task: str = "multiclass",
          average: str = "macro", empty_class: str = "skip", input: str = "logits", ignore_index: Optional[int] = None,
          bins: Optional[int] = None, bin_range: float = DEFAULT_RANGE) -> Tensor:
    """Area under the ROC curve of all rows, the twin of :class:`~video_metrics.metrics.AUROC`
    (one-vs-rest, ties counted one half, scikit-learn's ``roc_auc_score``).

    >>> auroc(torch.tensor([0.9, 0.6, 0.6, 0.1]), torch.tensor([1, 0, 1, 0]), task="binary", input="probs")
    tensor(0.8750, dtype=torch.float64)
    """
    return _ranking("auroc", "auroc", scores, target, num_classes, task, input, ignore_index, bins, bin_range,
                    average, empty_class)


def pr_curve(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, task: str = "multilabel",
             input: str = "logits", ignore_index: Optional[int] = None, bins: Optional[int] = None,
             bin_range: float = DEFAULT_RANGE) -> PRCurveData:
    """Per-class precision-recall curves of all rows, the twin of :class:`~video_metrics.metrics.PRCurve`
    (point for point scikit-learn's ``precision_recall_curve``; thresholds are probabilities).

    >>> curve = pr_curve(torch.tensor([0.9, 0.6, 0.1]), torch.tensor([1, 0, 1]), task="binary", input="probs")
    >>> curve.precision[0].tolist(), curve.recall[0].tolist()
    ([0.6666666666666666, 0.5, 1.0, 1.0], [1.0, 0.5, 0.5, 0.0])
    """
    return _ranking("pr_curve", "pr_curve", scores, target, num_classes, task, input, ignore_index, bins, bin_range)
