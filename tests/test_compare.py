"""Paired comparison: deltas and their paired intervals, McNemar against a hand computation,
Benjamini-Hochberg against a hand computation, per-class regressions, flips, clear errors."""
import json
import math

import pytest
import torch

import video_metrics as vm
from video_metrics import bootstrap as bs
from video_metrics.compare import benjamini_hochberg, bootstrap_p_value, mcnemar_exact
from video_metrics.data import synthetic_predictions


def _pair(seed=1, worse_class=3, videos=200, clips=3, classes=8, **kw):
    d = synthetic_predictions(videos, clips, classes, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    sb = d.scores + 0.5 * torch.randn(d.scores.shape, generator=g)
    sb[d.target == worse_class, worse_class] -= 2.5  # b forgets one class
    a = vm.VideoClassificationMetrics(classes, video_reduction="mean_logits", **kw)
    b = vm.VideoClassificationMetrics(classes, video_reduction="mean_logits", **kw)
    a.update(d.scores, d.target, d.video_ids, d.clip_ids)
    b.update(sb, d.target, d.video_ids, d.clip_ids)
    return d, sb, a, b


def test_mcnemar_exact_by_hand():
    # 3 discordant pairs the one way, 9 the other: p = 2 * P(X <= 3), X ~ Bin(12, 1/2)
    by_hand = 2 * sum(math.comb(12, k) for k in range(4)) / 2 ** 12
    assert mcnemar_exact(3, 9) == pytest.approx(by_hand, abs=1e-15)
    assert mcnemar_exact(9, 3) == pytest.approx(by_hand, abs=1e-15)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 7) == pytest.approx(2 / 2 ** 7)


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.5, float("nan")]
    # sorted: 0.01 (1), 0.03 (2), 0.04 (3), 0.5 (4); m = 4: q = min_{j>=i} p_j m / j
    q = benjamini_hochberg(p)
    assert q[0] == pytest.approx(0.04) and q[2] == pytest.approx(0.04 * 4 / 3) and q[1] == pytest.approx(0.04 * 4 / 3)
    assert q[3] == pytest.approx(0.5) and math.isnan(q[4])


def test_bootstrap_p_value():
    assert bootstrap_p_value(torch.tensor([1.0, 2.0, 3.0, -1.0])) == pytest.approx(0.5)
    assert bootstrap_p_value(torch.zeros(10)) == 1.0
    assert bootstrap_p_value(torch.arange(1.0, 101.0)) == 0.0


def test_compare_counts_discordant_pairs_and_flips_by_hand():
    d, sb, a, b = _pair()
    c = vm.compare(a, b, bootstrap=200, seed=3)
    ra = d.scores.argmax(1) == d.target
    rb = sb.argmax(1) == d.target
    m = c.mcnemar["clip"]
    assert (m.a_right_b_wrong, m.a_wrong_b_right, m.num_paired) == (int((ra & ~rb).sum()), int((~ra & rb).sum()), len(ra))
    assert m.p_value == pytest.approx(mcnemar_exact(m.a_right_b_wrong, m.a_wrong_b_right))
    va = torch.zeros(200, 8).index_add_(0, d.video_ids, torch.log_softmax(d.scores, 1)).argmax(1)
    vb = torch.zeros(200, 8).index_add_(0, d.video_ids, torch.log_softmax(sb, 1)).argmax(1)
    vt = torch.zeros(200, dtype=torch.long).scatter_(0, d.video_ids, d.target)
    worse = torch.nonzero((va == vt) & (vb != vt)).squeeze(1).tolist()
    better = torch.nonzero((va != vt) & (vb == vt)).squeeze(1).tolist()
    assert c.flips["video"] == {"right_to_wrong": worse, "wrong_to_right": better}
    assert (c.mcnemar["video"].a_right_b_wrong, c.mcnemar["video"].a_wrong_b_right) == (len(worse), len(better))
    clip_worse = c.flips["clip"]["right_to_wrong"]
    assert len(clip_worse) == m.a_right_b_wrong and all(len(x) == 2 for x in clip_worse)


