"""Figures for evaluation reports: pure functions that return matplotlib ``Figure`` objects.

Object-oriented matplotlib only (``Figure`` + Agg canvas): nothing here touches pyplot, switches
backends or registers figures globally, so a figure is freed as soon as the caller drops it —
no "more than 20 figures" leak after many epochs. :func:`figure_to_array` renders a figure to an
RGB ``uint8`` array once; loggers that take images get the array.

Used by :class:`video_metrics.callbacks.VideoMetricsCallback` and by ``video-metrics report``.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from .metrics.draw import (  # noqa: F401 (figure helpers re-exported here)
    BAR_HEIGHT,
    draw_heatmap,
    class_labels,
    to_numpy,
    row_normalise,
    shorten,
    draw_bars,
    draw_pr_curves,
    draw_reliability,
    figure_to_array,
    fit_text,
    new_figure,
    save_png,
    set_title,
)

__all__ = [
    "new_figure", "figure_to_array", "save_png", "plot_confusion", "plot_reliability", "plot_pr_curves",
    "plot_per_class", "report_figures", "plot_intervals", "plot_temperature", "plot_views", "plot_deltas", "plot_class_deltas", "comparison_figures",
]


def top_confusion_pairs(cm, n: int = 20) -> List[Tuple[int, int, int, float]]:
    """The ``n`` largest off-diagonal cells as ``(true, predicted, count, share of the true class)``
    (order as :func:`video_metrics.functional.classification.top_confusions`)."""
    import torch

    from .functional.classification import top_confusions

    cm_t = torch.as_tensor(to_numpy(cm)).long()
    support = cm_t.sum(1).tolist()
    return [(t, p, n_, n_ / support[t]) for t, p, n_ in top_confusions(cm_t, n)]


def plot_confusion(cm, class_names: Optional[Sequence[str]] = None, max_classes: int = 50, top_n: int = 20,
                   title: str = "Confusion matrix") -> Figure:
    """Row-normalised confusion matrix (rows true, columns predicted; the diagonal is per-class
    recall). Up to ``max_classes`` classes: the full heatmap with class names (cell values up to
    20 classes). Above that: a table of the ``top_n`` confusions (true, predicted, count, share of
    the true class) beside the row-normalised sub-matrix of the classes involved."""
    cm = to_numpy(cm).astype(np.int64)
    c = cm.shape[0]
    names = class_labels(class_names, c)
    norm = row_normalise(cm.astype(np.float64))
    if c <= max_classes:
        size = min(14.0, 3.0 + 0.22 * c)
        fig = new_figure(size + 1.5, size)
        ax = fig.add_subplot(1, 1, 1)
        draw_heatmap(ax, norm, list(range(c)), list(range(c)), names, text=c <= 20)
        set_title(ax, f"{title} (row-normalised, {int(cm.sum())} samples)")
        fig.tight_layout()
        return fig
    pairs = top_confusion_pairs(cm, top_n)
    involved: List[int] = []
    for t, p, _, _ in pairs:
        for k in (t, p):
            if k not in involved and len(involved) < 30:
                involved.append(k)
    involved.sort()
    fig = new_figure(16, 8.5)
    ax_t = fig.add_subplot(1, 2, 1)
    ax_t.axis("off")
    ax_t.set_title(f"Top {len(pairs)} confusions of {c} classes")
    if pairs:
        cells = [[shorten(names[t]), shorten(names[p]), str(n), f"{s:.1%}"] for t, p, n, s in pairs]
        table = ax_t.table(cellText=cells, colLabels=["true", "predicted", "count", "share of true"],
                           loc="upper center", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1.0, 1.2)
    else:
        ax_t.text(0.5, 0.5, "no confusions", ha="center", va="center")
    ax_m = fig.add_subplot(1, 2, 2)
    if involved:
        draw_heatmap(ax_m, norm, involved, involved, names, text=len(involved) <= 15)
        set_title(ax_m, "Sub-matrix of the classes involved (row-normalised over all classes)")
    else:
        ax_m.axis("off")
    fig.suptitle(fit_text(f"{title} ({int(cm.sum())} samples)", fig.get_figwidth() * 0.95))
    fig.tight_layout()
    return fig


def plot_reliability(rel, title: str = "Reliability diagram") -> Figure:
    """Reliability diagram after Guo et al. (2017): top, the share of samples per confidence bin;
    bottom, the accuracy of each bin as bars, the gap to the diagonal in red, the diagonal dashed;
    ECE and MCE in the title. ``rel`` is a :class:`~video_metrics.functional.calibration.ReliabilityData`."""
    fig = new_figure(6, 7.8)
    gs = fig.add_gridspec(2, 1, height_ratios=(1, 3), hspace=0.08, top=0.86, bottom=0.14)
    ax_h = fig.add_subplot(gs[0])
    ax = fig.add_subplot(gs[1], sharex=ax_h)
    draw_reliability(ax, rel, title=title, ax_hist=ax_h)
    return fig


def plot_pr_curves(curves, ap: Sequence[float], class_names: Optional[Sequence[str]] = None, n_best: int = 3,
                   n_worst: int = 3, micro=None, title: str = "Precision-recall curves") -> Figure:
    """Step PR curves (recall on x, precision on y, as scikit-learn draws them) of the ``n_worst``
    and ``n_best`` classes by AP (classes with no positive skipped) and, when given, the micro
    curve ``micro = (precision, recall, ap)``; AP in the legend."""
    ap_arr = np.asarray([np.nan if v is None else v for v in ap], dtype=np.float64)
    c = ap_arr.size
    names = class_labels(class_names, c)
    defined = np.flatnonzero(np.isfinite(ap_arr))
    order = defined[np.argsort(ap_arr[defined], kind="stable")]
    worst = list(order[:n_worst])
    best = [i for i in order[::-1][:n_best] if i not in worst]
    fig = new_figure(7, 6)
    ax = fig.add_subplot(1, 1, 1)
    shown = worst + best
    draw_pr_curves(ax, curves, [f"{shorten(names[i])} (AP {ap_arr[i]:.3f})" for i in shown], shown,
                   ["--"] * len(worst) + ["-"] * len(best))
    if micro is not None:
        p, r, m = micro
        ax.plot(to_numpy(r), to_numpy(p), drawstyle="steps-post", color="black", linewidth=2, label=f"micro (AP {float(m):.3f})")
    set_title(ax, f"{title}: {len(worst)} worst (dashed), {len(best)} best classes by AP")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_per_class(values: Sequence[float], support: Sequence[int], class_names: Optional[Sequence[str]] = None,
                   metric: str = "F1", max_bars: int = 40, title: Optional[str] = None) -> Figure:
    """Horizontal bars of a per-class metric, sorted ascending, with each class's support. With more
    than ``max_bars`` classes, the worst and best ``max_bars // 2`` are shown. Classes whose value
    is undefined (NaN/None) are left out and counted in the title."""
    vals = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    sup = np.asarray(support, dtype=np.int64)
    c = vals.size
    names = class_labels(class_names, c)
    defined = np.flatnonzero(np.isfinite(vals))
    order = defined[np.argsort(vals[defined], kind="stable")]
    if order.size > max_bars:
        half = max_bars // 2
        shown = np.concatenate([order[:half], order[-half:]])
        note = f"worst {half} and best {half} of {order.size} classes"
    else:
        shown = order
        note = f"{order.size} classes"
    undefined = c - defined.size
    if undefined:
        note += f"; {undefined} undefined"
    fig = new_figure(8, max(3.0, 1.0 + BAR_HEIGHT * len(shown)))
    ax = fig.add_subplot(1, 1, 1)
    draw_bars(ax, vals, names, metric, support=sup, shown=list(shown))
    if order.size > max_bars:
        ax.axhline(max_bars // 2 - 0.5, color="gray", linestyle=":")
    set_title(ax, title or f"Per-class {metric} ({note})")
    fig.tight_layout()
    return fig


def plot_views(views) -> Figure:
    """Video top-1 against the number of views used per video: the mean over random subsets and
    the first views by clip id (a :class:`~video_metrics.views.ViewsReport`)."""
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(views.views, views.top1_random, "o-", label=f"random views (mean of {views.draws} draws)")
    ax.plot(views.views, views.top1_first, "s--", label="first views by clip id")
    ax.set_xlabel("views per video")
    ax.set_xticks(list(views.views))  # whole views only
    ax.set_ylabel("video top-1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    note = f"; {views.duplicate_views} video(s) with identical views" if views.duplicate_views else ""
    set_title(ax, f"Video top-1 vs number of views{note}")
    fig.tight_layout()
    return fig


def plot_temperature(fit) -> Figure:
    """Reliability before and after temperature scaling side by side (a
    :class:`~video_metrics.temperature.TemperatureFit`), with the cross-fitted ECE in the title."""
    fig = new_figure(12, 7.5)
    # the figure title, the panels' titles (three lines) and the legends below each panel get their own room
    gs = fig.add_gridspec(2, 2, height_ratios=(1, 3), hspace=0.08, wspace=0.25, top=0.78, bottom=0.17)
    for j, (rel, name) in enumerate(((fit.reliability_before, "before (T = 1)"),
                                     (fit.reliability_after, f"after (T = {fit.temperature:.3g})"))):
        ax_h = fig.add_subplot(gs[0, j])
        ax = fig.add_subplot(gs[1, j], sharex=ax_h)
        draw_reliability(ax, rel, title=f"{fit.level} level, {name}", ax_hist=ax_h)
    fig.suptitle(f"Temperature scaling: ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f} in-sample, "
                 f"{fit.ece_cross_fitted:.4f} cross-fitted", fontsize=12, y=0.985)
    return fig


def _forest(ax, labels: Sequence[str], values: Sequence[float], lows: Sequence[float], highs: Sequence[float],
            zero: Optional[float] = None, lower_better: Optional[Sequence[bool]] = None) -> None:
    """Points with horizontal interval bars, one row per label (top to bottom)."""
    v = np.asarray(values, dtype=np.float64)
    lo = np.asarray(lows, dtype=np.float64)
    hi = np.asarray(highs, dtype=np.float64)
    y = np.arange(len(labels))[::-1]
    colors = ["tab:gray"] * len(labels)
    if zero is not None:
        flip = lower_better or [False] * len(labels)
        colors = [("tab:green" if h < zero else "tab:red" if l > zero else "tab:gray") if f else
                  ("tab:red" if h < zero else "tab:green" if l > zero else "tab:gray") for l, h, f in zip(lo, hi, flip)]
        ax.axvline(zero, color="black", linewidth=0.8)
    for yi, vi, l, h, col in zip(y, v, lo, hi, colors):
        if np.isfinite(l) and np.isfinite(h):
            ax.plot([l, h], [yi, yi], color=col, linewidth=2)
        ax.plot([vi], [yi], "o", color=col, markersize=4)
    ax.set_yticks(y)
    ax.set_yticklabels([shorten(x, 32) for x in labels], fontsize=7)


def plot_intervals(scalars, intervals, ci: float, keys: Optional[Sequence[str]] = None,
                   title: Optional[str] = None) -> Figure:
    """The point estimate and bootstrap interval of each key (error bars), one row per key."""
    keys = [k for k in (keys or intervals) if k in intervals and k in scalars]
    fig = new_figure(7, max(2.5, 0.8 + 0.22 * len(keys)))
    ax = fig.add_subplot(1, 1, 1)
    _forest(ax, keys, [scalars[k] for k in keys], [intervals[k][0] for k in keys], [intervals[k][1] for k in keys])
    ax.set_xlabel(f"value, {ci:.0%} bootstrap interval (by video)")
    set_title(ax, title or f"Headline metrics with {ci:.0%} intervals")
    fig.tight_layout()
    return fig


def plot_deltas(comparison, keys: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Figure:
    """``b - a`` of each key with its paired interval; red: b is worse with confidence (the interval
    is below 0, or above 0 for keys where lower is better), green: b is better."""
    keys = [k for k in (keys or comparison.deltas) if k in comparison.deltas]
    d = [comparison.deltas[k] for k in keys]
    fig = new_figure(7, max(2.5, 0.8 + 0.22 * len(keys)))
    ax = fig.add_subplot(1, 1, 1)
    from .compare import lower_is_better

    _forest(ax, [f"{k} (p={x.p_value:.3g})" for k, x in zip(keys, d)], [x.delta for x in d], [x.low for x in d],
            [x.high for x in d], zero=0.0, lower_better=[lower_is_better(k) for k in keys])
    ax.set_xlabel(f"delta = b - a, {comparison.ci:.0%} paired interval")
    set_title(ax, title or f"Deltas, {comparison.bootstrap} paired resamples of {comparison.num_videos} videos")
    fig.tight_layout()
    return fig


def plot_class_deltas(comparison, max_bars: int = 30, title: Optional[str] = None) -> Figure:
    """Per-class change (recall or AP) with paired intervals as error bars: the worst
    ``max_bars // 2`` and the best ``max_bars // 2`` classes."""
    rows = [x for x in comparison.per_class if np.isfinite(x.delta)]
    if len(rows) > max_bars:
        rows = rows[:max_bars // 2] + rows[-(max_bars // 2):]
    fig = new_figure(8, max(3.0, 0.9 + 0.22 * len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))[::-1]
    vals = np.asarray([x.delta for x in rows], dtype=np.float64)
    err = np.asarray([[x.delta - x.low for x in rows], [x.high - x.delta for x in rows]], dtype=np.float64)
    colors = ["tab:red" if x.high < 0 else "tab:green" if x.low > 0 else "tab:gray" for x in rows]
    ax.barh(y, vals, color=colors, xerr=np.nan_to_num(err) if len(rows) else None, capsize=2, ecolor="black")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{shorten(x.name)} (q={x.q_value:.2g})" for x in rows], fontsize=7)
    metric = rows[0].metric if rows else "value"
    ax.set_xlabel(f"change of {metric}, b - a ({comparison.per_class_level} level)")
    set_title(ax, title or f"Per-class change of {metric}, worst first")
    fig.tight_layout()
    return fig


def comparison_figures(comparison, keys: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, Figure]]:
    """``("deltas", ...)`` and, when there are per-class results, ``("per_class_deltas", ...)``."""
    yield "deltas", plot_deltas(comparison, keys)
    if comparison.per_class:
        yield "per_class_deltas", plot_class_deltas(comparison)


