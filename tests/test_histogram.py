"""Histogram mode (bounded memory): accuracy against the exact metrics and scikit-learn, the
documented error bound, the suite's clip level, compiled update, forward()."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

import video_metrics as vm
from video_metrics.data import synthetic_predictions
from video_metrics.functional.histogram import hist_ap_auroc, hist_state, hist_update, hist_view


def realistic(n=20000, c=400, seed=0):
    """Logits of a decent 400-way video classifier: long-tailed classes, ~70% top-1, confident
    and unconfident clips, fp32."""
    g = torch.Generator().manual_seed(seed)
    freq = 1.0 / torch.arange(1, c + 1, dtype=torch.float64) ** 0.5
    t = torch.multinomial(freq, n, replacement=True, generator=g)
    confidence = 2.0 + 6.0 * torch.rand(n, 1, generator=g)
    logits = 1.5 * torch.randn(n, c, generator=g) + confidence * torch.nn.functional.one_hot(t, c)
    return logits.float(), t


@pytest.fixture(scope="module")
def data400():
    return realistic()


def test_1000_bins_within_target_error_on_realistic_400_class_data(data400):
    s, t = data400
    exact_ap, exact_auc = vm.MeanAveragePrecision(400, task="multiclass"), vm.AUROC(400)
    hist_ap, hist_auc = vm.MeanAveragePrecision(400, task="multiclass", bins=1000), vm.AUROC(400, bins=1000)
    per_class_e, per_class_h = vm.AUROC(400, average="none"), vm.AUROC(400, average="none", bins=1000)
    for i in range(0, len(t), 2048):
        for m in (exact_ap, exact_auc, hist_ap, hist_auc, per_class_e, per_class_h):
            m.update(s[i:i + 2048], t[i:i + 2048])
    top1 = float((s.argmax(1) == t).float().mean())
    assert 0.5 < top1 < 0.9
    ap_err = abs(float(hist_ap.compute()) - float(exact_ap.compute()))
    auc_err = abs(float(hist_auc.compute()) - float(exact_auc.compute()))
    print(f"1000 bins: |mAP error| {ap_err:.2e}, |mean AUROC error| {auc_err:.2e}")
    assert ap_err <= 2e-3 and auc_err <= 1e-3
    # per class, the AUROC error is within the bound the state reports
    diff = (per_class_h.compute() - per_class_e.compute()).abs()
    bound = per_class_h.error_bound()
    ok = torch.isfinite(diff)
    assert bool((diff[ok] <= bound[ok] + 1e-12).all())
    assert float(diff[ok].max()) <= 1e-3


def test_probability_thresholds_would_be_far_off(data400):
    """What the logit placement buys: 100 evenly spaced probability thresholds (torchmetrics'
    ``thresholds=100``) put nearly every 400-way softmax score in the first bin."""
    s, t = data400
    s, t = s[:4000], t[:4000]
    exact = float(vm.AUROC(400).forward(s, t))
    ours = vm.AUROC(400, bins=100)
    ours.update(s, t)
    from torchmetrics.classification import MulticlassAUROC

    tm = MulticlassAUROC(400, thresholds=100)
    tm.update(s.softmax(1), t)
    assert abs(float(ours.compute()) - exact) < 5e-3
    assert abs(float(tm.compute()) - exact) > 5 * abs(float(ours.compute()) - exact)


def test_exact_when_no_bin_mixes_positives_and_negatives():
    # distinct scores, positives and negatives never sharing a bin: equals sklearn (the order inside
    # a bin that holds only positives or only negatives does not change AP or AUROC)
    rng = np.random.default_rng(0)
    c, n, bins, r = 5, 300, 200, 20.0
    width = 2 * r / bins
    centre = -r + width * (rng.choice(bins // 2, size=(n, c)) * 2 + 0.5)  # even bins only
    centre += width * rng.uniform(-0.4, 0.4, size=(n, c))
    pos = rng.random((n, c)) < 0.3
    logit = np.where(pos, centre + width, centre)  # positives one bin up: odd bins
    m = vm.MeanAveragePrecision(c, average="none", bins=bins, bin_range=r)
    a = vm.AUROC(c, task="multilabel", average="none", bins=bins, bin_range=r)
    s, tt = torch.tensor(logit, dtype=torch.float32), torch.tensor(pos, dtype=torch.long)
    m.update(s, tt)
    a.update(s, tt)
    for k in range(c):
        assert float(m.compute()[k]) == pytest.approx(average_precision_score(pos[:, k], logit[:, k]), abs=1e-12)
        assert float(a.compute()[k]) == pytest.approx(roc_auc_score(pos[:, k], logit[:, k]), abs=1e-12)
    assert float(a.error_bound().max()) == 0.0


def test_within_bin_ap_is_precision_at_expected_rank():
    # one class, everything in one bin: p positives and n negatives in random order
    for p, nn in ((1, 1), (3, 5), (7, 2)):
        h = torch.zeros(1, 4, 2, dtype=torch.long)
        h[0, 2, 0], h[0, 2, 1] = p, nn
        ap, auc, _, _ = hist_ap_auroc(h)
        c = 1 + nn / (p + 1)
        expected = sum(j / (c * j) for j in range(1, p + 1)) / p
        assert float(ap[0]) == pytest.approx(expected, abs=1e-12)
        assert float(auc[0]) == pytest.approx(0.5, abs=1e-12)
    # with rows above the bin: a = 2 positives, b = 3 samples above
    h = torch.zeros(1, 4, 2, dtype=torch.long)
    h[0, 3, 0], h[0, 3, 1] = 2, 1
    h[0, 1, 0], h[0, 1, 1] = 2, 4
    ap, _, _, _ = hist_ap_auroc(h)
    top = 2 / (1 + 1 / 3)  # the top bin: a = b = 0, c = 1 + 1/3, sum_j j / (c j) = 2 / c
    lower = sum((2 + j) / (3 + (1 + 4 / 3) * j) for j in (1, 2))
    assert float(ap[0]) == pytest.approx((top + lower) / 4, abs=1e-12)


def test_hist_update_ignores_invalid_rows_and_clamps_the_ends():
    flat = hist_state(2, 10)
    logit = torch.tensor([[-100.0, float("inf")], [3.0, 0.0], [0.5, -0.5]])
    pos = torch.tensor([[True, False], [True, True], [False, True]])
    valid = torch.tensor([True, False, True])
    hist_update(flat, logit, pos, valid, 5.0)
    h = hist_view(flat, 2, 10)
    assert int(h.sum()) == 4 and int(flat[-1]) == 2  # the invalid row's 2 entries sit in the spare slot
    assert int(h[0, 0, 0]) == 1 and int(h[1, 9, 1]) == 1  # beyond the range: end bins
    assert int(h[0, 5, 1]) == 1 and int(h[1, 4, 0]) == 1


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_suite_histogram_mode_equals_exact_suite_except_ranking_estimates(task):
    d = synthetic_predictions(num_videos=300, clips_per_video=4, num_classes=40, task=task, seed=1)
    exact = vm.VideoClassificationMetrics(40, task=task)
    hist = vm.VideoClassificationMetrics(40, task=task, bins=1000)
    for i in range(0, 1200, 250):
        exact.update(d.scores[i:i + 250], d.target[i:i + 250])
        hist.update(d.scores[i:i + 250], d.target[i:i + 250])
    a, b = exact.compute(), hist.compute()
    assert set(a) == set(b)
    ranking = {"clip/auroc_macro", "clip/auprc_macro", "clip/mAP", "clip/mAP_micro", "clip/mAP_weighted"}
    for k in a:
        if k in ranking:
            assert float(b[k]) == pytest.approx(float(a[k]), abs=2e-3), k
        else:
            assert float(b[k]) == pytest.approx(float(a[k]), rel=1e-12, abs=1e-12), k
    ra, rb = exact.report(), hist.report()
    assert ra.clip.support == rb.clip.support and ra.clip.f1 == pytest.approx(rb.clip.f1, nan_ok=True)
    assert rb.clip.reliability is not None and len(rb.clip.pr_curves.precision) == 40
    state = sum(v.numel() * v.element_size() for v in hist.metric_state.values() if torch.is_tensor(v))
    assert state < 40 * 1000 * 2 * 8 + 40 * 40 * 8 + 4096  # O(C x bins + C^2), independent of N


def test_suite_histogram_mode_rejects_video_level_and_other_ap_modes():
    with pytest.raises(ValueError, match="video-level aggregation needs"):
        vm.VideoClassificationMetrics(10, bins=100, video_reduction="mean_logits")
    with pytest.raises(ValueError, match="bins"):
        vm.VideoClassificationMetrics(10, bins=1)
    with pytest.raises(ValueError, match="histogram mode"):
        vm.MeanAveragePrecision(10, bins=100, ap_mode="voc11")
    with pytest.raises(ValueError, match="compile_update"):
        vm.VideoClassificationMetrics(10, compile_update=True)
    m = vm.VideoClassificationMetrics(10, bins=100)
    with pytest.warns(UserWarning, match="padded duplicates|duplicates"):
        m.update(torch.randn(4, 10), torch.arange(4), torch.arange(4), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_compiled_update_gives_identical_results(task):
    """``compile_update``: the whole-suite histogram update traced by torch.compile with
    fullgraph=True (a graph break, e.g. a host sync or data-dependent shape, would raise)."""
    d = synthetic_predictions(num_videos=64, clips_per_video=4, num_classes=12, task=task, seed=2)
    eager = vm.VideoClassificationMetrics(12, task=task, bins=200)
    compiled = vm.VideoClassificationMetrics(12, task=task, bins=200, compile_update={"backend": "aot_eager"})
    bad = d.scores.clone()
    bad[3, 2] = float("nan")  # a bad row, counted on the device in both
    for i in range(0, 256, 64):
        eager.update(bad[i:i + 64], d.target[i:i + 64])
        compiled.update(bad[i:i + 64], d.target[i:i + 64])
    for name in eager.metric_state:
        if name.startswith("sig_"):  # the configuration digest differs by design (compile_update)
            continue
        assert torch.equal(getattr(eager, name), getattr(compiled, name)), name
    assert int(compiled.n_bad_score) == 1


def test_forward_returns_the_batch_value_without_computing_the_accumulated_state():
    s, t = realistic(600, 20, seed=3)
    for make in (lambda: vm.VideoClassificationMetrics(20, top_k=(1,)), lambda: vm.AUROC(20, bins=256),
                 lambda: vm.MeanAveragePrecision(20, task="multiclass")):
        m = make()
        rows_seen_by_compute = []
        original = m._check_rows

        def spy(original=original, m=m):
            rows_seen_by_compute.append(int(m.n_rows))
            return original()

        m._check_rows = spy
        for i in range(0, 600, 200):
            batch = make()
            batch.update(s[i:i + 200], t[i:i + 200])
            value = m(s[i:i + 200], t[i:i + 200])  # forward, as self.log(..., on_step=True) calls it
            if i == 200 and isinstance(getattr(m, "scores", None), list):
                first_chunks = [x.data_ptr() for x in m.scores[:2]]
            expected = batch.compute()
            if isinstance(value, dict):
                for k in value:
                    assert float(value[k]) == pytest.approx(float(expected[k]), abs=1e-12), k
            else:
                assert float(value) == pytest.approx(float(expected), abs=1e-12)
        assert rows_seen_by_compute == [200, 200, 200]  # the batch only, never the accumulated rows
        if isinstance(getattr(m, "scores", None), list):  # forward() kept the stored chunks, uncopied
            assert [x.data_ptr() for x in m.scores[:2]] == first_chunks, "forward() copied the stored rows"
        full = make()
        full.update(s, t)
        total, acc = full.compute(), m.compute()
        assert rows_seen_by_compute[-1] == 600
        if isinstance(total, dict):
            assert all(float(acc[k]) == pytest.approx(float(total[k]), abs=1e-12) for k in total)
        else:
            assert float(acc) == pytest.approx(float(total), abs=1e-12)
