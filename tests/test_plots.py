"""Figures: content read back from the Figure objects and from rendered pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import video_metrics as vm
from video_metrics import VideoClassificationMetrics
from video_metrics.data.predictions import synthetic_predictions
from video_metrics.functional.classification import threshold_counts
from video_metrics.plots import (
    figure_to_array,
    plot_confusion,
    plot_per_class,
    plot_reliability,
    report_figures,
    top_confusion_pairs,
)


def _texts(fig):
    out = []
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title()]
        for tab in ax.tables:
            out += [c.get_text().get_text() for c in tab.get_celld().values()]
        out += [t.get_text() for t in ax.get_yticklabels()] + [t.get_text() for t in ax.get_xticklabels()]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    return out


def _report(task, c, seed=0):
    d = synthetic_predictions(num_videos=40, clips_per_video=3, num_classes=c, task=task, seed=seed)
    m = VideoClassificationMetrics(c, task=task, video_reduction="mean_probs", class_names=[f"cls{i}" for i in range(c)])
    m.update(d.scores, d.target, d.video_ids, d.clip_ids)
    return m.report()


def test_threshold_counts_match_brute_force():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(300, 4, generator=g)
    p[:5] = torch.tensor([0.0, 1.0, 0.5, 0.25])  # edges and exact thresholds
    pos = torch.rand(300, 4, generator=g) < 0.3
    pos[:, 3] = False  # a class with no positive
    got = threshold_counts(p, pos, 5).numpy()
    pn, posn = p.numpy(), pos.numpy()
    for c in range(4):
        for k, thr in enumerate(np.linspace(0, 1, 5)):
            pred = pn[:, c] >= thr
            exp = [(pred & posn[:, c]).sum(), (pred & ~posn[:, c]).sum(), (~pred & ~posn[:, c]).sum(), (~pred & posn[:, c]).sum()]
            assert got[c, k].tolist() == exp, (c, k)


def test_top_confusion_pairs_hand_example():
    cm = np.array([[5, 3, 0], [1, 6, 1], [4, 0, 2]])
    assert top_confusion_pairs(cm, 3) == [(2, 0, 4, 4 / 6), (0, 1, 3, 3 / 8), (1, 0, 1, 1 / 8)]


def test_small_confusion_matrix_shows_row_normalised_values_and_names():
    cm = torch.tensor([[3, 1], [0, 4]])
    fig = plot_confusion(cm, ["walk", "run"])
    texts = _texts(fig)
    assert {"0.75", "0.25", "1.00", "walk", "run"} <= set(texts)
    img = figure_to_array(fig)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 5


def test_large_confusion_matrix_gives_top_confusions_table_and_sub_matrix():
    rep = _report("multiclass", 80)
    cm = rep.clip.confusion
    fig = plot_confusion(cm, rep.class_names, max_classes=50, top_n=10)
    texts = _texts(fig)
    pairs = top_confusion_pairs(cm, 10)
    t, p, n, share = pairs[0]
    assert f"cls{t}" in texts and f"cls{p}" in texts and str(n) in texts and f"{share:.1%}" in texts
    sub = fig.axes[1].images[0].get_array()
    involved = sorted({k for a, b, _, _ in pairs for k in (a, b)})
    assert sub.shape == (len(involved), len(involved))
    row = cm[involved].double() / cm[involved].sum(1, keepdim=True).double()
    np.testing.assert_allclose(np.asarray(sub), np.nan_to_num(row[:, involved].numpy()), atol=1e-12)  # no support: 0


def test_reliability_figure_reports_ece_and_bins():
    rep = _report("multiclass", 10)
    rel = rep.clip.reliability
    fig = plot_reliability(rel)
    title = fig.axes[0].get_title()
    assert f"ECE {rep.scalars['clip/ece']:.4f}" in title and f"MCE {rep.scalars['clip/mce']:.4f}" in title
    heights = [b.get_height() for b in fig.axes[0].patches]  # the confidence histogram
    assert heights == pytest.approx((rel.count.double() / rel.count.sum()).tolist())


def test_per_class_bars_sorted_with_support_and_undefined_counted():
    fig = plot_per_class([0.5, float("nan"), 0.1, 0.9], [4, 0, 2, 7], ["a", "b", "c", "d"], "F1")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["c (n=2)", "a (n=4)", "d (n=7)"]
    assert "1 undefined" in fig.axes[0].get_title()


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_report_figures_tags(task):
    rep = _report(task, 6)
    tags = [t for t, _ in report_figures(rep)]
    if task == "multiclass":
        # multiclass with several views per video: the views curve too
        assert tags == [f"{lv}/{n}" for lv in ("clip", "video") for n in ("confusion_matrix", "reliability", "per_class_f1")] \
            + ["views"]
        fig = dict(report_figures(rep))["views"]
        assert [ln.get_label() for ln in fig.axes[0].get_lines()][:2] == ["random views (mean of 5 draws)",
                                                                        "first views by clip id"]
        assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx(rep.views.top1_random)
    else:
        assert tags == [f"{lv}/{n}" for lv in ("clip", "video") for n in ("reliability", "pr_curves", "per_class_ap")]
        fig = dict(report_figures(rep))["clip/pr_curves"]
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any(t.startswith("micro (AP ") for t in legend)
        assert f"micro (AP {rep.scalars['clip/mAP_micro']:.3f})" in legend


@pytest.mark.parametrize("c, task", [(3, "multiclass"), (12, "multiclass"), (60, "multiclass"), (5, "multilabel"),
                                     (1, "binary")])
def test_titles_fit_inside_every_figure(c, task):
    from video_metrics.plots import report_figures

    g = torch.Generator().manual_seed(0)
    n = 120
    if task == "binary":
        s, t = torch.randn(n, generator=g), torch.randint(0, 2, (n,), generator=g)
        t = t.view(-1, 4)[:, :1].expand(-1, 4).reshape(-1)
        suite = vm.VideoClassificationMetrics(task="binary", video_reduction="mean_logits",
                                              class_names=["a rather long positive class name"])
    else:
        s = torch.randn(n, c, generator=g)
        if task == "multiclass":
            t = torch.randint(0, c, (n // 4,), generator=g).repeat_interleave(4)
        else:
            t = (torch.rand(n // 4, c, generator=g) < 0.4).long().repeat_interleave(4, 0)
        suite = vm.VideoClassificationMetrics(c, task=task, top_k=(1,), video_reduction="mean_logits")
    suite.update(s, t, torch.arange(n) // 4, torch.arange(n) % 4)
    rep = suite.report()
    tags = []
    for tag, fig in report_figures(rep):
        tags.append(tag)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        texts = [fig._suptitle] if fig._suptitle is not None else []
        texts += [ax.title for ax in fig.axes if ax.get_title()]
        for text in texts:
            ext = text.get_window_extent(renderer)
            assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, (tag, text.get_text(), ext, box)
    if task != "multilabel":
        assert "video/confusion_matrix" in tags