def report_figures(report, max_classes_in_matrix: int = 50, levels: Sequence[str] = ("clip", "video")
                   ) -> Iterator[Tuple[str, Figure]]:
    """The figures of a :class:`~video_metrics.suite.SuiteReport`, one at a time as
    ``(tag, figure)`` so that at most one is alive: per level, ``<level>/confusion_matrix``
    (multiclass), ``<level>/reliability``, ``<level>/pr_curves`` (multilabel) and
    ``<level>/per_class_f1`` (multiclass) or ``<level>/per_class_ap`` (multilabel)."""
    names = report.class_names
    for level in levels:
        rep = getattr(report, level, None)
        if rep is None:
            continue
        rows = getattr(report, "rows", "clips")
        label = (f"{level} level" if level == "clip" else
                 f"video level ({report.video_reduction})" if rows == "clips" else f"video level ({rows})")
        if report.task in ("multiclass", "binary") and rep.confusion is not None:
            cm_names = [f"not {names[0]}", names[0]] if report.task == "binary" else names
            yield f"{level}/confusion_matrix", plot_confusion(rep.confusion, cm_names, max_classes_in_matrix,
                                                              title=f"Confusion matrix, {label}")
        if rep.reliability is not None:
            yield f"{level}/reliability", plot_reliability(rep.reliability, title=f"Reliability, {label}")
        if report.task in ("multilabel", "binary"):
            if rep.pr_curves is not None:
                yield f"{level}/pr_curves", plot_pr_curves(rep.pr_curves, rep.ap, names, micro=rep.pr_micro,
                                                           title=f"PR curves, {label}")
            yield f"{level}/per_class_ap", plot_per_class(rep.ap, rep.support, names, "AP")
        else:
            yield f"{level}/per_class_f1", plot_per_class(rep.f1, rep.support, names, "F1")
    if getattr(report, "intervals", None):
        yield "intervals", plot_intervals(report.scalars, report.intervals, report.ci)
    if getattr(report, "views", None) is not None and len(report.views.views) > 1:
        yield "views", plot_views(report.views)
