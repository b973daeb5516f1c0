"""Defects found by replaying other projects' expectations (torchmetrics, scikit-learn,
mmaction2, the Charades script) and by trying the package as a new user: each test here failed
before the fix."""
import math
import warnings

import numpy as np
import pytest
import torch
import torchmetrics
import torchmetrics.classification as tmc
from sklearn import metrics as skm

import video_metrics as vm
from video_metrics.functional.calibration import bin_index


# ------------------------------------------------------------------ 1. calibration bin edges
@pytest.mark.parametrize("n_bins", [3, 10, 15, 100, 1000])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_bin_index_is_decided_on_the_real_numbers(n_bins, dtype):
    # every value representable in the dtype near each edge i/M, and the edges themselves
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    c = edges.to(dtype)
    for _ in range(2):
        c = torch.cat([c, torch.nextafter(c, torch.full_like(c, 2.0)), torch.nextafter(c, torch.full_like(c, -1.0))])
    c = c.clamp(0, 1).unique()
    got = bin_index(c, n_bins)
    # exact rational reference: bin i iff i/M < c <= (i+1)/M, c = 0 -> 0
    from fractions import Fraction
    want = []
    for v in c.double().tolist():
        f = Fraction(v)
        i = math.ceil(f * n_bins) - 1
        want.append(min(max(i, 0), n_bins - 1))
    assert got.tolist() == want


def test_calibration_bins_match_torchmetrics_at_edges():
    m = vm.CalibrationError(2, task="multilabel", n_bins=100, input="probs")
    m.update(torch.tensor([[.33, .33], [.34, .34]]), torch.tensor([[0, 0], [1, 1]]))
    assert float(m.compute()) == pytest.approx(0.495, abs=1e-6)
    # the 15-bin edge cases: 8/15, 0.6, 2/3 are edges and belong to the bin below
    conf = torch.tensor([8 / 15, 0.6, 2 / 3], dtype=torch.float64)
    assert bin_index(conf, 15).tolist() == [7, 8, 9]
    # fp64 probabilities stay fp64: 0.33 (a double slightly above 33/100) lands in bin 33
    m64 = vm.CalibrationError(2, task="multilabel", n_bins=100, input="probs", binning="uniform")
    m64.update(torch.tensor([[.33, .33], [.34, .34]], dtype=torch.float64), torch.tensor([[0, 0], [1, 1]]))
    rel = m64.reliability()
    assert rel.count[33].item() == 2 and rel.count[34].item() == 2
    bce = tmc.BinaryCalibrationError(n_bins=100)  # the same pairs pooled, as torchmetrics bins them
    bce.update(torch.tensor([.33, .33, .34, .34]), torch.tensor([0, 0, 1, 1]))
    assert float(m.compute()) == pytest.approx(float(bce.compute()), abs=1e-6)


def test_suite_and_histogram_ece_use_exact_bins():
    # multiclass probabilities exactly on 15-bin edges: 0.6 top-label confidences
    p = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.4, 0.6], [0.6, 0.4]], dtype=torch.float32)
    t = torch.tensor([0, 1, 1, 0])
    for kw in ({}, {"bins": 16}):
        suite = vm.VideoClassificationMetrics(2, input="probs", calibration_bins=15, **kw)
        suite.update(p, t)
        rel = suite.report().clip.reliability
        # fp32(0.6) = 0.60000002 > 9/15: bin 9, not bin 8 (the float32 linspace edge was above it)
        assert rel.count.tolist()[9] == 4, kw
        assert rel.edges.dtype == torch.float64


# ------------------------------------------------------------------ 2. empty classes x average
@pytest.mark.parametrize("average", ["macro", "weighted", "micro", "none"])
@pytest.mark.parametrize("empty", ["skip", "nan", "zero"])
def test_ap_with_no_positive_at_all(average, empty):
    s = torch.tensor([[0.2, 0.9], [0.7, 0.1], [0.4, 0.4]])
    t = torch.zeros(3, 2, dtype=torch.long)
    m = vm.MeanAveragePrecision(2, input="probs", empty_class=empty, average=average)
    m.update(s, t)
    v = m.compute()
    if empty == "zero":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = skm.average_precision_score(t.numpy(), s.numpy(), average=None if average == "none" else average)
        np.testing.assert_allclose(np.asarray(v.double()), sk, atol=1e-12)
        assert torch.isfinite(v).all()
    else:
        assert torch.isnan(v).all()