def test_deltas_are_paired_and_the_forgotten_class_comes_first():
    d, sb, a, b = _pair()
    c = vm.compare(a, b, bootstrap=300, seed=0)
    pa, pb = a.compute(), b.compute()
    assert set(c.deltas) == {k for k in pa if not k.endswith(("num_videos", "num_clips"))}
    for k, dl in c.deltas.items():
        assert dl.a == pytest.approx(float(pa[k])) and dl.b == pytest.approx(float(pb[k]))
        assert dl.delta == pytest.approx(float(pb[k] - pa[k]))
        assert dl.low <= dl.high
    # the paired replicates are b's replicates minus a's on the same resamples
    ra, rb = bs.replicates(a, 300, 0), bs.replicates(b, 300, 0)
    q = torch.quantile(rb["video/top1"] - ra["video/top1"], torch.tensor([0.025, 0.975], dtype=torch.float64))
    assert (c.deltas["video/top1"].low, c.deltas["video/top1"].high) == pytest.approx((float(q[0]), float(q[1])))
    # pairing makes the interval of the difference narrower than the unpaired one
    unpaired = rb["clip/top1"] - ra["clip/top1"][torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    assert float((rb["clip/top1"] - ra["clip/top1"]).std()) < float(unpaired.std())
    worst = c.per_class[0]
    assert worst.index == 3 and worst.metric == "recall" and worst.delta < -0.3 and worst.high < 0
    assert worst.q_value < 0.01 and c.per_class_level == "video"
    assert [x.delta for x in c.per_class] == sorted(x.delta for x in c.per_class)
    json.dumps(c.to_dict(), allow_nan=False)


def test_identical_models_have_zero_deltas_and_p_one():
    d, _, a, _ = _pair()
    b = vm.VideoClassificationMetrics(8, video_reduction="mean_logits")
    b.update(d.scores, d.target, d.video_ids, d.clip_ids)
    c = vm.compare(a, b, bootstrap=50)
    for dl in c.deltas.values():
        assert dl.delta == 0 and dl.low == 0 and dl.high == 0 and dl.p_value == 1.0
    assert c.mcnemar["video"].p_value == 1.0 and c.flips["video"] == {"right_to_wrong": [], "wrong_to_right": []}


def test_multilabel_per_class_ap():
    d = synthetic_predictions(150, 2, 6, seed=4, task="multilabel")
    a = vm.VideoClassificationMetrics(6, task="multilabel", video_reduction="max")
    b = vm.VideoClassificationMetrics(6, task="multilabel", video_reduction="max")
    a.update(d.scores, d.target, d.video_ids, d.clip_ids)
    sb = d.scores.clone()
    sb[:, 2] = torch.randn(sb.shape[0], generator=torch.Generator().manual_seed(0))  # b loses label 2
    b.update(sb, d.target, d.video_ids, d.clip_ids)
    c = vm.compare(a, b, bootstrap=200)
    assert c.per_class[0].index == 2 and c.per_class[0].metric == "ap" and c.per_class[0].high < 0
    assert c.mcnemar == {} and "video/mAP" in c.deltas


def test_names_come_from_the_id_registry():
    reg = vm.IdRegistry()
    d = synthetic_predictions(20, 2, 4, seed=2)
    names = [f"clip_{i:03d}.mp4" for i in range(20)]
    vid = reg.ids([names[i] for i in d.video_ids.tolist()])
    a = vm.VideoClassificationMetrics(4, video_reduction="mean_logits", id_registry=reg)
    b = vm.VideoClassificationMetrics(4, video_reduction="mean_logits", id_registry=reg)
    a.update(d.scores, d.target, vid, d.clip_ids)
    b.update(-d.scores, d.target, vid, d.clip_ids)
    flipped = vm.compare(a, b, bootstrap=20).flips["video"]["right_to_wrong"]
    assert flipped and all(x in names for x in flipped)


def test_mismatched_suites_are_refused():
    d, sb, a, _ = _pair()
    keep = d.video_ids < 190
    b = vm.VideoClassificationMetrics(8, video_reduction="mean_logits")
    b.update(sb[keep], d.target[keep], d.video_ids[keep], d.clip_ids[keep])
    with pytest.raises(ValueError, match="10 video.*only in `a`, 0 only in `b`"):
        vm.compare(a, b, bootstrap=10)
    with pytest.raises(ValueError, match="same task and classes"):
        vm.compare(a, vm.VideoClassificationMetrics(7, video_reduction="mean_logits"), bootstrap=10)
    with pytest.raises(ValueError, match="same video_reduction"):
        vm.compare(a, vm.VideoClassificationMetrics(8, video_reduction="max"), bootstrap=10)
    with pytest.raises(ValueError, match="exact mode"):
        vm.compare(a, vm.VideoClassificationMetrics(8, bins=10), bootstrap=10)
    no_ids = vm.VideoClassificationMetrics(8)
    no_ids.update(d.scores, d.target)
    with pytest.raises(ValueError, match="video_ids"):
        vm.compare(no_ids, no_ids, bootstrap=10)
