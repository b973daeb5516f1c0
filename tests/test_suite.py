"""VideoAggregator and VideoClassificationMetrics: hand-worked cases, parity with the single
metrics and scikit-learn, padding/order/batch invariance, coverage, presets, string ids."""
import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import video_metrics as vm
from video_metrics.data import synthetic_predictions
from video_metrics.suite import keys_for

from _data import softmax_np


def run_suite(d, **kw):
    m = vm.VideoClassificationMetrics(d.scores.shape[1], **kw)
    for i in range(0, len(d.target), 50):
        m.update(d.scores[i:i + 50], d.target[i:i + 50], d.video_ids[i:i + 50], d.clip_ids[i:i + 50])
    return m


def test_hand_worked_three_videos_two_clips():
    s = torch.tensor([[3, 2, 1], [3, 1, 2], [1, 2, 2], [1, 2, 3], [2, 2, 2], [1, 3, 2]], dtype=torch.float32)
    t = torch.tensor([0, 0, 1, 1, 2, 2])
    vid = torch.tensor([0, 0, 1, 1, 2, 2])
    agg = vm.VideoAggregator(3, reduction="mean_logits")
    agg.update(s, t, vid)
    out = agg.compute()
    np.testing.assert_allclose(out.key.exp().numpy(), softmax_np(np.array([[3, 1.5, 1.5], [1, 2, 2.5], [1.5, 2.5, 2]])), atol=1e-12)
    m = vm.VideoClassificationMetrics(3, top_k=(1, 2), video_reduction="mean_logits")
    m.update(s, t, vid)
    r = m.compute()
    assert r["video/top1"].item() == pytest.approx(1 / 3)
    assert r["video/top2"].item() == pytest.approx(1.0)
    # two identical updates without clip ids: fractions unchanged
    m.update(s, t, vid)
    assert m.compute()["video/top1"].item() == pytest.approx(1 / 3)


def test_ap_modes_hand_worked():
    s = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[0, 1], [1, 0], [1, 1]])
    for mode, expected in (("step", 0.583333333), ("interpolated", 2 / 3), ("voc11", 2 / 3)):
        m = vm.VideoClassificationMetrics(2, task="multilabel", ap_mode=mode)
        m.update(s, y)
        rep = m.report()
        assert rep.clip.ap[0] == pytest.approx(expected)


def test_mean_class_accuracy_rules():
    scores = torch.nn.functional.one_hot(torch.tensor([2, 2, 2, 4]), 5).float()
    t = torch.tensor([2, 2, 2, 3])
    m = vm.VideoClassificationMetrics(5, top_k=(1,))
    m.update(scores, t)
    assert m.compute()["clip/balanced_acc"].item() == pytest.approx(0.5)
    mm = vm.BalancedAccuracy(5, predicted_absent="zero")
    mm.update(scores, t)
    assert mm.compute().item() == pytest.approx(1 / 3)


def test_multilabel_logits_far_below_zero_still_rank():
    """PySlowFast starts its sums at -1e10 in float32: every video then scores -1e10."""
    g = torch.Generator().manual_seed(0)
    base = -600.0 - 50 * torch.rand(8, 3, generator=g)
    s = base.repeat_interleave(3, 0) + torch.randn(24, 3, generator=g)
    y = (torch.rand(8, 3, generator=g) < 0.5).long()
    y[0] = 1
    y[1] = 0
    vid = torch.arange(8).repeat_interleave(3)
    for red in ("mean_logits", "max", "mean_probs"):
        agg = vm.VideoAggregator(3, task="multilabel", reduction=red)
        agg.update(s, y.repeat_interleave(3, 0), vid)
        out = agg.compute()
        assert torch.isfinite(out.rank).all() and out.rank[:, 0].unique().numel() == 8, red
        v = s.double().view(8, 3, 3)
        ref = {"mean_logits": v.mean(1), "max": v.max(1).values,
               "mean_probs": torch.logsumexp(torch.nn.functional.logsigmoid(v), 1) - math.log(3)}[red]
        np.testing.assert_allclose(out.rank.numpy(), ref.numpy(), rtol=1e-12)
        m = vm.VideoClassificationMetrics(3, task="multilabel", video_reduction=red)
        m.update(s, y.repeat_interleave(3, 0), vid)
        got = m.compute()["video/mAP"].item()
        yy = y.numpy()
        ref_ap = np.mean([skm.average_precision_score(yy[:, j], ref[:, j].numpy()) for j in range(3) if yy[:, j].any()])
        assert got == pytest.approx(ref_ap)


def per_video_numpy(d, reduction):
    """A straightforward per-video NumPy baseline."""
    s = d.scores.double().numpy()
    out, tgt = [], []
    for v in np.unique(d.video_ids.numpy()):
        rows = d.video_ids.numpy() == v
        x = s[rows]
        if reduction == "mean_logits":
            out.append(softmax_np(x.mean(0, keepdims=True))[0])
        elif reduction == "mean_probs":
            out.append(softmax_np(x).mean(0))
        elif reduction == "max":
            out.append(softmax_np(x).max(0))
        tgt.append(d.target.numpy()[rows][0])
    return np.array(out), np.array(tgt)