@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
@pytest.mark.parametrize("empty", ["skip", "nan", "zero"])
def test_auroc_with_no_positive_or_no_negative(average, empty):
    s = torch.tensor([[0.2, 0.9], [0.7, 0.1], [0.4, 0.4]])
    for t in (torch.zeros(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long)):
        m = vm.AUROC(2, task="multilabel", input="probs", empty_class=empty, average=average)
        m.update(s, t)
        v = float(m.compute())
        if empty == "zero":
            assert v == 0.0
        else:
            assert math.isnan(v)
    # one defined class: skip/zero differ as documented, macro and weighted
    t = torch.tensor([[1, 0], [0, 0], [1, 0]])
    m = vm.AUROC(2, task="multilabel", input="probs", empty_class=empty, average=average)
    m.update(s, t)
    v = float(m.compute())
    a0 = skm.roc_auc_score(t[:, 0].numpy(), s[:, 0].numpy())
    if average == "micro":
        assert v == pytest.approx(skm.roc_auc_score(t.numpy().ravel(), s.numpy().ravel()))
    elif empty == "skip":
        assert v == pytest.approx(a0)
    elif empty == "zero":
        assert v == pytest.approx(a0 if average == "weighted" else a0 / 2)  # weighted: class 1 has weight 0
    else:
        assert math.isnan(v)


# ------------------------------------------------------------------ 4, 5. constructor errors
def test_k_larger_than_num_classes_is_refused():
    with pytest.raises(ValueError, match="`k`=10 is larger than `num_classes`=5"):
        vm.TopKAccuracy(5, k=10)
    with pytest.raises(ValueError, match="`top_k`"):
        vm.VideoClassificationMetrics(5, top_k=(1, 10))
    # the default top-k adapts to small problems instead of failing
    assert vm.VideoClassificationMetrics(3).top_k == (1,)
    assert vm.VideoClassificationMetrics(12).top_k == (1, 5)


@pytest.mark.parametrize("make", [
    lambda: vm.TopKAccuracy(5, task="multilabel"),
    lambda: vm.BalancedAccuracy(5, task="multilabel"),
    lambda: vm.ConfusionMatrix(5, task="multilabel"),
])
def test_unsupported_task_is_a_clear_error(make):
    with pytest.raises(ValueError, match="does not support task='multilabel'"):
        make()


@pytest.mark.parametrize("make, word", [
    (lambda: vm.TopKAccuracy(5, task="regression"), "task"),
    (lambda: vm.TopKAccuracy(5, input="auto"), "input"),
    (lambda: vm.BalancedAccuracy(5, predicted_absent="drop"), "predicted_absent"),
    (lambda: vm.PrecisionRecallF1(5, beta=-1), "beta"),
    (lambda: vm.PrecisionRecallF1(5, zero_division=0.5), "zero_division"),
    (lambda: vm.AUROC(5, average="samples"), "average"),
    (lambda: vm.MeanAveragePrecision(5, average="samples", ap_mode="voc11"), "average"),
    (lambda: vm.TopKAccuracy(task="binary", k=2), "k"),
    (lambda: vm.VideoClassificationMetrics(5, predicted_absent="x"), "predicted_absent"),
    (lambda: vm.VideoClassificationMetrics(5, ap_empty_class="x"), "ap_empty_class"),
    (lambda: vm.VideoClassificationMetrics(5, empty_videos="exclude"), "empty_videos"),
    (lambda: vm.VideoClassificationMetrics(task="binary", video_reduction="vote"), "video_reduction"),
    (lambda: vm.TopKAccuracy(5, bogus=1), "bogus"),
])
def test_wrong_options_name_the_argument(make, word):
    with pytest.raises(ValueError, match=word):
        make()


