"""Multi-view diagnostics: the views curve against fresh suites on the chosen views, order
invariance, every reduction side by side, identical views counted and warned about."""
import warnings

import pytest
import torch

import video_metrics as vm
from video_metrics.data import synthetic_predictions
from video_metrics.functional.aggregation import group_rows
from video_metrics.views import draw_key, subset_rank


def _data(videos=40, clips=5, c=6, seed=3):
    d = synthetic_predictions(videos, clips, c, seed=seed, signal=0.8)
    keep = torch.ones(len(d.video_ids), dtype=torch.bool)
    keep[d.video_ids.eq(0) & d.clip_ids.ge(2)] = False  # video 0 has 2 views only
    return d.scores[keep], d.target[keep], d.video_ids[keep], d.clip_ids[keep]


def _top1(s, t, vid, cid, reduction, mask):
    su = vm.VideoClassificationMetrics(6, video_reduction=reduction, top_k=(1,))
    su.update(s[mask], t[mask], vid[mask], cid[mask])
    return float(su.compute()["video/top1"])


@pytest.mark.parametrize("reduction", ["mean_logits", "mean_probs", "max", "vote"])
def test_views_curve_equals_fresh_suites_on_the_chosen_views(reduction):
    s, t, vid, cid = _data()
    su = vm.VideoClassificationMetrics(6, video_reduction=reduction, top_k=(1,))
    su.update(s, t, vid, cid)
    rep = su.report()
    vw = rep.views
    assert vw.views == [1, 2, 3, 4, 5]
    assert vw.top1_random[-1] == pytest.approx(rep.scalars["video/top1"], abs=1e-12)
    assert vw.top1_first[-1] == pytest.approx(rep.scalars["video/top1"], abs=1e-12)
    _, inverse, _ = group_rows(vid)
    v = int(inverse.max()) + 1
    first = subset_rank(vid, cid, inverse, v)
    for k in range(1, 6):
        assert vw.top1_first[k - 1] == pytest.approx(_top1(s, t, vid, cid, reduction, first < k), abs=1e-12), k
        mean = sum(_top1(s, t, vid, cid, reduction, subset_rank(vid, draw_key(vid, cid, 0, d), inverse, v) < k)
                   for d in range(vw.draws)) / vw.draws
        assert vw.top1_random[k - 1] == pytest.approx(mean, abs=1e-12), k
    for red, keys in vw.by_reduction.items():
        ref = vm.VideoClassificationMetrics(6, video_reduction=red, top_k=(1,))
        ref.update(s, t, vid, cid)
        exp = ref.compute()
        for k, val in keys.items():
            assert val == pytest.approx(float(exp[f"video/{k}"]), abs=1e-12, nan_ok=True), (red, k)
    assert set(vw.by_reduction) == {"mean_logits", "mean_probs", "max", "vote"}
    assert vw.duplicate_views == 0


def test_views_do_not_depend_on_row_order():
    s, t, vid, cid = _data()
    a = vm.VideoClassificationMetrics(6, video_reduction="mean_logits", top_k=(1,))
    a.update(s, t, vid, cid)
    perm = torch.randperm(len(t), generator=torch.Generator().manual_seed(0))
    b = vm.VideoClassificationMetrics(6, video_reduction="mean_logits", top_k=(1,))
    for j in perm.split(7):
        b.update(s[j], t[j], vid[j], cid[j])
    va, vb = a.report().views.to_dict(), b.report().views.to_dict()
    assert va["top1_random"] == vb["top1_random"] and va["top1_first"] == vb["top1_first"]
    for red, keys in va["by_reduction"].items():  # sums in another order: equal to rounding
        assert keys == pytest.approx(vb["by_reduction"][red], abs=1e-12)


def test_identical_views_are_counted_and_warned_about():
    s, t, vid, cid = _data()
    s = s.clone()
    for v in (3, 7, 11):
        rows = torch.nonzero(vid == v).squeeze(1)
        s[rows[1]] = s[rows[0]]  # the second view repeats the first
    su = vm.VideoClassificationMetrics(6, video_reduction="mean_probs")
    su.update(s, t, vid, cid)
    with pytest.warns(UserWarning, match="3 video\\(s\\) have two or more views with identical scores"):
        rep = su.report()
    assert rep.views.duplicate_views == 3
    assert rep.to_dict()["views"]["duplicate_views"] == 3


@pytest.mark.parametrize("reduction", ["mean_probs", "vote"])
def test_views_across_row_blocks_and_padding_equal_one_block(monkeypatch, reduction):
    import video_metrics.levels as levels

    s, t, vid, cid = _data()
    s = s.clone()
    for v in (3, 7, 31):
        rows = torch.nonzero(vid == v).squeeze(1)
        s[rows[-1]] = s[rows[0]]  # the last view repeats the first
    one = vm.VideoClassificationMetrics(6, video_reduction=reduction, top_k=(1,))
    one.update(s, t, vid, cid)
    with pytest.warns(UserWarning, match="3 video"):
        ref = one.report().views.to_dict()
    monkeypatch.setattr(levels, "BLOCK_VALUES", 6 * 16)  # 16-row blocks
    many = vm.VideoClassificationMetrics(6, video_reduction=reduction, top_k=(1,))
    for j in torch.arange(len(t)).split(23):
        many.update(s[j], t[j], vid[j], cid[j])
    pad = torch.arange(9)  # a padding sampler repeats rows: dropped by (video id, clip id)
    many.update(s[pad], t[pad], vid[pad], cid[pad])
    with pytest.warns(UserWarning, match="3 video"):
        got = many.report().views.to_dict()
    assert got["duplicate_views"] == ref["duplicate_views"] == 3
    assert got["top1_random"] == ref["top1_random"] and got["top1_first"] == ref["top1_first"]


def test_no_views_without_clip_ids_or_for_multilabel():
    s, t, vid, cid = _data()
    su = vm.VideoClassificationMetrics(6, video_reduction="mean_logits")
    su.update(s, t, vid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert su.report().views is None
