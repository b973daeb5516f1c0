"""Every metric against scikit-learn (or a NumPy oracle of the documented rule), on random and
adversarial data, C in {2, 10, 400}, in several batches, with fp32/fp16/bf16 inputs."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import video_metrics as vm
from video_metrics.functional.classification import log_softmax_rows
from _data import KINDS, batches, multiclass, multilabel, sigmoid_np, softmax_np

CASES = [(kind, c, seed) for kind in KINDS for c in (2, 10, 400) for seed in (0, 1)]


def n_for(c):
    return 1500 if c == 400 else 120


def feed(metric, s, t, size=37):
    for sb, tb in zip(batches(s, size), batches(t, size)):
        metric.update(sb, tb)
    return metric


def topk_oracle(s, t, k):
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # ties to the lower class index
    return (order == t[:, None]).any(1)


@pytest.mark.parametrize("kind,c,seed", CASES)
def test_multiclass_label_metrics(kind, c, seed):
    s, t = multiclass(kind, n_for(c), c, seed)
    sn, tn = s.numpy(), t.numpy()
    pred = sn.argmax(1)
    for k in (1, 5):
        if k >= c:
            continue
        hits = topk_oracle(sn, tn, k)
        got = feed(vm.TopKAccuracy(c, k=k), s, t).compute().item()
        assert got == pytest.approx(hits.mean(), abs=1e-12)
        if kind != "ties" and c > 2:
            assert got == pytest.approx(skm.top_k_accuracy_score(tn, sn, k=k, labels=range(c)), abs=1e-12)
        per_class = [hits[tn == j].mean() for j in range(c) if (tn == j).any()]
        got = feed(vm.TopKAccuracy(c, k=k, average="macro"), s, t).compute().item()
        assert got == pytest.approx(np.mean(per_class), abs=1e-12)
    assert feed(vm.TopKAccuracy(c, k=1, average="macro"), s, t).compute().item() == pytest.approx(
        skm.balanced_accuracy_score(tn, pred), abs=1e-12)
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(tn, pred, average=average, zero_division=0)
        out = feed(vm.PrecisionRecallF1(c, average=average), s, t).compute()
        assert (out["precision"].item(), out["recall"].item(), out["f1"].item()) == pytest.approx((p, r, f), abs=1e-12)
    p, r, f, _ = skm.precision_recall_fscore_support(tn, pred, labels=range(c), average=None, zero_division=0)
    out = feed(vm.PrecisionRecallF1(c, average="none"), s, t).compute()
    np.testing.assert_allclose(out["precision"].numpy(), p, atol=1e-12)
    np.testing.assert_allclose(out["f1"].numpy(), f, atol=1e-12)
    assert feed(vm.BalancedAccuracy(c), s, t).compute().item() == pytest.approx(skm.balanced_accuracy_score(tn, pred), abs=1e-12)
    classes = np.union1d(tn, pred)
    mmaction = np.mean([(pred[tn == j] == j).mean() if (tn == j).any() else 0.0 for j in classes])
    assert feed(vm.BalancedAccuracy(c, predicted_absent="zero"), s, t).compute().item() == pytest.approx(mmaction, abs=1e-12)
    for norm in (None, "true", "pred", "all"):
        ref = skm.confusion_matrix(tn, pred, labels=range(c), normalize=norm)
        got = feed(vm.ConfusionMatrix(c, normalize=norm), s, t).compute().numpy()
        np.testing.assert_allclose(got, ref, atol=1e-12)
    # top-1 is the confusion matrix trace over N, whatever the ties
    cm = feed(vm.ConfusionMatrix(c), s, t).compute()
    assert feed(vm.TopKAccuracy(c), s, t).compute().item() == pytest.approx(cm.trace().item() / len(tn), abs=1e-12)


def per_class_ref(y, p, fn, need_neg=False):
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        if y[:, j].sum() > 0 and (not need_neg or y[:, j].sum() < len(y)):
            out[j] = fn(y[:, j], p[:, j])
    return out


def reduce_ref(vals, weights, average, empty):
    defined = ~np.isnan(vals)
    if average == "none":
        return np.where(defined, vals, 0.0 if empty == "zero" else np.nan)
    if empty == "nan" and not defined.all():
        return np.nan
    if empty == "zero":
        v, use = np.where(defined, vals, 0.0), np.ones_like(defined)
    else:
        v, use = vals, defined
    w = use.astype(float) if average == "macro" else weights * use
    if w.sum() == 0:
        return np.nan
    return float(np.sum(np.where(use, v, 0.0) * w) / w.sum())


def close(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("kind,c,seed", CASES)
@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_ranking_metrics(kind, c, seed, task):
    if task == "multiclass":
        s, t = multiclass(kind, n_for(c), c, seed)
        y = np.eye(c, dtype=int)[t.numpy()]
        # the metric ranks by fp32 log-softmax, x - logsumexp(x) (same order as the softmax, without
        # underflow ties)
        p = log_softmax_rows(s).numpy()
        if kind == "random":  # on tie-free data it also agrees with fp64 softmax probabilities
            loose = per_class_ref(y, softmax_np(s.numpy().astype(np.float64)), skm.average_precision_score)
            got = feed(vm.MeanAveragePrecision(c, task=task, average="none"), s, t).compute().numpy()
            np.testing.assert_allclose(got, loose, atol=1e-5, equal_nan=True)  # fp32 vs fp64 rounding
    else:
        s, t = multilabel(kind, n_for(c), c, seed)
        y = t.numpy()
        p = s.numpy()  # sigmoid is monotone: rank by logits, as the metric does
    ap = per_class_ref(y, p, skm.average_precision_score)
    auc = per_class_ref(y, p, skm.roc_auc_score, need_neg=True)
    pos = y.sum(0).astype(float)
    for average in ("macro", "weighted", "none"):
        for empty in ("skip", "nan", "zero"):
            got = feed(vm.MeanAveragePrecision(c, task=task, average=average, empty_class=empty), s, t).compute()
            close(got.numpy(), reduce_ref(ap, pos, average, empty))
            got = feed(vm.AUROC(c, task=task, average=average, empty_class=empty), s, t).compute()
            close(got.numpy(), reduce_ref(auc, pos, average, empty))
    # pooled over classes, compare on the exact fp32 scores the metric ranks by (fp32 and fp64
    # softmax can order a few near-equal pairs of different classes differently)
    pooled = (log_softmax_rows(s) if task == "multiclass" else s).numpy().ravel()
    if y.sum() > 0:
        got = feed(vm.MeanAveragePrecision(c, task=task, average="micro"), s, t).compute().item()
        assert got == pytest.approx(skm.average_precision_score(y.ravel(), pooled), abs=1e-12)
    if 0 < y.sum() < y.size:
        got = feed(vm.AUROC(c, task=task, average="micro"), s, t).compute().item()
        assert got == pytest.approx(skm.roc_auc_score(y.ravel(), pooled), abs=1e-12)
    # sklearn's own multilabel macro counts empty classes as 0: our "zero" policy
    if task == "multilabel" and kind == "no_positives":
        got = feed(vm.MeanAveragePrecision(c, task=task, empty_class="zero"), s, t).compute().item()
        assert got == pytest.approx(skm.average_precision_score(y, p, average="macro"), abs=1e-9)
    if c <= 10:
        curves = feed(vm.PRCurve(c, task=task), s, t).compute()
        for j in range(c):
            if y[:, j].sum() == 0:
                continue
            pr, rc, th = skm.precision_recall_curve(y[:, j], p[:, j])
            close(curves.precision[j].numpy(), pr)
            close(curves.recall[j].numpy(), rc)
            if task == "multilabel":
                np.testing.assert_allclose(curves.thresholds[j].numpy(), sigmoid_np(th.astype(np.float32)), rtol=1e-6)


def ece_oracle(conf, correct, n_bins, norm):
    edges = np.linspace(0, 1, n_bins + 1, dtype=np.float32)
    b = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, n_bins - 1)  # (lo, hi]
    gaps, weights = [], []
    for m in range(n_bins):
        sel = b == m
        if sel.any():
            gaps.append(abs(correct[sel].mean() - conf[sel].astype(np.float64).mean()))
            weights.append(sel.mean())
    gaps, weights = np.array(gaps), np.array(weights)
    return {"l1": (gaps * weights).sum(), "l2": math.sqrt((gaps ** 2 * weights).sum()), "max": gaps.max()}[norm]


@pytest.mark.parametrize("kind,c,seed", [x for x in CASES if x[1] != 400])
@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_calibration(kind, c, seed, task):
    gen = multiclass if task == "multiclass" else multilabel
    s, t = gen(kind, n_for(c), c, seed)
    if task == "multiclass":
        p = torch.softmax(s, 1).numpy()
        conf = p.max(1)
        correct = p.argmax(1) == t.numpy()
    else:
        conf = torch.sigmoid(s).numpy().ravel()
        correct = t.numpy().ravel().astype(bool)
    for norm in ("l1", "l2", "max"):
        got = feed(vm.CalibrationError(c, task=task, n_bins=10, norm=norm), s, t).compute().item()
        assert got == pytest.approx(ece_oracle(conf, correct, 10, norm), abs=1e-6)


def test_calibration_confidence_one_in_last_bin():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    m = vm.CalibrationError(2, n_bins=4, input="probs")
    m.update(probs, torch.tensor([0, 1, 1]))
    rel = m.reliability()
    assert rel.count.tolist() == [0, 1, 0, 2]  # 0.5 is in (0.25, 0.5]; both 1.0s in the last bin
    assert rel.accuracy[3].item() == 1.0 and rel.confidence[3].item() == 1.0
    assert m.compute().item() == pytest.approx(0.5 / 3)


def test_quantile_binning_equal_mass():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(1000, 5, generator=g)
    t = torch.randint(0, 5, (1000,), generator=g)
    m = vm.CalibrationError(5, n_bins=10, binning="quantile")
    m.update(s, t)
    rel = m.reliability()
    assert rel.count.tolist() == [100] * 10
    conf = torch.softmax(s, 1).max(1).values.double().sort().values
    correct = (torch.softmax(s, 1).argmax(1) == t).double()[torch.softmax(s, 1).max(1).values.double().argsort(stable=True)]
    gaps = (conf.view(10, 100).mean(1) - correct.view(10, 100).mean(1)).abs()
    assert m.compute().item() == pytest.approx(gaps.mean().item(), abs=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    s, t = multiclass("random", 600, 10, 3)
    sh = s.to(dtype)
    ref = sh.float()
    y = np.eye(10, dtype=int)[t.numpy()]
    p = softmax_np(ref.numpy().astype(np.float64))
    assert feed(vm.TopKAccuracy(10, k=5), sh, t).compute().item() == pytest.approx(topk_oracle(ref.numpy(), t.numpy(), 5).mean())
    got = feed(vm.MeanAveragePrecision(10, task="multiclass", average="none"), sh, t).compute().numpy()
    close(got, per_class_ref(y, p, skm.average_precision_score))
    got = feed(vm.AUROC(10, average="none"), sh, t).compute().numpy()
    close(got, per_class_ref(y, p, skm.roc_auc_score, need_neg=True))
    f1 = feed(vm.PrecisionRecallF1(10), sh, t).compute()["f1"].item()
    assert f1 == pytest.approx(skm.f1_score(t.numpy(), ref.numpy().argmax(1), average="macro", zero_division=0))


def test_logits_vs_probs_never_guessed():
    """Two batches of logits, one inside [0, 1]: torchmetrics would treat it as probabilities."""
    s = torch.tensor([[0.2, 0.9], [0.8, 0.1], [3.0, -2.0], [-1.0, 4.0]])
    t = torch.tensor([1, 1, 0, 1])
    m = vm.AUROC(2, average="none")
    m.update(s[:2], t[:2])
    m.update(s[2:], t[2:])
    p = softmax_np(s.numpy().astype(np.float64))
    assert m.compute()[1].item() == pytest.approx(skm.roc_auc_score(t.numpy(), p[:, 1]))
    c = vm.CalibrationError(2, n_bins=5)
    c.update(s[:2], t[:2])
    c.update(s[2:], t[2:])
    assert c.compute().item() == pytest.approx(ece_oracle(p.max(1), p.argmax(1) == t.numpy(), 5, "l1"), abs=1e-6)


def test_empty_class_auroc_is_not_zero_in_macro():
    s, t = multiclass("no_positives", 400, 10, 0)
    y = np.eye(10, dtype=int)[t.numpy()]
    p = softmax_np(s.numpy().astype(np.float64))
    present = y.sum(0) > 0
    ref = np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in range(10) if present[j]])
    assert feed(vm.AUROC(10), s, t).compute().item() == pytest.approx(ref)
    assert math.isnan(feed(vm.AUROC(10, empty_class="nan"), s, t).compute().item())


def test_softmax_underflow_does_not_create_ties():
    """Log-softmax ranking keeps order where fp32 softmax underflows to 0."""
    s = torch.tensor([[0.0, -200.0], [0.0, -150.0], [0.0, -120.0]])
    t = torch.tensor([0, 0, 1])
    assert torch.softmax(s, 1)[:, 1].eq(0).all()  # fp32 softmax: a three-way tie at 0
    m = vm.AUROC(2, average="none")
    m.update(s, t)
    assert m.compute()[1].item() == 1.0  # sample 2 has the highest class-1 probability


def test_ignore_index():
    s, t = multiclass("random", 200, 5, 0)
    t2 = t.clone()
    t2[::3] = -100
    keep = t2 != -100
    for cls in (vm.TopKAccuracy, vm.ConfusionMatrix, vm.BalancedAccuracy):
        a = feed(cls(5, ignore_index=-100), s, t2).compute()
        b = feed(cls(5), s[keep], t[keep]).compute()
        assert torch.equal(a, b)
    a = feed(vm.AUROC(5, ignore_index=-100), s, t2).compute()
    assert a.item() == pytest.approx(feed(vm.AUROC(5), s[keep], t[keep]).compute().item())


def test_hand_worked_examples():
    # step vs interpolated vs 11-point AP on ranked labels [0, 1, 1]
    s = torch.tensor([[3.0], [2.0], [1.0]]).repeat(1, 2)
    y = torch.tensor([[0, 1], [1, 1], [1, 0]])
    got = {mode: vm.MeanAveragePrecision(2, input="probs" if False else "logits", average="none", ap_mode=mode) for mode in ("step", "interpolated", "voc11")}
    for mode, m in got.items():
        m.update(s, y)
    assert got["step"].compute()[0].item() == pytest.approx(0.58333333)
    assert got["interpolated"].compute()[0].item() == pytest.approx(2 / 3)
    assert got["voc11"].compute()[0].item() == pytest.approx(2 / 3)
    # mean class accuracy: targets [2,2,2,3], predictions [2,2,2,4]
    scores = torch.nn.functional.one_hot(torch.tensor([2, 2, 2, 4]), 5).float()
    t = torch.tensor([2, 2, 2, 3])
    assert feed(vm.BalancedAccuracy(5), scores, t).compute().item() == pytest.approx(0.5)
    assert feed(vm.BalancedAccuracy(5, predicted_absent="zero"), scores, t).compute().item() == pytest.approx(1 / 3)
    # ties in scores group into one threshold: y=[0,1], s=[.5,.5] -> AP 0.5 in either order
    for order in ([0, 1], [1, 0]):
        m = vm.MeanAveragePrecision(2, input="probs", average="none")
        m.update(torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([[0, 0], [1, 1]])[order])
        assert m.compute()[0].item() == pytest.approx(0.5)
    # all-equal scores, k=5 of 10: only classes 0..4 are hits
    m = vm.TopKAccuracy(10, k=5)
    m.update(torch.zeros(10, 10), torch.arange(10))
    assert m.compute().item() == pytest.approx(0.5)


def test_top_confusions():
    scores = torch.nn.functional.one_hot(torch.tensor([1, 1, 1, 0, 2, 2, 0]), 3).float()
    t = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    m = vm.ConfusionMatrix(3)
    m.update(scores, t)
    assert m.top_confusions(2) == [(0, 1, 3), (1, 2, 2)]
    assert m.top_confusions(10) == [(0, 1, 3), (1, 2, 2), (1, 0, 1)]


def test_metric_collection_never_merges_top1_top5():
    """torchmetrics' compute groups merge metrics whose states match after batch one."""
    from torchmetrics import MetricCollection

    g = torch.Generator().manual_seed(0)
    s = torch.randn(512, 400, generator=g)
    t = s.argmax(1)  # every first-batch target is top-1: states of top-1 and top-5 agree at first
    t[64:] = torch.randint(0, 400, (448,), generator=g)
    col = MetricCollection({"top1": vm.TopKAccuracy(400, k=1, average="macro"), "top5": vm.TopKAccuracy(400, k=5, average="macro")})
    for i in range(0, 512, 64):
        col.update(s[i:i + 64], t[i:i + 64])
    out = col.compute()
    ref1 = feed(vm.TopKAccuracy(400, k=1, average="macro"), s, t, 64).compute()
    ref5 = feed(vm.TopKAccuracy(400, k=5, average="macro"), s, t, 64).compute()
    assert out["top1"].item() == pytest.approx(ref1.item()) and out["top5"].item() == pytest.approx(ref5.item())
    assert out["top5"].item() > out["top1"].item()