# ------------------------------------------------------------------ 6. probabilities as logits
def test_probabilities_passed_as_logits_warn_once_at_compute():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=g) * 3
    t = torch.randint(0, 5, (200,), generator=g)
    probs = logits.softmax(1)
    m = vm.CalibrationError(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.update(probs, t)  # never in update()
    with pytest.warns(UserWarning, match='input="probs"'):
        wrong = float(m.compute())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.compute()  # once
    right = vm.CalibrationError(5, input="probs")
    right.update(probs, t)
    assert abs(float(right.compute()) - wrong) > 0.05
    # real logits: no warning; a single logit row outside [0, 1]: no warning
    for x in (logits, torch.cat([probs, logits[:1]])):
        ok = vm.VideoClassificationMetrics(5, top_k=(1,))
        ok.update(x, torch.cat([t, t[:1]])[: x.shape[0]])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ok.compute()
    suite = vm.VideoClassificationMetrics(5, top_k=(1,))
    suite.update(probs, t)
    with pytest.warns(UserWarning, match="looks like probabilities"):
        suite.compute()
    ml = vm.MeanAveragePrecision(5)
    ml.update(torch.rand(10, 5, generator=g), torch.randint(0, 2, (10, 5), generator=g))
    with pytest.warns(UserWarning, match='input="probs"'):
        ml.compute()


# ------------------------------------------------------------------ 7. binary task
def _binary_data(n=300, seed=0, ties=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, generator=g) + 1.2 * y
    if ties:
        x = (x * 2).round() / 2
    return x, y


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_binary_metrics_against_sklearn(ties, dtype):
    x, y = _binary_data(ties=ties)
    x = x.to(dtype)
    p = torch.sigmoid(x.float()).double().numpy()
    yn = y.numpy()
    pred = (p > 0.5).astype(int)
    cases = [
        (vm.AUROC(task="binary"), skm.roc_auc_score(yn, x.double().numpy())),
        (vm.MeanAveragePrecision(task="binary"), skm.average_precision_score(yn, x.double().numpy())),
        (vm.TopKAccuracy(task="binary"), skm.accuracy_score(yn, pred)),
        (vm.BalancedAccuracy(task="binary"), skm.balanced_accuracy_score(yn, pred)),
        (vm.Precision(task="binary"), skm.precision_score(yn, pred)),
        (vm.Recall(task="binary"), skm.recall_score(yn, pred)),
        (vm.F1Score(task="binary", beta=2.0), skm.fbeta_score(yn, pred, beta=2.0)),
    ]
    for m, want in cases:
        m.update(x[:100], y[:100])
        m.update(x[100:], y[100:])
        assert float(m.compute()) == pytest.approx(want, abs=1e-6), type(m).__name__
    cm = vm.ConfusionMatrix(task="binary")
    cm.update(x, y)
    np.testing.assert_array_equal(cm.compute().numpy(), skm.confusion_matrix(yn, pred, labels=[0, 1]))
    ece = vm.CalibrationError(task="binary", n_bins=10)
    ece.update(x, y)
    tm = tmc.BinaryCalibrationError(n_bins=10)
    tm.update(torch.sigmoid(x.float()), y)
    assert float(ece.compute()) == pytest.approx(float(tm.compute()), abs=1e-5)
    curve = vm.PRCurve(task="binary")
    curve.update(x, y)
    pr = curve.compute()
    skp, skr, _ = skm.precision_recall_curve(yn, x.double().numpy())
    np.testing.assert_allclose(pr.precision[0].numpy(), skp, atol=1e-12)
    np.testing.assert_allclose(pr.recall[0].numpy(), skr, atol=1e-12)


def test_binary_probabilities_and_bad_values():
    x, y = _binary_data()
    p = torch.sigmoid(x)
    m = vm.AUROC(task="binary", input="probs")
    m.update(p, y)
    assert float(m.compute()) == pytest.approx(skm.roc_auc_score(y.numpy(), p.numpy()))
    bad = vm.AUROC(task="binary")
    bad.update(torch.tensor([0.1, float("nan"), 0.3]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="1 row\\(s\\) with a `target`.*binary|0 or 1"):
        bad.compute()
    with pytest.raises(ValueError, match="shape \\(N,\\)"):
        vm.AUROC(task="binary").update(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("reduction", ["mean_logits", "mean_probs", "max"])
def test_binary_suite_equals_sklearn_on_clips_and_videos(reduction):
    g = torch.Generator().manual_seed(3)
    v, k = 40, 3
    yv = torch.randint(0, 2, (v,), generator=g)
    x = torch.randn(v * k, generator=g) + 1.5 * yv.repeat_interleave(k)
    y = yv.repeat_interleave(k)
    vid = torch.arange(v).repeat_interleave(k)
    suite = vm.VideoClassificationMetrics(task="binary", video_reduction=reduction, class_names=["present"])
    suite.update(x, y, vid, torch.arange(v * k) % k)
    out = suite.compute()
    p = torch.sigmoid(x.double())
    yn = y.numpy()
    assert float(out["clip/auroc"]) == pytest.approx(skm.roc_auc_score(yn, x.numpy()))
    assert float(out["clip/ap"]) == pytest.approx(skm.average_precision_score(yn, x.numpy()))
    assert float(out["clip/acc"]) == pytest.approx(skm.accuracy_score(yn, (p > 0.5).numpy()))
    assert float(out["clip/f1"]) == pytest.approx(skm.f1_score(yn, (p > 0.5).numpy()))
    assert float(out["clip/nll"]) == pytest.approx(skm.log_loss(yn, p.numpy()), rel=1e-6)
    assert float(out["clip/brier"]) == pytest.approx(skm.brier_score_loss(yn, p.numpy()), rel=1e-6)
    pv = p.view(v, k)
    video_p = {"mean_logits": torch.sigmoid(x.double().view(v, k).mean(1)), "mean_probs": pv.mean(1),
               "max": pv.max(1).values}[reduction]
    assert float(out["video/auroc"]) == pytest.approx(skm.roc_auc_score(yv.numpy(), video_p.numpy()))
    assert float(out["video/balanced_acc"]) == pytest.approx(
        skm.balanced_accuracy_score(yv.numpy(), (video_p > 0.5).numpy()))
    if reduction != "max":
        assert float(out["video/nll"]) == pytest.approx(skm.log_loss(yv.numpy(), video_p.numpy()), rel=1e-6)
    else:
        assert "video/nll" not in out
    rep = suite.report()
    assert rep.clip.confusion.tolist() == skm.confusion_matrix(yn, (p > 0.5).numpy()).tolist()
    hist = vm.VideoClassificationMetrics(task="binary", bins=2000)
    hist.update(x, y)
    h = hist.compute()
    for key in ("acc", "balanced_acc", "f1", "nll", "brier", "ece"):
        assert float(h[f"clip/{key}"]) == pytest.approx(float(out[f"clip/{key}"]), abs=1e-6), key
    assert float(h["clip/auroc"]) == pytest.approx(float(out["clip/auroc"]), abs=2e-3)


# ------------------------------------------------------------------ 8. average="samples"
def test_mmaction2_mmit_example_and_sklearn_samples():
    # mmaction2 tests: y=[0,0,1,1], s=[.1,.4,.35,.8] -> 0.8333
    m = vm.MeanAveragePrecision(4, average="samples", input="probs")
    m.update(torch.tensor([[.1, .4, .35, .8]]), torch.tensor([[0, 0, 1, 1]]))
    assert float(m.compute()) == pytest.approx(0.8333333, abs=1e-6)
    g = torch.Generator().manual_seed(5)
    s = (torch.randn(120, 7, generator=g) * 2).round() / 2  # ties within samples
    t = (torch.rand(120, 7, generator=g) < 0.35).long()
    t[0], t[1] = 0, 1
    for cls, fn in ((vm.MeanAveragePrecision, skm.average_precision_score), (vm.AUROC, skm.roc_auc_score)):
        for bins in (None, 64):
            m = cls(7, task="multilabel", average="samples", empty_class="skip", bins=bins)
            for i in range(0, 120, 17):  # batch by batch
                m.update(s[i:i + 17], t[i:i + 17])
            defined = [i for i in range(120) if (t[i].sum() > 0 and (cls is vm.MeanAveragePrecision or t[i].sum() < 7))]
            want = fn(t[defined].numpy(), s[defined].numpy(), average="samples")
            assert float(m.compute()) == pytest.approx(want, abs=1e-9)
    z = vm.MeanAveragePrecision(7, average="samples", empty_class="zero")
    z.update(s, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(z.compute()) == pytest.approx(skm.average_precision_score(t.numpy(), s.numpy(), average="samples"))


# ------------------------------------------------------------------ 9. F-beta and zero_division
@pytest.mark.parametrize("zero_division", [0.0, 1.0, float("nan")])
@pytest.mark.parametrize("average", ["macro", "weighted", "micro", "none"])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_and_zero_division_match_sklearn(zero_division, average, beta):
    g = torch.Generator().manual_seed(11)
    c = 6
    # class 4 never predicted, class 5 never a target: zero divisions on both sides
    t = torch.randint(0, 5, (80,), generator=g)
    s = torch.randn(80, c, generator=g)
    s[:, 4] -= 10
    s[:3, 5] += 10
    pred = s.argmax(1).numpy()
    m = vm.PrecisionRecallF1(c, average=average, beta=beta, zero_division=zero_division)
    m.update(s, t)
    out = m.compute()
    labels = sorted(set(t.tolist()) | set(pred.tolist())) if average != "none" else list(range(c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = skm.precision_recall_fscore_support(t.numpy(), pred, beta=beta, labels=labels,
                                                         average=None if average == "none" else average,
                                                         zero_division=zero_division)
    np.testing.assert_allclose(out["precision"].numpy(), p, atol=1e-12)
    np.testing.assert_allclose(out["recall"].numpy(), r, atol=1e-12)
    np.testing.assert_allclose(out["f1"].numpy(), f, atol=1e-12)
    # multilabel
    tm = (torch.rand(40, c, generator=g) < 0.3).long()
    tm[:, 2] = 0
    sm = torch.randn(40, c, generator=g)
    sm[:, 3] = -9
    ml = vm.PrecisionRecallF1(c, task="multilabel", average=average, beta=beta, zero_division=zero_division)
    ml.update(sm, tm)
    o = ml.compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = skm.precision_recall_fscore_support(tm.numpy(), (torch.sigmoid(sm) > 0.5).long().numpy(),
                                                         beta=beta, average=None if average == "none" else average,
                                                         zero_division=zero_division)
    np.testing.assert_allclose(o["f1"].numpy(), f, atol=1e-12)
    np.testing.assert_allclose(o["precision"].numpy(), p, atol=1e-12)


# ------------------------------------------------------------------ 10. suite options
def test_suite_predicted_absent_follows_mmaction2():
    s = torch.full((4, 5), -5.0)
    s[[0, 1, 2], 2] = 5
    s[3, 4] = 5  # targets [2,2,2,3], predictions [2,2,2,4]
    t = torch.tensor([2, 2, 2, 3])
    for rule, want in (("ignore", 0.5), ("zero", 1 / 3)):
        suite = vm.VideoClassificationMetrics(5, top_k=(1,), predicted_absent=rule)
        suite.update(s, t)
        out = suite.compute()
        assert float(out["clip/balanced_acc"]) == pytest.approx(want)
        assert float(out["clip/mean_class_top1"]) == pytest.approx(want)
        hist = vm.VideoClassificationMetrics(5, top_k=(1,), predicted_absent=rule, bins=50)
        hist.update(s, t)
        assert float(hist.compute()["clip/balanced_acc"]) == pytest.approx(want)


def test_suite_separate_empty_class_policies_match_torchmetrics():
    g = torch.Generator().manual_seed(2)
    c = 6
    t = torch.randint(0, 5, (90,), generator=g)  # class 5 has no positive
    s = torch.randn(90, c, generator=g)
    suite = vm.VideoClassificationMetrics(c, top_k=(1,), ap_empty_class="skip", auroc_empty_class="zero")
    suite.update(s, t)
    out = suite.compute()
    p = s.softmax(1)
    tm_auc = torchmetrics.functional.classification.multiclass_auroc(p, t, c, average="macro", thresholds=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm_ap = torchmetrics.functional.classification.multiclass_average_precision(p, t, c, average="macro",
                                                                                    thresholds=None)
    assert float(out["clip/auroc_macro"]) == pytest.approx(float(tm_auc), abs=1e-6)
    assert float(out["clip/auprc_macro"]) == pytest.approx(float(tm_ap), abs=1e-6)


def test_charades_empty_video_exclusion():
    g = torch.Generator().manual_seed(4)
    c, v = 5, 30
    t = (torch.rand(v, c, generator=g) < 0.3).long()
    t[t.sum(1) == 0, 0] = 1
    s = torch.randn(v, c, generator=g)
    empty_t = torch.zeros(3, c, dtype=torch.long)
    empty_s = torch.full((3, c), 9.0)  # confident on every class, no label: the Charades test H
    base = vm.VideoClassificationMetrics(c, task="multilabel", empty_videos="exclude")
    base.update(s, t)
    ref = base.compute()
    for rule in ("keep", "exclude"):
        suite = vm.VideoClassificationMetrics(c, task="multilabel", empty_videos=rule, video_reduction="max")
        ids = torch.arange(v + 3)
        suite.update(torch.cat([s, empty_s]), torch.cat([t, empty_t]), ids, torch.zeros_like(ids))
        out = suite.compute()
        sk = skm.average_precision_score(torch.cat([t, empty_t]).numpy(), torch.cat([s, empty_s]).numpy(),
                                         average="macro")
        if rule == "exclude":
            assert float(out["clip/mAP"]) == pytest.approx(float(ref["clip/mAP"]))
            assert float(out["video/mAP"]) == pytest.approx(float(ref["clip/mAP"]))
            assert float(out["clip/mAP_weighted"]) == pytest.approx(float(ref["clip/mAP_weighted"]))
            assert float(out["clip/mAP"]) > sk
        else:
            assert float(out["clip/mAP"]) == pytest.approx(sk)


# ------------------------------------------------------------------ 12. tensor-valued P/R/F1
def test_precision_recall_f1_tensors_share_state_in_a_collection():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(64, 5, generator=g), torch.randint(0, 5, (64,), generator=g)
    col = torchmetrics.MetricCollection({"p": vm.Precision(5), "r": vm.Recall(5), "f": vm.F1Score(5),
                                         "f2": vm.F1Score(5, beta=2.0), "top1": vm.TopKAccuracy(5)})
    col.update(s[:32], t[:32])
    col.update(s[32:], t[32:])
    groups = [sorted(g_) for g_ in col.compute_groups.values()]
    assert sorted(["f", "f2", "p", "r"]) in groups
    out = col.compute()
    pred = s.argmax(1).numpy()
    assert float(out["p"]) == pytest.approx(skm.precision_score(t.numpy(), pred, average="macro"))
    assert float(out["r"]) == pytest.approx(skm.recall_score(t.numpy(), pred, average="macro"))
    assert float(out["f"]) == pytest.approx(skm.f1_score(t.numpy(), pred, average="macro"))
    assert float(out["f2"]) == pytest.approx(skm.fbeta_score(t.numpy(), pred, beta=2.0, average="macro"))
    assert float(out["top1"]) == pytest.approx(skm.accuracy_score(t.numpy(), pred))


def test_precision_works_with_bootstrapper_and_classwise_wrapper():
    from torchmetrics.wrappers import BootStrapper, ClasswiseWrapper

    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(200, 3, generator=g), torch.randint(0, 3, (200,), generator=g)
    s[torch.arange(200), t] += 1.0
    boot = BootStrapper(vm.F1Score(3), num_bootstraps=20, sampling_strategy="multinomial")
    boot.update(s, t)
    res = boot.compute()
    f1 = skm.f1_score(t.numpy(), s.argmax(1).numpy(), average="macro")
    assert abs(float(res["mean"]) - f1) < 0.05 and 0 < float(res["std"]) < 0.1
    wrapped = ClasswiseWrapper(vm.Recall(3, average="none"), labels=["a", "b", "c"])
    wrapped.update(s, t)
    out = wrapped.compute()
    want = skm.recall_score(t.numpy(), s.argmax(1).numpy(), average=None)
    assert sorted(out) == ["recall_a", "recall_b", "recall_c"]
    np.testing.assert_allclose([float(out[f"recall_{k}"]) for k in "abc"], want)


def test_precision_logged_with_self_log_in_lightning(tmp_path):
    import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.prec = vm.Precision(3)

        def validation_step(self, batch, _):
            x, y = batch
            self.prec.update(self.lin(x), y)
            self.log("val/precision", self.prec, on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = Module()
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    res = trainer.validate(model, loader, verbose=False)
    with torch.no_grad():
        pred = model.lin(x).argmax(1).numpy()
    assert res[0]["val/precision"] == pytest.approx(skm.precision_score(y.numpy(), pred, average="macro"), abs=1e-6)


# ------------------------------------------------------------------ 13. checkpoints
ORDERS = [
    ("construct", "persistent", "update", "state_dict"),
    ("construct", "update", "persistent", "state_dict"),
    ("construct", "update", "state_dict"),
    ("construct", "persistent", "state_dict"),
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("make", [lambda: vm.AUROC(4), lambda: vm.TopKAccuracy(4), lambda: vm.Precision(4),
                                  lambda: vm.VideoClassificationMetrics(4, video_reduction="mean_logits")])
def test_state_dict_round_trips_in_every_order(order, make):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 4, generator=g), torch.tensor([2, 2, 1, 1, 0, 0])
    args = (s, t, torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 1, 0, 1]))
    m = make()
    nargs = 4 if isinstance(m, vm.VideoClassificationMetrics) else 2
    for step in order[1:]:
        if step == "persistent":
            m.persistent(True)
        elif step == "update":
            m.update(*args[:nargs])
        else:
            sd = m.state_dict()
    assert not any(k.startswith("sig_") for k in sd)
    for persistent_first in (True, False):
        fresh = make()
        if persistent_first:
            fresh.persistent(True)
        fresh.load_state_dict(sd, strict=True)
        if "update" in order and "persistent" in order:
            got, want = fresh.compute(), m.compute()
            if isinstance(got, dict):
                for k in got:
                    assert torch.allclose(got[k].double(), want[k].double(), equal_nan=True), k
            else:
                assert torch.allclose(got.double(), want.double(), equal_nan=True)
        fresh.update(*args[:nargs])  # still usable


def test_checkpoint_with_metric_inside_lightning_module(tmp_path):
    import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.auroc = vm.AUROC(3)
            self.auroc.persistent(True)

    a = Module()
    a.auroc.update(torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0]))
    a.auroc.persistent(True)
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": a.state_dict()}, path)
    b = Module()
    b.load_state_dict(torch.load(path, weights_only=True)["state_dict"], strict=True)
    assert float(b.auroc.compute()) == pytest.approx(float(a.auroc.compute()))
    # a checkpoint written before the fix (with a signature key) still loads
    old = dict(a.state_dict())
    old["auroc.sig_0123456789abcdef"] = torch.zeros(0)
    Module().load_state_dict(old, strict=True)


# ------------------------------------------------------------------ 14. ids
def test_string_video_ids_point_to_the_registry_and_stable_id_takes_a_list():
    names = ["yt_abc", "yt_abc", "file_2.mp4"]
    suite = vm.VideoClassificationMetrics(3, top_k=(1,), video_reduction="mean_probs")
    with pytest.raises(TypeError, match="IdRegistry.*stable_id"):
        suite.update(torch.randn(3, 3), torch.tensor([0, 0, 1]), names)
    ids = vm.stable_id(names)
    assert ids.dtype == torch.long and ids.tolist() == [vm.stable_id(n) for n in names]
    suite.update(torch.randn(3, 3), torch.tensor([0, 0, 1]), ids)
    assert float(suite.compute()["video/num_videos"]) == 2
    with pytest.raises(TypeError, match="list of str"):
        vm.stable_id(["a", 3])


def test_binary_nll_with_a_certain_right_probability_is_finite():
    # p = 1 for a positive and p = 0 for a negative cost nothing (0 * log(0) must not become NaN)
    p = torch.tensor([1.0, 0.0, 0.7, 0.2], dtype=torch.float64)
    y = torch.tensor([1, 0, 1, 0])
    suite = vm.VideoClassificationMetrics(task="binary", input="probs", video_reduction="mean_probs")
    suite.update(p, y, torch.arange(4))
    out = suite.compute()
    want = skm.log_loss(y.numpy(), p.numpy())
    assert float(out["clip/nll"]) == pytest.approx(want) and float(out["video/nll"]) == pytest.approx(want)
