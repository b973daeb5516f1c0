"""Every metric class and its functional twin through one harness (tests/_harness.py): for each
metric and option, the class fed in uneven batches, the function on all rows, the class on 2 gloo
processes with uneven, padded shards, and one independent reference (scikit-learn or a NumPy hand
computation) must agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import _dist
import video_metrics as vm
from _harness import C, Case, assert_close, ddp_worker, plain, run_class, run_functional
from video_metrics import functional as F

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------------------ references
def probs(case: Case, s: np.ndarray) -> np.ndarray:
    s = s.astype(np.float64)
    if case.probs:
        return s
    if case.task == "multiclass":
        e = np.exp(s - s.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return 1 / (1 + np.exp(-s))


def kept(t: np.ndarray, s: np.ndarray):
    """Rows whose target is not ignore_index (-1)."""
    keep = t != -1 if t.ndim == 1 else np.ones(len(t), bool)
    return s[keep], t[keep]


def ref_topk(k=1, average="micro"):
    def ref(case, s, t):
        s, t = kept(t, s)
        if case.task == "binary":
            return np.mean((s > (0.5 if case.probs else 0.0)) == t)
        hit = (np.argsort(-s, axis=1, kind="stable")[:, :k] == t[:, None]).any(1)
        if average == "micro":
            assert np.isclose(hit.mean(), skm.top_k_accuracy_score(t, s, k=k, labels=range(C)))
            return hit.mean()
        return np.mean([hit[t == c].mean() for c in range(C) if (t == c).any()])
    return ref


def predictions(case: Case, s: np.ndarray, threshold: float = 0.5):
    if case.task == "multiclass":
        return s.argmax(1)
    return (probs(case, s) > threshold).astype(int)


def ref_prf(average="macro", beta=1.0, zero_division=0.0, threshold=0.5, key=None):
    def ref(case, s, t):
        s, t = kept(t, s)
        pred = predictions(case, s, threshold)
        avg = "binary" if case.task == "binary" else (None if average == "none" else average)
        labels = list(range(C)) if avg is None and case.task == "multiclass" else None  # else sklearn's own
        p, r, f, _ = skm.precision_recall_fscore_support(t, pred, beta=beta, average=avg, labels=labels,
                                                         zero_division=zero_division)
        out = {"precision": p, "recall": r, "f1": f}
        return out if key is None else out[key]
    return ref


def ref_balanced(predicted_absent="ignore"):
    def ref(case, s, t):
        s, t = kept(t, s)
        pred = (s > (0.5 if case.probs else 0.0)).astype(int) if case.task == "binary" else s.argmax(1)
        if predicted_absent == "ignore":
            return skm.balanced_accuracy_score(t, pred)
        classes = np.union1d(t, pred)
        return np.mean([(pred[t == c] == c).mean() if (t == c).any() else 0.0 for c in classes])
    return ref


def ref_confusion(normalize=None):
    def ref(case, s, t):
        s, t = kept(t, s)
        if case.task == "binary":
            return skm.confusion_matrix(t, (s > (0.5 if case.probs else 0.0)).astype(int), labels=[0, 1], normalize=normalize)
        cm = skm.confusion_matrix(t, s.argmax(1), labels=range(C), normalize=normalize)
        return np.nan_to_num(cm)
    return ref


def one_vs_rest(case: Case, s: np.ndarray, t: np.ndarray):
    """``(positives (N, K), scores (N, K))`` per class (binary: one column)."""
    if case.task == "binary":
        return t[:, None], probs(case, s)[:, None]
    y = np.eye(C, dtype=int)[t] if case.task == "multiclass" else t
    return y, probs(case, s)


def interpolated_ap(y, p, mode):
    """VOC's APs from sklearn's curve (recall increasing, without sklearn's closing point
    (recall 0, precision 1), which VOC's code does not have): ``interpolated`` sums the recall steps
    times the precision envelope (VOC 2010+); ``voc11`` averages max(precision at recall >= r) over
    r = 0, 0.1, ..., 1 (VOC 2007)."""
    prec, rec, _ = skm.precision_recall_curve(y, p)
    r, pr = rec[::-1][1:], prec[::-1][1:]
    env = np.maximum.accumulate(pr[::-1])[::-1]
    if mode == "interpolated":
        return float(np.sum(np.diff(np.concatenate([[0.0], r])) * env))
    return float(np.mean([pr[r >= lv].max() if (r >= lv).any() else 0.0 for lv in np.linspace(0, 1, 11)]))


def ref_map(average="macro", empty_class="skip", ap_mode="step"):
    def ref(case, s, t):
        s, t = kept(t, s)
        y, p = one_vs_rest(case, s, t)
        if average == "micro":
            return skm.average_precision_score(y.ravel(), p.ravel())
        if average == "samples":
            rows = [skm.average_precision_score(y[i], p[i]) for i in range(len(y)) if y[i].any()]
            return np.mean(rows)
        if ap_mode == "step":
            ap = np.array([skm.average_precision_score(y[:, c], p[:, c]) if y[:, c].any() else np.nan
                           for c in range(y.shape[1])])
        else:
            ap = np.array([interpolated_ap(y[:, c], p[:, c], ap_mode) if y[:, c].any() else np.nan
                           for c in range(y.shape[1])])
        if average == "none":
            return np.where(np.isnan(ap), 0.0, ap) if empty_class == "zero" else ap
        if empty_class == "nan" and np.isnan(ap).any():
            return np.nan
        if empty_class == "zero":
            ap = np.nan_to_num(ap)
            return np.mean(ap)
        if average == "weighted":
            w = y.sum(0)
            return np.sum(np.nan_to_num(ap) * w) / w.sum()
        return np.nanmean(ap)
    return ref


def ref_auroc(average="macro", empty_class="skip", bins=None):
    def ref(case, s, t):
        s, t = kept(t, s)
        y, p = one_vs_rest(case, s, t)
        if bins is not None:  # histogram mode: AUROC of the bin index (pairs in one bin count 1/2)
            x = s.astype(np.float32)
            if case.task == "multiclass":
                z = x - x.max(1, keepdims=True)
                lse = np.log(np.exp(z).sum(1, keepdims=True))
                pp = np.exp(z - lse).astype(np.float32)
                x = np.log(pp / (1 - pp)).astype(np.float32)
            elif case.task == "binary":
                x = x[:, None]
            p = np.clip(np.floor((x + np.float32(20.0)) * np.float32(bins / 40.0)), 0, bins - 1)
        if average == "micro":
            return skm.roc_auc_score(y.ravel(), p.ravel())
        auc = np.array([skm.roc_auc_score(y[:, c], p[:, c]) if 0 < y[:, c].sum() < len(y) else np.nan
                        for c in range(y.shape[1])])
        if empty_class == "nan" and np.isnan(auc).any():
            return np.nan
        if empty_class == "zero":
            return np.mean(np.nan_to_num(auc))
        if average == "weighted":
            w = y.sum(0)
            return np.sum(np.nan_to_num(auc) * w) / w.sum()
        return np.nanmean(auc)
    return ref


def ref_pr_curve(case, s, t):
    y, p = one_vs_rest(case, s, t)
    out = {"precision": [], "recall": [], "thresholds": []}
    for c in range(y.shape[1]):
        prec, rec, thr = skm.precision_recall_curve(y[:, c], p[:, c])
        out["precision"].append(prec)
        out["recall"].append(rec)
        out["thresholds"].append(thr)
    return out


def confidences(case: Case, s: np.ndarray, t: np.ndarray):
    s, t = kept(t, s)
    p = probs(case, s)
    if case.task == "multiclass":
        return p.max(1), (p.argmax(1) == t).astype(float)
    return p.ravel(), t.ravel().astype(float)


def binned(case: Case, s, t, n_bins, binning):
    conf, ok = confidences(case, s, t)
    if binning == "uniform":
        b = np.clip(np.ceil(conf * n_bins) - 1, 0, n_bins - 1).astype(int)
    else:
        order = np.argsort(conf, kind="stable")
        conf, ok = conf[order], ok[order]
        b = (np.arange(len(conf)) * n_bins) // len(conf)
    count = np.bincount(b, minlength=n_bins).astype(float)
    return count, np.bincount(b, conf, n_bins), np.bincount(b, ok, n_bins)


def ref_ece(n_bins=15, norm="l1", binning="uniform"):
    def ref(case, s, t):
        count, conf, acc = binned(case, s, t, n_bins, binning)
        use = count > 0
        gap = np.abs(acc[use] - conf[use]) / count[use]
        w = count[use] / count.sum()
        return {"l1": np.sum(w * gap), "l2": np.sqrt(np.sum(w * gap ** 2)), "max": gap.max()}[norm]
    return ref


def ref_reliability(n_bins=10):
    def ref(case, s, t):
        count, conf, acc = binned(case, s, t, n_bins, "uniform")
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"count": count, "confidence": conf / count, "accuracy": acc / count}
    return ref


# ----------------------------------------------------------------------------------- cases
MC, ML, BIN = "multiclass", "multilabel", "binary"
CASES = [
    Case("top1", vm.TopKAccuracy, F.top_k_accuracy, {}, MC, ref_topk()),
    Case("top3", vm.TopKAccuracy, F.top_k_accuracy, {"k": 3}, MC, ref_topk(3)),
    Case("top1_macro_ignore", vm.TopKAccuracy, F.top_k_accuracy, {"average": "macro"}, MC, ref_topk(1, "macro"), ignore=True),
    Case("top1_binary_probs", vm.TopKAccuracy, F.top_k_accuracy, {}, BIN, ref_topk(), probs=True),
    Case("prf_macro", vm.PrecisionRecallF1, F.precision_recall_f1, {}, MC, ref_prf()),
    Case("prf_weighted_ignore", vm.PrecisionRecallF1, F.precision_recall_f1, {"average": "weighted"}, MC,
         ref_prf("weighted"), ignore=True),
    Case("prf_none", vm.PrecisionRecallF1, F.precision_recall_f1, {"average": "none"}, MC, ref_prf("none")),
    Case("prf_ml_micro", vm.PrecisionRecallF1, F.precision_recall_f1, {"average": "micro"}, ML, ref_prf("micro")),
    Case("prf_ml_macro_thr", vm.PrecisionRecallF1, F.precision_recall_f1, {"threshold": 0.7}, ML,
         ref_prf(threshold=0.7)),
    Case("precision_ml_zd1", vm.Precision, F.precision, {"average": "none", "zero_division": 1}, ML,
         ref_prf("none", zero_division=1.0, key="precision")),
    Case("recall_mc", vm.Recall, F.recall, {"average": "macro"}, MC, ref_prf(key="recall")),
    Case("fbeta2_mc", vm.F1Score, F.f1_score, {"beta": 2.0, "average": "weighted"}, MC,
         ref_prf("weighted", beta=2.0, key="f1")),
    Case("f1_binary", vm.F1Score, F.f1_score, {}, BIN, ref_prf(key="f1")),
    Case("balanced", vm.BalancedAccuracy, F.balanced_accuracy, {}, MC, ref_balanced()),
    Case("balanced_zero", vm.BalancedAccuracy, F.balanced_accuracy, {"predicted_absent": "zero"}, MC, ref_balanced("zero")),
    Case("balanced_binary", vm.BalancedAccuracy, F.balanced_accuracy, {}, BIN, ref_balanced()),
    Case("confusion", vm.ConfusionMatrix, F.confusion_matrix, {}, MC, ref_confusion(), ignore=True),
    Case("confusion_true", vm.ConfusionMatrix, F.confusion_matrix, {"normalize": "true"}, MC, ref_confusion("true")),
    Case("confusion_binary_all", vm.ConfusionMatrix, F.confusion_matrix, {"normalize": "all"}, BIN, ref_confusion("all")),
    Case("map_ml", vm.MeanAveragePrecision, F.mean_average_precision, {}, ML, ref_map()),
    Case("map_ml_weighted", vm.MeanAveragePrecision, F.mean_average_precision, {"average": "weighted"}, ML,
         ref_map("weighted")),
    Case("map_ml_micro", vm.MeanAveragePrecision, F.mean_average_precision, {"average": "micro"}, ML, ref_map("micro")),
    Case("map_ml_samples", vm.MeanAveragePrecision, F.mean_average_precision, {"average": "samples"}, ML,
         ref_map("samples")),
    Case("ap_ml_none_zero", vm.MeanAveragePrecision, F.average_precision, {"average": "none", "empty_class": "zero"}, ML,
         ref_map("none", "zero")),
    Case("map_mc_nan", vm.MeanAveragePrecision, F.mean_average_precision, {"empty_class": "nan"}, MC, ref_map("macro", "nan")),
    Case("map_mc_skip_ignore", vm.MeanAveragePrecision, F.mean_average_precision, {}, MC, ref_map(), ignore=True),
    Case("map_mc_interpolated", vm.MeanAveragePrecision, F.mean_average_precision, {"ap_mode": "interpolated"}, MC,
         ref_map(ap_mode="interpolated")),
    Case("map_ml_voc11", vm.MeanAveragePrecision, F.mean_average_precision, {"ap_mode": "voc11"}, ML,
         ref_map(ap_mode="voc11")),
    Case("map_ml_probs", vm.MeanAveragePrecision, F.mean_average_precision, {}, ML, ref_map(), probs=True),
    Case("map_ml_hist", vm.MeanAveragePrecision, F.mean_average_precision, {"bins": 512}, ML, ref_map(), tolerance=2e-2),
    Case("ap_binary", vm.MeanAveragePrecision, F.average_precision, {"average": "macro"}, BIN, ref_map()),
    Case("auroc_mc", vm.AUROC, F.auroc, {}, MC, ref_auroc()),
    Case("auroc_mc_zero", vm.AUROC, F.auroc, {"empty_class": "zero"}, MC, ref_auroc("macro", "zero")),
    Case("auroc_mc_weighted", vm.AUROC, F.auroc, {"average": "weighted"}, MC, ref_auroc("weighted"), ignore=True),
    Case("auroc_ml_micro", vm.AUROC, F.auroc, {"average": "micro"}, ML, ref_auroc("micro")),
    Case("auroc_binary_probs", vm.AUROC, F.auroc, {}, BIN, ref_auroc(), probs=True),
    Case("auroc_mc_hist", vm.AUROC, F.auroc, {"bins": 64}, MC, ref_auroc(bins=64), tolerance=1e-9),
    Case("auroc_ml_hist", vm.AUROC, F.auroc, {"bins": 32}, ML, ref_auroc(bins=32), tolerance=1e-12),
    Case("pr_curve_binary", vm.PRCurve, F.pr_curve, {}, BIN, ref_pr_curve, tolerance=1e-6),
    Case("pr_curve_mc_probs", vm.PRCurve, F.pr_curve, {}, MC, ref_pr_curve, probs=True, tolerance=1e-6),
    Case("ece_mc", vm.CalibrationError, F.calibration_error, {}, MC, ref_ece(), probs=True),
    Case("ece_mc_l2_ignore", vm.CalibrationError, F.calibration_error, {"norm": "l2"}, MC, ref_ece(norm="l2"),
         probs=True, ignore=True),
    Case("mce_ml", vm.CalibrationError, F.calibration_error, {"norm": "max", "n_bins": 10}, ML,
         ref_ece(10, "max"), probs=True),
    Case("ece_binary_quantile", vm.CalibrationError, F.calibration_error, {"binning": "quantile", "n_bins": 5}, BIN,
         ref_ece(5, binning="quantile"), probs=True),
]


def f64(case: Case):
    """Calibration and PR-curve cases take float64 probabilities (binned and ranked as given)."""
    s, t = case.inputs()
    return (s.double(), t) if case.probs and case.cls in (vm.CalibrationError, vm.PRCurve) else (s, t)


def reference(case: Case):
    s, t = f64(case)
    return case.reference(case, s.numpy(), t.numpy())


@pytest.fixture(scope="module")
def ddp_results():
    cases = [Case(c.name, c.cls, c.fn, c.options, c.task, None, c.probs, c.ignore) for c in CASES]
    return _dist.run(ddp_worker, 2, cases)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_class_functional_reference_and_two_processes(case, ddp_results):
    s, t = f64(case)
    by_class = plain(run_class(case, s, t).compute())
    functional = plain(run_functional(case, s, t))
    # the class over batches and the function on all rows: the same kernels, the same value
    assert_close(functional, by_class, 1e-12, f"{case.name}: functional vs class")
    assert_close(by_class, reference(case), case.tolerance, f"{case.name}: class vs reference")
    if case.cls is vm.PRCurve or (case.cls is vm.CalibrationError and case.probs and s.dtype == torch.float64):
        return  # the two-process run feeds float32 inputs (the harness's data); compared below for the rest
    for rank, got in enumerate(ddp_results):
        assert_close(got[case.name], by_class, 1e-12, f"{case.name}: rank {rank} of 2 vs one process")


@pytest.mark.parametrize("case", [c for c in CASES if c.cls is vm.CalibrationError or c.cls is vm.PRCurve],
                         ids=lambda c: c.name)
def test_two_processes_float32_inputs(case, ddp_results):
    s, t = case.inputs()
    by_class = plain(run_class(case, s, t).compute())
    for rank, got in enumerate(ddp_results):
        assert_close(got[case.name], by_class, 1e-12, f"{case.name}: rank {rank} of 2 vs one process")


def test_reliability_twin_and_hand_count():
    case = Case("rel", vm.CalibrationError, F.reliability, {"n_bins": 10}, MC, ref_reliability(10), probs=True)
    s, t = f64(case)
    m = run_class(case, s, t)
    got = F.reliability(s, t, num_classes=C, n_bins=10, input="probs")
    want = ref_reliability(10)(case, s.numpy(), t.numpy())
    for key in ("count", "confidence", "accuracy"):
        np.testing.assert_allclose(getattr(got, key).double().numpy(), want[key], atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(getattr(got, key).double().numpy(), getattr(m.reliability(), key).double().numpy(),
                                   atol=1e-12, equal_nan=True)


# ---------------------------------------------------------------- clip -> video aggregation
def clips(seed: int = 3):
    """40 videos of 1-4 clips each, in shuffled order, with clip ids."""
    rng = np.random.default_rng(seed)
    vid = np.repeat(np.arange(40) * 3 + 5, rng.integers(1, 5, size=40))
    cid = np.concatenate([np.arange((vid == v).sum()) for v in np.unique(vid)])
    order = rng.permutation(len(vid))
    vid, cid = vid[order], cid[order]
    labels = rng.integers(0, C, size=40)
    t = labels[(vid - 5) // 3]
    s = rng.normal(size=(len(vid), C)).astype(np.float32) * 2
    return torch.from_numpy(s), torch.from_numpy(t), torch.from_numpy(vid), torch.from_numpy(cid)


def aggregation_worker(rank, world, reduction):
    s, t, vid, cid = clips()
    cut = (s.shape[0] * 3) // 5
    lo, hi = (0, cut) if rank == 0 else (cut, s.shape[0])
    idx = torch.arange(lo, hi)
    longest = max(cut, s.shape[0] - cut)
    if idx.numel() < longest:  # a sampler pads the short rank with the first rows again
        idx = torch.cat([idx, torch.arange(longest - idx.numel())])
    m = vm.VideoAggregator(C, reduction=reduction)
    for part in idx.split(17):
        m.update(s[part], t[part], vid[part], cid[part])
    agg = m.compute()
    return agg.video_ids.numpy(), agg.scores.numpy(), agg.target.numpy(), agg.coverage.duplicates_dropped


@pytest.mark.parametrize("reduction", ["mean_probs", "mean_logits", "max", "vote"])
def test_aggregate_videos_twin_reference_and_padded_processes(reduction):
    s, t, vid, cid = clips()
    m = vm.VideoAggregator(C, reduction=reduction)
    for i in range(0, s.shape[0], 17):
        m.update(s[i:i + 17], t[i:i + 17], vid[i:i + 17], cid[i:i + 17])
    by_class = m.compute()
    got = F.aggregate_videos(s, t, vid, cid, num_classes=C, reduction=reduction)
    for key in ("video_ids", "scores", "rank", "key", "target", "num_clips"):
        np.testing.assert_array_equal(getattr(got, key).numpy(), getattr(by_class, key).numpy(), err_msg=key)
    # hand reference: per video, the reduction of its clips' softmax probabilities (vote: the
    # mean probabilities, the votes decide the prediction)
    sn, vn = s.double().numpy(), vid.numpy()
    p = np.exp(sn - sn.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for i, v in enumerate(np.unique(vn)):
        rows = vn == v
        if reduction == "mean_logits":
            z = sn[rows].mean(0)
            want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        elif reduction == "max":
            want = p[rows].max(0)
        else:
            want = p[rows].mean(0)
        np.testing.assert_allclose(got.scores[i].numpy(), want, rtol=1e-12, atol=1e-15)
        if reduction == "vote":
            votes = np.bincount(p[rows].argmax(1), minlength=C)
            best = np.flatnonzero(votes == votes.max())
            assert int(got.key[i].argmax()) == best[np.argmax(want[best])]
    # two processes, the short one padded with repeated rows: the same videos, padding dropped
    for ids, scores, target, dropped in _dist.run(aggregation_worker, 2, reduction):
        np.testing.assert_array_equal(ids, by_class.video_ids.numpy())
        np.testing.assert_allclose(scores, by_class.scores.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(target, by_class.target.numpy())
        assert dropped == abs(s.shape[0] - 2 * ((s.shape[0] * 3) // 5))


def test_functional_bad_rows_and_options_raise_as_the_class():
    s, t = torch.randn(8, C), torch.randint(0, C, (8,))
    t[2] = C + 3
    with pytest.raises(ValueError, match=r"top_k_accuracy: 1 row\(s\) with a `target` outside the valid labels"):
        F.top_k_accuracy(s, t, num_classes=C)
    with pytest.raises(ValueError, match="`k`=7 is larger than `num_classes`=6"):
        F.top_k_accuracy(s, t, num_classes=C, k=7)
    with pytest.raises(ValueError, match="`k`=7 is larger than `num_classes`=6"):
        vm.TopKAccuracy(C, k=7)
    with pytest.raises(vm.metrics.NoDataError, match="no valid data"):
        F.auroc(s[:0], t[:0], num_classes=C)
    with pytest.raises(ValueError, match="`ap_mode='voc11'` needs exact mode"):
        F.mean_average_precision(s, t.clamp_max(C - 1), num_classes=C, task="multiclass", ap_mode="voc11", bins=8)
    with pytest.warns(UserWarning, match="looks like probabilities"):
        F.calibration_error(s.softmax(1), t.clamp_max(C - 1), num_classes=C)
    with pytest.raises(ValueError, match="different scores or targets"):
        F.aggregate_videos(s[:2], torch.tensor([1, 1]), torch.tensor([4, 4]), torch.tensor([0, 0]), num_classes=C)