@pytest.mark.parametrize("reduction", ["mean_logits", "mean_probs", "max"])
def test_suite_equals_single_metrics_and_sklearn(reduction):
    d = synthetic_predictions(120, 3, 8, seed=1)
    out = run_suite(d, video_reduction=reduction, top_k=(1, 3)).compute()
    assert set(out) == {f"clip/{k}" for k in keys_for("multiclass", (1, 3), None)} | \
        {f"video/{k}" for k in keys_for("multiclass", (1, 3), reduction)} | {"video/num_videos", "video/num_clips"}
    # clip level: the single metric classes on the same rows
    s, t = d.scores, d.target
    single = {
        "top1": vm.TopKAccuracy(8, k=1), "top3": vm.TopKAccuracy(8, k=3), "mean_class_top3": vm.TopKAccuracy(8, k=3, average="macro"),
        "balanced_acc": vm.BalancedAccuracy(8), "auroc_macro": vm.AUROC(8),
        "auprc_macro": vm.MeanAveragePrecision(8, task="multiclass"), "ece": vm.CalibrationError(8),
        "mce": vm.CalibrationError(8, norm="max"),
    }
    for k, m in single.items():
        m.update(s, t)
        assert out[f"clip/{k}"].item() == pytest.approx(m.compute().item(), abs=1e-12), k
    prf = vm.PrecisionRecallF1(8, average="macro")
    prf.update(s, t)
    assert out["clip/f1_macro"].item() == pytest.approx(prf.compute()["f1"].item(), abs=1e-12)
    p = softmax_np(s.double().numpy())
    assert out["clip/nll"].item() == pytest.approx(skm.log_loss(t.numpy(), p, labels=range(8)), abs=1e-6)
    onehot = np.eye(8)[t.numpy()]
    assert out["clip/brier"].item() == pytest.approx(((p - onehot) ** 2).sum(1).mean(), abs=1e-6)
    # video level: sklearn on a per-video NumPy aggregation
    vp, vt = per_video_numpy(d, reduction)
    assert out["video/top1"].item() == pytest.approx((vp.argmax(1) == vt).mean())
    assert out["video/top3"].item() == pytest.approx(skm.top_k_accuracy_score(vt, vp, k=3, labels=range(8)))
    assert out["video/f1_macro"].item() == pytest.approx(skm.f1_score(vt, vp.argmax(1), average="macro", zero_division=0))
    assert out["video/balanced_acc"].item() == pytest.approx(skm.balanced_accuracy_score(vt, vp.argmax(1)))
    vy = np.eye(8)[vt]
    auc = np.mean([skm.roc_auc_score(vy[:, j], vp[:, j]) for j in range(8) if 0 < vy[:, j].sum() < len(vt)])
    assert out["video/auroc_macro"].item() == pytest.approx(auc, abs=1e-9)
    if reduction != "max":
        assert out["video/nll"].item() == pytest.approx(skm.log_loss(vt, vp, labels=range(8)), abs=1e-6)
    else:
        assert "video/ece" not in out


def test_vote_ties_and_keys():
    # video 0: votes 1/1 for classes 0 and 1, mean prob higher for class 1 -> predicts 1
    s = torch.tensor([[2.0, 0.0, -5.0], [0.0, 3.0, -5.0],
                      # video 1: one vote each for 0 and 1, identical mean probs -> lower index 0
                      [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t = torch.tensor([1, 1, 0, 0])
    vid = torch.tensor([0, 0, 1, 1])
    agg = vm.VideoAggregator(3, reduction="vote")
    agg.update(s, t, vid)
    out = agg.compute()
    assert out.key.argmax(1).tolist() == [1, 0]
    assert out.votes.tolist() == [[1, 1, 0], [1, 1, 0]]
    m = vm.VideoClassificationMetrics(3, top_k=(1,), video_reduction="vote")
    m.update(s, t, vid)
    r = m.compute()
    assert r["video/top1"].item() == 1.0
    assert "video/ece" not in r and "video/auroc_macro" not in r and "video/f1_macro" in r


def test_padding_duplicates_order_and_batch_size_do_not_matter():
    d = synthetic_predictions(40, 3, 6, seed=3)
    ref = run_suite(d, video_reduction="mean_probs").compute()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(120, generator=g)
    pad = torch.cat([perm, perm[:7]])  # sampler-style repeats
    m = vm.VideoClassificationMetrics(6, video_reduction="mean_probs")
    for i in range(0, len(pad), 11):
        j = pad[i:i + 11]
        m.update(d.scores[j], d.target[j], d.video_ids[j], d.clip_ids[j])
    out = m.compute()
    for k in ref:
        assert out[k].item() == pytest.approx(ref[k].item(), abs=1e-12), k
    rep = m.report()
    assert rep.coverage.duplicates_dropped == 7 and rep.coverage.num_clips == 120


def test_inconsistent_targets_raise():
    agg = vm.VideoAggregator(3)
    agg.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]), torch.tensor([5, 5, 6, 6]))
    with pytest.raises(ValueError, match="1 video\\(s\\) have clips with different targets"):
        agg.compute()


