"""Drawing primitives on a matplotlib ``Axes``: confusion heatmap, reliability diagram, PR
curves, per-class bars. Object-oriented matplotlib only (nothing here touches pyplot).

Shared by the metrics' ``plot()`` (torchmetrics' ``plot(val=None, ax=None) -> (fig, ax)``) and by
:mod:`video_metrics.plots`, which composes them into report figures; it sits at the metrics
level so that imports keep running downwards.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "draw_confusion", "draw_reliability", "draw_pr_curves", "draw_bars", "set_title", "fit_text"]


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A ``Figure`` with its own Agg canvas (not registered with pyplot)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_and_axes(ax, width: float, height: float):
    """``(fig, ax)`` for a ``plot(..., ax=None)``: the given axes and their figure, or a new
    figure (:func:`new_figure`) with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(width, height)
    return fig, fig.add_subplot(1, 1, 1)


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` and return an ``(H, W, 3)`` ``uint8`` RGB array."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(fig: Figure, path) -> None:
    """Write a figure as PNG."""
    fig.savefig(path, format="png")


def to_numpy(x) -> np.ndarray:
    """A tensor (float as float64) or array-like as a NumPy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.double()
        x = x.numpy()
    return np.asarray(x)


def class_labels(class_names: Optional[Sequence[str]], c: int) -> List[str]:
    """The class names, or the class indices as text."""
    return list(class_names) if class_names is not None else [str(i) for i in range(c)]


def shorten(name: str, n: int = 24) -> str:
    """``name`` cut to ``n`` characters with an ellipsis."""
    return name if len(name) <= n else name[: n - 1] + "…"


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """A confusion matrix normalised by its rows (0 for an empty row)."""
    support = cm.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, cm / np.maximum(support, 1), 0.0)


def draw_heatmap(ax, norm: np.ndarray, rows: Sequence[int], cols: Sequence[int], names: List[str], text: bool) -> None:
    """Draw the ``rows x cols`` part of a normalised matrix with class names (cell values when ``text``)."""
    sub = norm[np.ix_(rows, cols)]
    im = ax.imshow(sub, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest", aspect="auto")
    k = len(rows)
    fs = max(4, min(9, int(220 / max(k, 1))))
    ax.set_xticks(range(len(cols)))
    ax.set_yticks(range(k))
    ax.set_xticklabels([shorten(names[i], 18) for i in cols], rotation=90, fontsize=fs)
    ax.set_yticklabels([shorten(names[i], 18) for i in rows], fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if text:
        for i in range(k):
            for j in range(len(cols)):
                v = sub[i, j]
                if v >= 0.005:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=fs - 1,
                            color="white" if v > 0.5 else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")


def fit_text(text: str, width_in: float, fontsize: float = 12.0) -> str:
    """``text`` wrapped (at spaces) so that each line fits ``width_in`` inches at ``fontsize``
    points (about 0.6 em per character, the width of an average DejaVu Sans glyph)."""
    import textwrap

    per_line = max(12, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(part, per_line, break_on_hyphens=False) for part in text.split("\n"))


def set_title(ax, text: str, fontsize: float = 12.0) -> None:
    """``ax.set_title`` with the text wrapped to the axes' width (never clipped at the figure edge)."""
    fig = ax.figure
    width = ax.get_position().width * fig.get_figwidth() if fig is not None else 6.0
    ax.set_title(fit_text(text, max(width, 2.0), fontsize), fontsize=fontsize)


def draw_confusion(ax, cm, class_names: Optional[Sequence[str]] = None, normalize: bool = True,
                   text: Optional[bool] = None) -> None:
    """Heatmap of a confusion matrix (rows true, columns predicted), row-normalised by default."""
    cm = to_numpy(cm).astype(np.float64)
    c = cm.shape[0]
    names = class_labels(class_names, c)
    norm = row_normalise(cm) if normalize else cm / max(cm.max(), 1.0)
    draw_heatmap(ax, norm, list(range(c)), list(range(c)), names, text=c <= 20 if text is None else text)


def draw_reliability(ax, rel, title: str = "Reliability diagram", ax_hist=None) -> None:
    """Per confidence bin, the accuracy as a bar (left half of the bin) and the gap between the
    accuracy and the bin's mean confidence as a red bar beside it (right half), so that neither
    hides the other; the diagonal dashed; ECE/MCE in the title, the legend below the axes (it covers
    no bar). With ``ax_hist``, the share of samples per bin above it, the overall accuracy and mean
    confidence as vertical lines named in its title."""
    edges = to_numpy(rel.edges).astype(np.float64)
    acc = to_numpy(rel.accuracy).astype(np.float64)
    conf = to_numpy(rel.confidence).astype(np.float64)
    count = to_numpy(rel.count).astype(np.float64)
    lo, width = edges[:-1], np.diff(edges)
    total = max(count.sum(), 1.0)
    filled = count > 0
    ece, mce = float(to_numpy(rel.ece)), float(to_numpy(rel.mce))
    head = f"{title}\nECE {ece:.4f}   MCE {mce:.4f}   n = {int(count.sum())}"
    if ax_hist is not None:
        ax_hist.bar(lo, count / total, width=width, align="edge", color="tab:gray", edgecolor="black", linewidth=0.5)
        if filled.any():
            mean_conf = float((conf[filled] * count[filled]).sum() / total)
            mean_acc = float((acc[filled] * count[filled]).sum() / total)
            ax_hist.axvline(mean_acc, color="tab:blue", linestyle="--")
            ax_hist.axvline(mean_conf, color="tab:red", linestyle=":")
            head += f"\naccuracy {mean_acc:.3f} (blue dashed), mean confidence {mean_conf:.3f} (red dotted)"
        ax_hist.set_ylabel("share of samples")
        ax_hist.tick_params(labelbottom=False)
    a = np.where(filled, acc, 0.0)
    c = np.where(filled, conf, lo + width / 2)
    half = width / 2
    ax.bar(lo, a, width=half, align="edge", color="tab:blue", edgecolor="black", linewidth=0.5, label="accuracy")
    gap_lo, gap_hi = np.minimum(a, c), np.maximum(a, c)
    ax.bar((lo + half)[filled], (gap_hi - gap_lo)[filled], bottom=gap_lo[filled], width=half[filled], align="edge",
           color="tab:red", alpha=0.55, edgecolor="tab:red", label="gap: accuracy to mean confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    set_title(ax_hist if ax_hist is not None else ax, head, fontsize=11)


def draw_pr_curves(ax, curves, labels: Sequence[str], classes: Sequence[int], styles: Optional[Sequence[str]] = None) -> None:
    """Step PR curves (recall on x, precision on y, as scikit-learn draws them) of ``classes``."""
    for j, i in enumerate(classes):
        p, r = to_numpy(curves.precision[i]), to_numpy(curves.recall[i])
        ax.plot(r, p, drawstyle="steps-post", linestyle=(styles[j] if styles else "-"), label=labels[j])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")


#: font size of per-class bar labels (points); figures give each bar :data:`BAR_HEIGHT` inches
BAR_LABEL_SIZE = 8.5
BAR_HEIGHT = 0.3


def draw_bars(ax, values, class_names: Optional[Sequence[str]] = None, metric: str = "value",
              support: Optional[Sequence[int]] = None, shown: Optional[Sequence[int]] = None) -> None:
    """Horizontal bars of a per-class value (``shown``: which classes, in that order; default all,
    undefined ones left out); the mean of the defined values as a dashed line."""
    vals = np.asarray([np.nan if v is None else v for v in to_numpy(values).tolist()], dtype=np.float64).reshape(-1)
    c = vals.size
    names = class_labels(class_names, c)
    if shown is None:
        shown = [i for i in range(c) if np.isfinite(vals[i])]
    y = np.arange(len(shown))
    ax.barh(y, vals[list(shown)] if len(shown) else [], color="tab:blue")
    ax.set_yticks(y)
    lab = [shorten(names[i]) + (f" (n={support[i]})" if support is not None else "") for i in shown]
    ax.set_yticklabels(lab, fontsize=BAR_LABEL_SIZE)
    ax.set_xlim(0, 1)
    ax.set_xlabel(metric)
    defined = vals[np.isfinite(vals)]
    mean = float(defined.mean()) if defined.size else float("nan")
    ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.3f}")
    ax.legend(fontsize=7, loc="lower right")
