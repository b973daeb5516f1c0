"""torchmetrics' ``plot(val=None, ax=None) -> (fig, ax)`` on every metric, checked by reading the
drawn artists back."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import video_metrics as vm  # noqa: E402
from _data import for_task  # noqa: E402
from _factories import all_metrics  # noqa: E402


def feed(m, n=60, c=5, seed=0):
    s, t = for_task(m.task, "random", n, c, seed)
    m.update(s, t)
    return s, t


@pytest.mark.parametrize("name", sorted(all_metrics(5)))
def test_every_metric_plots_something(name):
    m = all_metrics(5)[name]()
    feed(m)
    fig, ax = m.plot()
    assert isinstance(fig, Figure) and ax in fig.axes
    assert ax.lines or ax.patches or ax.images
    fig.canvas.draw()


def test_scalar_and_steps_are_drawn_as_torchmetrics_draws_them():
    m = vm.TopKAccuracy(5)
    s, t = feed(m)
    fig, ax = m.plot()
    assert ax.lines[0].get_ydata()[0] == pytest.approx(float(m.compute()))
    values = []
    for i in range(3):
        m.reset()
        m.update(s[i * 20:(i + 1) * 20], t[i * 20:(i + 1) * 20])
        values.append(m.compute())
    fig, ax = m.plot(values)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [float(v) for v in values])
    # into a given ax
    other = Figure()
    given = other.add_subplot(1, 1, 1)
    fig2, ax2 = m.plot(values, ax=given)
    assert ax2 is given and fig2 is other


def test_per_class_values_are_bars():
    m = vm.Recall(5, average="none")
    feed(m)
    val = m.compute()
    fig, ax = m.plot()
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, val.numpy())


def test_confusion_matrix_plot_has_the_matrix_and_names():
    m = vm.ConfusionMatrix(4)
    s, t = feed(m, c=4)
    names = ["walk", "run", "jump", "sit"]
    fig, ax = m.plot(labels=names)
    cm = m.compute().double().numpy()
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), norm)
    assert [x.get_text() for x in ax.get_yticklabels()] == names


def test_calibration_plot_is_the_reliability_diagram():
    m = vm.CalibrationError(5, n_bins=10)
    feed(m)
    rel = m.reliability()
    fig, ax = m.plot()
    heights = [p.get_height() for p in ax.patches[:10]]
    np.testing.assert_allclose(heights, np.nan_to_num(rel.accuracy.numpy()), atol=1e-12)
    assert "ECE" in ax.get_title()
    fig, ax = m.plot([m.compute(), m.compute()])  # values over steps: scalar plot
    assert len(ax.lines[0].get_ydata()) == 2


def test_pr_curve_plot_draws_each_class_curve():
    m = vm.PRCurve(3, task="multilabel")
    feed(m, c=3)
    curves = m.compute()
    fig, ax = m.plot(labels=["a", "b", "c"])
    assert len(ax.lines) == 3
    for line, p, r in zip(ax.lines, curves.precision, curves.recall):
        np.testing.assert_allclose(line.get_xdata(), r.numpy())
        np.testing.assert_allclose(line.get_ydata(), p.numpy())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]


def test_suite_and_aggregator_plot():
    suite = vm.VideoClassificationMetrics(5, top_k=(1,), video_reduction="mean_probs")
    agg = vm.VideoAggregator(5, reduction="mean_probs")
    s, t = for_task("multiclass", "random", 40, 5, 1)
    t = t.view(10, 4)[:, :1].expand(10, 4).reshape(-1)
    vid = torch.arange(40) // 4
    suite.update(s, t, vid)
    agg.update(s, t, vid)
    fig, ax = suite.plot()
    assert len(ax.lines) == len(suite.compute())
    fig, ax = agg.plot()
    assert sum(p.get_height() for p in ax.patches) == 10
