"""Slices: a group slice equals a fresh suite on its videos (intervals included), class slices
equal sklearn with ``labels=``, and EPIC-Kitchens-100's tail / unseen top-1 are reproduced."""
import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import video_metrics as vm
from video_metrics.data import synthetic_predictions


def _data(task="multiclass", videos=60, clips=3, classes=6, seed=1):
    d = synthetic_predictions(videos, clips, classes, seed=seed, task=task)
    g = torch.Generator().manual_seed(seed)
    per_video = torch.stack([torch.randint(0, 3, (videos,), generator=g), torch.randint(0, 2, (videos,), generator=g)], 1)
    return d, per_video[d.video_ids]


@pytest.mark.parametrize("task,reduction", [("multiclass", "mean_logits"), ("multiclass", "vote"),
                                            ("multilabel", "max"), ("binary", "mean_probs")])
def test_group_slice_equals_a_fresh_suite_on_its_videos(task, reduction):
    d, groups = _data("multilabel" if task == "binary" else task)
    scores, target = d.scores, d.target
    if task == "binary":
        scores, target = scores[:, 0].contiguous(), target[:, 0].contiguous()
    c = None if task == "binary" else 6
    su = vm.VideoClassificationMetrics(c, task=task, video_reduction=reduction, slices=("site", "night"), bootstrap=25,
                                       seed=4, min_slice_size=20)
    su.update(scores, target, d.video_ids, d.clip_ids, groups=groups)
    rep = su.report()
    assert [(s.name, s.value) for s in rep.slices] == [("site", 0), ("site", 1), ("site", 2), ("night", 0), ("night", 1)]
    for sl in rep.slices:
        m = groups[:, ("site", "night").index(sl.name)] == sl.value
        ref = vm.VideoClassificationMetrics(c, task=task, video_reduction=reduction, bootstrap=25, seed=4)
        ref.update(scores[m], target[m], d.video_ids[m], d.clip_ids[m])
        rr = ref.report()
        assert sl.num_clips == int(m.sum()) and sl.num_videos == int(d.video_ids[m].unique().numel())
        assert sl.too_small == (sl.num_videos < 20)
        assert set(sl.scalars) == {k for k in rr.scalars if not k.endswith(("num_videos", "num_clips"))}
        for k, v in sl.scalars.items():
            assert v == pytest.approx(rr.scalars[k], abs=1e-12, nan_ok=True), k
            assert sl.intervals[k] == pytest.approx(rr.intervals[k], abs=1e-12, nan_ok=True), k


def test_group_values_must_agree_within_a_video():
    d, groups = _data()
    groups = groups.clone()
    groups[1, 0] = 7  # clip 1 of video 0
    su = vm.VideoClassificationMetrics(6, video_reduction="mean_logits", slices=("site", "night"))
    su.update(d.scores, d.target, d.video_ids, d.clip_ids, groups=groups)
    with pytest.raises(ValueError, match="1 video.*column 'site'"):
        su.report()


@pytest.mark.parametrize("groups,msg", [
    (None, "`groups` is required"), (torch.zeros(5, dtype=torch.long), r"shape \(6, 2\)"),
    (torch.zeros(6, 2), "integer tensor"), (torch.zeros(6, 3, dtype=torch.long), r"shape \(6, 2\)"),
])
def test_bad_groups_leave_the_state_untouched(groups, msg):
    d, g = _data()
    su = vm.VideoClassificationMetrics(6, video_reduction="mean_logits", slices=("site", "night"))
    su.update(d.scores[:6], d.target[:6], d.video_ids[:6], d.clip_ids[:6], groups=g[:6])
    with pytest.raises(ValueError, match=msg):
        su.update(d.scores[6:12], d.target[6:12], d.video_ids[6:12], d.clip_ids[6:12], groups=groups)
    assert int(su.n_seen) == 6 and len(su.groups) == 1 and len(su.scores) == 1
    plain = vm.VideoClassificationMetrics(6)
    with pytest.raises(ValueError, match="no `slices`"):
        plain.update(d.scores[:6], d.target[:6], groups=g[:6])