def test_missing_videos_and_fewer_clips():
    s = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    t = torch.tensor([0, 0, 1])
    vid = torch.tensor([10, 10, 11])
    m = vm.VideoClassificationMetrics(2, top_k=(1,), video_reduction="mean_logits", expected_video_ids=[10, 11, 12, 13],
                                      missing="count_as_wrong", expected_clips=2)
    m.update(s, t, vid, torch.tensor([0, 1, 0]))
    out = m.compute()
    assert out["video/top1"].item() == pytest.approx(2 / 4)
    assert out["video/missing_videos"].item() == 2
    rep = m.report()
    assert rep.coverage.missing_video_ids == [12, 13] and rep.coverage.videos_with_fewer_clips == 1
    m2 = vm.VideoClassificationMetrics(2, top_k=(1,), video_reduction="mean_logits", expected_video_ids=[10, 11, 12, 13])
    m2.update(s, t, vid)
    assert m2.compute()["video/top1"].item() == 1.0


def test_kinetics_and_charades_presets():
    d = synthetic_predictions(60, 3, 10, seed=2)
    out = run_suite(d, preset="kinetics").compute()
    assert out["video/challenge_score"].item() == pytest.approx(1 - (out["video/top1"].item() + out["video/top5"].item()) / 2)
    d = synthetic_predictions(60, 3, 10, seed=2, task="multilabel")
    d.target[:, 9] = 0  # a class with no positive: skipped in mAP
    m = run_suite(d, preset="charades")
    out = m.compute()
    assert m.video_reduction == "max" and "video/ece" not in out
    vs = d.scores.double().view(60, 3, 10).max(1).values.numpy()
    vy = d.target.view(60, 3, 10)[:, 0].numpy()
    aps = np.array([skm.average_precision_score(vy[:, j], vs[:, j]) for j in range(9)])
    assert out["video/mAP"].item() == pytest.approx(aps.mean())
    w = vy[:, :9].sum(0)
    assert out["video/mAP_weighted"].item() == pytest.approx((aps * w).sum() / w.sum())


def test_report_is_small_json():
    d = synthetic_predictions(50, 4, 12, seed=0)
    m = run_suite(d, video_reduction="mean_logits", class_names=[f"c{i}" for i in range(12)])
    rep = m.report()
    text = json.dumps(rep.to_dict(), allow_nan=False)
    assert len(text) < 60_000
    back = json.loads(text)
    assert back["scalars"]["video/top1"] == pytest.approx(m.compute()["video/top1"].item())
    assert back["coverage"]["num_videos"] == 50
    assert len(rep.clip.pr_curves.precision) == 12 and all(p.numel() <= 200 for p in rep.clip.pr_curves.precision)
    assert rep.clip.confusion.sum().item() == 200 and rep.video.confusion.sum().item() == 50
    assert sum(rep.video.reliability.count.tolist()) == 50


def test_ids_required_and_consistent():
    m = vm.VideoClassificationMetrics(3, video_reduction="mean_probs")
    with pytest.raises(ValueError, match="`video_ids` is required"):
        m.update(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="`video_ids`"):
        m.update(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="`clip_ids`"):
        m.update(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="mean_logits"):
        vm.VideoAggregator(3, reduction="mean_logits", input="probs")
    with pytest.raises(ValueError, match="vote"):
        vm.VideoClassificationMetrics(3, task="multilabel", video_reduction="vote")
    for cls in (vm.VideoClassificationMetrics, vm.VideoAggregator):
        with pytest.raises(ValueError, match="`expected_clips`"):
            cls(3, expected_clips=0)
        with pytest.raises(ValueError, match="`missing`"):
            cls(3, missing="drop")


def test_stable_id_and_registry():
    assert vm.stable_id("abc") == vm.stable_id("abc") and 0 <= vm.stable_id("abc") < 2**63
    import hashlib
    assert vm.stable_id("-Ww8ZJ7fbg0") == int.from_bytes(hashlib.blake2b(b"-Ww8ZJ7fbg0", digest_size=8).digest(), "big") & (2**63 - 1)
    reg = vm.IdRegistry()
    ids = reg.ids(["v_a", "v_b", "v_a"])
    assert ids.dtype == torch.long and ids[0] == ids[2] != ids[1]
    assert reg.names(ids) == ["v_a", "v_b", "v_a"]
    reg._names[vm.stable_id("x")] = "y"  # simulate a collision
    reg.add("x")
    with pytest.raises(ValueError, match="collision"):
        reg.check()