def test_multiclass_class_slices_match_sklearn_labels():
    d, _ = _data(videos=200, clips=2, classes=8, seed=3)
    freq = [400, 300, 150, 90, 50, 19, 5, 0]
    su = vm.VideoClassificationMetrics(8, class_frequency=freq, class_slices={"odd": [1, 3, 5, 7]}, bootstrap=20)
    su.update(d.scores, d.target, d.video_ids, d.clip_ids)
    rep = su.report()
    y, s = d.target.numpy(), d.scores.numpy()
    pred = s.argmax(1)
    p = torch.softmax(d.scores.double(), 1).numpy()
    sets = {("frequency", "many"): [0, 1, 2], ("frequency", "medium"): [3, 4], ("frequency", "few"): [5, 6, 7],
            ("classes", "odd"): [1, 3, 5, 7]}
    assert [(x.name, x.value) for x in rep.slices] == list(sets)
    for sl in rep.slices:
        cls = sets[(sl.name, sl.value)]
        assert sl.classes == cls
        present = [c for c in cls if (y == c).any() or (pred == c).any()]
        with_target = [c for c in cls if (y == c).any()]
        sc = sl.scalars
        assert sc["clip/f1_macro"] == pytest.approx(skm.f1_score(y, pred, labels=present, average="macro", zero_division=0))
        assert sc["clip/f1_micro"] == pytest.approx(skm.f1_score(y, pred, labels=present, average="micro", zero_division=0))
        assert sc["clip/balanced_acc"] == pytest.approx(np.mean([(pred[y == c] == c).mean() for c in with_target]))
        aps = [skm.average_precision_score(y == c, p[:, c]) for c in with_target]
        assert sc["clip/auprc_macro"] == pytest.approx(np.mean(aps))
        in_set = np.isin(y, cls)  # sample keys: the samples of these classes (EPIC's tail top-1)
        assert sl.num_clips == int(in_set.sum())
        assert sc["clip/top1"] == pytest.approx((pred[in_set] == y[in_set]).mean())
        assert sc["clip/nll"] == pytest.approx(-np.log(p[in_set, y[in_set]]).mean())
        assert set(sl.intervals) == set(sc)


def test_multilabel_class_slice_is_the_column_subset():
    d, _ = _data("multilabel", videos=120, clips=2, classes=7, seed=2)
    su = vm.VideoClassificationMetrics(7, task="multilabel", video_reduction="max", class_slices={"some": [0, 2, 5]})
    su.update(d.scores, d.target, d.video_ids, d.clip_ids)
    sl = su.report().slices[0]
    y, s = d.target.numpy()[:, [0, 2, 5]], d.scores.numpy()[:, [0, 2, 5]]
    keep = y.any(0)
    assert sl.scalars["clip/mAP"] == pytest.approx(skm.average_precision_score(y[:, keep], s[:, keep], average="macro"))
    assert sl.scalars["clip/f1_micro"] == pytest.approx(skm.f1_score(y, s > 0, average="micro", zero_division=0))
    assert "clip/ece" not in sl.scalars  # multilabel class slices: the class-wise keys


def _epic_reference(scores, verb, participant, tail_verbs, unseen_participants):
    """The logic of EPIC-Kitchens-100's C1 ``compute_metrics`` for the verb task: top-1 over the
    segments whose verb is a tail class, and over the segments of unseen participants."""
    ranks = np.argsort(-scores, axis=1)
    tail = np.isin(verb, tail_verbs)
    unseen = np.isin(participant, unseen_participants)
    top1 = lambda m: (ranks[m][:, :1] == verb[m, None]).max(1).mean()  # noqa: E731
    return {"all": top1(np.ones_like(tail)), "tail": top1(tail), "unseen": top1(unseen)}


def test_epic_kitchens_tail_and_unseen_top1():
    g = torch.Generator().manual_seed(0)
    n, c = 900, 20
    verb = torch.multinomial(1.0 / torch.arange(1, c + 1).double(), n, replacement=True, generator=g)  # long tail
    scores = torch.randn(n, c, generator=g)
    scores[torch.arange(n), verb] += 1.5
    participant = torch.randint(1, 38, (n,), generator=g)
    tail_verbs = list(range(12, 20))
    unseen_participants = [3, 7, 11, 29, 33]
    ref = _epic_reference(scores.numpy(), verb.numpy(), participant.numpy(), tail_verbs, unseen_participants)
    unseen = torch.isin(participant, torch.tensor(unseen_participants)).long()
    segment = torch.arange(n)  # EPIC evaluates segments: one clip per "video"
    su = vm.VideoClassificationMetrics(c, slices=("unseen",), class_slices={"tail": tail_verbs})
    su.update(scores, verb, segment, torch.zeros(n, dtype=torch.long), groups=unseen)
    rep = su.report()
    by = {(s.name, s.value): s for s in rep.slices}
    assert rep.scalars["clip/top1"] == pytest.approx(ref["all"], abs=1e-12)
    assert by[("classes", "tail")].scalars["clip/top1"] == pytest.approx(ref["tail"], abs=1e-12)
    assert by[("unseen", 1)].scalars["clip/top1"] == pytest.approx(ref["unseen"], abs=1e-12)


@pytest.mark.parametrize("kw,msg", [
    (dict(slices="a b".split() * 2), "distinct"), (dict(class_frequency=[1, 2]), "6 non-negative"),
    (dict(class_slices={"x": [9]}), r"class_slices\['x'\]"), (dict(slices=("a",), bins=10), "exact mode"),
    (dict(class_frequency=[1] * 6, frequency_thresholds=(50, 10)), "few, many"), (dict(min_slice_size=-1), "min_slice"),
])
def test_bad_slice_options(kw, msg):
    with pytest.raises(ValueError, match=msg):
        vm.VideoClassificationMetrics(6, **kw)
