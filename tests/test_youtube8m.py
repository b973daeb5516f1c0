"""YouTube8MMetrics against a NumPy transcription of google/youtube-8m's evaluation (``eval_util.py``,
``average_precision_calculator.py``, ``mean_average_precision_calculator.py``, ``eval.py``'s
``top_k=20, top_n=None``), written here from the official definitions: random data at the real
3,862 classes, tied scores (against the tie rule we document and between the two extreme
orders of the tied entries), batch by batch, fp16/fp32/fp64, logits, submissions' top-k, bad
input, de-duplication, and 2 and 3 gloo processes with a padding sampler."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import _dist
import video_metrics as vm
from video_metrics import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from youtube8m_official import official, official_ap_at_n, official_top_k_by_class  # noqa: E402

C = 3862
# fp64 test data into the default float32 storage (where the values do not depend on it); the
# warning itself is tested in test_fp64_scores_into_float32_storage_warn_once
pytestmark = pytest.mark.filterwarnings("ignore:YouTube8MMetrics. fp64 scores are stored as float32")


# ------------------------------------------------- the same with the tie rule we document
def grouped_ap(scores, hits, total):
    """Equal scores one threshold: a hit's precision counts every entry with a score >= its own."""
    scores, hits = np.asarray(scores, float), np.asarray(hits, bool)
    if total == 0:
        return 0.0
    return sum(np.sum(hits & (scores >= s)) / np.sum(scores >= s) for s in scores[hits]) / total


def ordered_ap(scores, hits, total, hits_first):
    """AP with the tied entries in one extreme order (hits first: the highest value; last: the lowest)."""
    scores, hits = np.asarray(scores, float), np.asarray(hits, bool)
    order = np.lexsort((hits if not hits_first else ~hits, -scores))
    found = np.cumsum(hits[order])
    return float(np.sum(np.where(hits[order], found / np.arange(1, len(order) + 1), 0)) / total) if total else 0.0


def documented(pred, act, top_k=20, ap=grouped_ap):
    """Our tie rule: a video's top k by score, ties to the lower class; tied AP entries grouped."""
    n, c = pred.shape
    k = min(top_k, c)
    order = np.lexsort((np.tile(np.arange(c), (n, 1)), -pred), axis=1)
    hit1 = np.mean(act[np.arange(n), order[:, 0]])
    perr = np.mean([np.sum((act[v, order[v, :int(act[v].sum())]] > 0) & (pred[v, order[v, :int(act[v].sum())]] > 0))
                    / max(int(act[v].sum()), 1) for v in range(n)])
    top = order[:, :k]
    s = np.take_along_axis(pred, top, 1).ravel()
    cl = top.ravel()
    h = np.take_along_axis(act, top, 1).ravel() > 0
    npos = act.sum(0)
    gap = ap(s, h, npos.sum())
    aps = [ap(s[cl == j], h[cl == j], npos[j]) for j in range(c) if npos[j] > 0]
    return {"hit_at_1": hit1, "perr": perr, "gap": gap, "map": float(np.mean(aps)), "num_videos": n}


def youtube_like(n, c=C, seed=0, labels=3.0):
    """~``labels`` labels a video (at least one for most), sigmoid scores correlated with them."""
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, c, generator=g) < labels / c).long()
    target[torch.arange(n), torch.randint(0, c, (n,), generator=g)] = 1
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) - 5 + 5.5 * target * (torch.rand(n, 1, generator=g) < 0.8)
    return logits, target


def as_dict(out):
    return {k: float(v) for k, v in out.items()}


def run(scores, target, batch=None, **kw):
    kw.setdefault("score_dtype", torch.float64 if scores.dtype == torch.float64 else torch.float32)
    m = vm.YouTube8MMetrics(num_classes=scores.shape[1], **kw)
    batch = batch or scores.shape[0]
    for i in range(0, scores.shape[0], batch):
        m.update(scores[i:i + batch], target[i:i + batch])
    return as_dict(m.compute())


def assert_values(got, want, tol=1e-12):
    for k in ("gap", "hit_at_1", "perr", "map", "num_videos"):
        assert abs(got[k] - float(want[k])) <= tol, (k, got[k], float(want[k]))


# ------------------------------------------------------------------------------- values
def test_random_data_at_3862_classes_equals_the_official_functions():
    logits, target = youtube_like(300)
    probs = torch.sigmoid(logits)  # fp64: 6,000 pooled scores, all distinct (fp32 ties a few)
    want = official(probs.numpy(), target.numpy())
    got = run(probs, target, batch=64, score_dtype=torch.float64)
    assert_values(got, want)
    assert 0.2 < want["gap"] < 0.95 and want["num_videos"] == 300  # a realistic, not a degenerate, case
    assert_values(as_dict(F.youtube8m_metrics(probs, target)), want)


def test_a_video_without_labels_counts_zero_perr_as_the_official_loop():
    logits, target = youtube_like(40, c=50, seed=3, labels=2)
    target[5] = 0
    target[17] = 0
    probs = torch.sigmoid(logits)
    want = official(probs.double().numpy(), target.numpy(), top_k=20)
    assert_values(run(probs, target, top_k=20), want)


def test_tied_scores_follow_the_documented_rule_and_lie_between_the_extreme_orders():
    logits, target = youtube_like(120, c=60, seed=1, labels=4)
    probs = (torch.sigmoid(logits) * 4).round() / 4  # five distinct values: ties everywhere
    p, a = probs.double().numpy(), target.numpy()
    got = run(probs, target, batch=17)
    assert_values(got, documented(p, a), tol=1e-12)
    low = documented(p, a, ap=lambda s, h, t: ordered_ap(s, h, t, hits_first=False))
    high = documented(p, a, ap=lambda s, h, t: ordered_ap(s, h, t, hits_first=True))
    for k in ("gap", "map"):
        assert low[k] - 1e-12 <= got[k] <= high[k] + 1e-12 and low[k] < high[k], (k, low[k], got[k], high[k])
    shuffled = official(p, a, distinct=False)  # the official shuffle is one order among the tied ones
    assert low["gap"] - 1e-12 <= shuffled["gap"] <= high["gap"] + 1e-12


def test_hand_computed_example():
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.7], [0.6, 0.5, 0.1]])
    target = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 1, 0]])
    got = run(scores, target, top_k=2)
    # pooled top-2: .9 H .8 M .7 H .6 M .5 H .3 H, 4 positives: (1 + 2/3 + 3/5 + 4/6) / 4
    assert got["gap"] == pytest.approx((1 + 2 / 3 + 3 / 5 + 4 / 6) / 4, abs=1e-15)
    assert got["hit_at_1"] == pytest.approx(1 / 3) and got["perr"] == pytest.approx(1 / 3)
    assert got["map"] == pytest.approx((1 + 1 / 2 + 1) / 3)  # classes 0, 1, 2
    assert got["num_videos"] == 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_input_dtypes(dtype):
    logits, target = youtube_like(150, c=400, seed=2)
    probs = torch.sigmoid(logits.double()).to(dtype)
    want = official(probs.double().numpy(), target.numpy()) if dtype not in (torch.float16, torch.bfloat16) else \
        documented(probs.double().numpy(), target.numpy())  # half precision ties scores
    kw = {"score_dtype": torch.float64} if dtype == torch.float64 else {}
    assert_values(run(probs, target, batch=40, **kw), want)


def test_fp64_scores_into_float32_storage_warn_once():
    logits, target = youtube_like(10, c=30)
    m = vm.YouTube8MMetrics(num_classes=30)
    with pytest.warns(UserWarning, match="score_dtype=torch.float64"):
        m.update(torch.sigmoid(logits.double()), target)


def test_logits_rank_as_their_sigmoid():
    logits, target = youtube_like(200, c=300, seed=4)
    got = run(logits.double(), target, input="logits", score_dtype=torch.float64)
    assert_values(got, official(torch.sigmoid(logits.double()).numpy(), target.numpy()))


def test_batches_of_one_and_of_all_agree():
    logits, target = youtube_like(60, c=200, seed=5)
    probs = torch.sigmoid(logits)
    assert run(probs, target, batch=1) == run(probs, target)


def test_submission_top_k_equals_dense_scores():
    logits, target = youtube_like(100, c=500, seed=6)
    probs = torch.sigmoid(logits)
    vals, cls = torch.topk(probs, 20, dim=1)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    m = vm.YouTube8MMetrics(num_classes=500)
    m.update_top_k(vals[:, perm], cls[:, perm], target)
    dense = run(probs, target)
    got = as_dict(m.compute())
    # PERR: videos with at most 20 labels see the same predictions
    assert_values(got, dense)
    short = vm.YouTube8MMetrics(num_classes=500)  # 5 listed and padding: fewer entries, as the top 5 of each
    pad = torch.cat([vals[:, :5], torch.zeros(100, 3)], 1), torch.cat([cls[:, :5], torch.full((100, 3), -1)], 1)
    short.update_top_k(*pad, target)
    assert_values(as_dict(short.compute()), official(probs.numpy().astype(float), target.numpy(), top_k=5) | {
        "perr": documented_perr_from_listed(vals[:, :5].double().numpy(), cls[:, :5].numpy(), target.numpy())})


def documented_perr_from_listed(vals, cls, act):
    out = []
    for v in range(act.shape[0]):
        k = int(act[v].sum())
        out.append(sum(act[v, c] > 0 and s > 0 for s, c in list(zip(vals[v], cls[v]))[:k]) / max(k, 1))
    return float(np.mean(out))


# ----------------------------------------------------------------------------- bad input
def test_bad_values_are_counted_and_raised_at_compute():
    logits, target = youtube_like(20, c=30)
    probs = torch.sigmoid(logits)
    probs[3, 4] = float("nan")
    probs[5, 0] = 1.5
    target[7, 2] = 2
    m = vm.YouTube8MMetrics(num_classes=30)
    m.update(probs, target)
    with pytest.raises(ValueError, match=r"1 row\(s\) with a `target`.*2 row\(s\) with invalid `scores`.*17 valid"):
        m.compute()


def test_shape_and_dtype_errors_raise_at_once_and_leave_the_state():
    m = vm.YouTube8MMetrics(num_classes=30)
    logits, target = youtube_like(4, c=30)
    m.update(torch.sigmoid(logits), target)
    with pytest.raises(ValueError, match=r"`scores` must have shape \(N, num_classes=30\)"):
        m.update(torch.rand(4, 29), target)
    with pytest.raises(TypeError, match="`video_ids` must be an int64"):
        m.update(torch.rand(4, 30), target, video_ids=[1, 2, 3, 4])
    with pytest.raises(TypeError, match="`classes` must be an integer tensor"):
        m.update_top_k(torch.rand(4, 20), torch.rand(4, 20), target)
    assert m._update_count == 1 and len(m.top_scores) == 1
    with pytest.raises(ValueError, match="`top_k` must be a positive int"):
        vm.YouTube8MMetrics(top_k=0)
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 2"):
        vm.YouTube8MMetrics(num_classes=1)


def test_more_labels_than_max_labels_is_refused():
    target = torch.zeros(3, 40, dtype=torch.long)
    target[0, :12] = 1
    m = vm.YouTube8MMetrics(num_classes=40, top_k=5, max_labels=10)
    m.update(torch.rand(3, 40), target)
    with pytest.raises(ValueError, match="1 video\\(s\\) have more than max_labels=10"):
        m.compute()


def test_a_listed_class_twice_or_out_of_range_is_a_bad_row():
    m = vm.YouTube8MMetrics(num_classes=10, top_k=3)
    target = torch.zeros(3, 10, dtype=torch.long)
    target[:, 1] = 1
    m.update_top_k(torch.tensor([[0.9, 0.5, 0.1]] * 3), torch.tensor([[1, 1, 2], [1, 10, 2], [1, 2, -1]]), target)
    with pytest.raises(ValueError, match=r"2 row\(s\) with invalid `scores`.*1 valid"):
        m.compute()


def test_no_data():
    with pytest.raises(vm.metrics.NoDataError):
        vm.YouTube8MMetrics(num_classes=5).compute()


# ------------------------------------------------------------------------------ video ids
def test_repeated_video_ids_count_once_and_conflicts_raise():
    logits, target = youtube_like(30, c=50, seed=7)
    probs = torch.sigmoid(logits)
    ids = torch.arange(30) + 100
    m = vm.YouTube8MMetrics(num_classes=50)
    m.update(probs, target, video_ids=ids)
    m.update(probs[:7], target[:7], video_ids=ids[:7])  # a padding sampler's repeats
    assert as_dict(m.compute()) == run(probs, target)
    bad = vm.YouTube8MMetrics(num_classes=50)
    bad.update(probs, target, video_ids=ids)
    bad.update(probs[:1].flip(1), target[:1], video_ids=ids[:1])
    with pytest.raises(ValueError, match="1 row\\(s\\) repeat the video_id of another row.*video 100"):
        bad.compute()
    some = vm.YouTube8MMetrics(num_classes=50)
    some.update(probs, target, video_ids=ids)
    some.update(probs, target)
    with pytest.raises(ValueError, match="for some batches only"):
        some.compute()


def test_per_class_ap_and_positives():
    logits, target = youtube_like(200, c=80, seed=8)
    probs = torch.sigmoid(logits)
    m = vm.YouTube8MMetrics(num_classes=80)
    m.update(probs, target)
    out = m.per_class()
    p, a = probs.double().numpy(), target.numpy()
    sp, sa, npos = official_top_k_by_class(p, a, 20)
    for c in range(80):
        want = official_ap_at_n(sp[c], sa[c], npos[c]) if npos[c] else float("nan")
        assert np.isclose(float(out["ap"][c]), want, atol=1e-12, equal_nan=True), c
    assert out["positives"].tolist() == a.sum(0).tolist()


def test_update_reads_nothing_on_the_host():
    m = vm.YouTube8MMetrics(num_classes=50, top_k=5).to("meta")
    m.update(torch.rand(8, 50, device="meta"), torch.zeros(8, 50, dtype=torch.long, device="meta"),
             video_ids=torch.arange(8, device="meta"))
    m.update_top_k(torch.rand(8, 5, device="meta"), torch.zeros(8, 5, dtype=torch.long, device="meta"),
                   torch.zeros(8, 50, dtype=torch.long, device="meta"))
    assert all(x.device.type == "meta" for x in m.top_scores)


# ------------------------------------------------------------------------ gloo processes
def _worker(rank, world, probs, target):
    n = probs.shape[0]
    per = -(-n // world)
    idx = [(rank + world * i) % n for i in range(per)]  # DistributedSampler's order: padded by wrapping
    idx = torch.tensor(idx)
    m = vm.YouTube8MMetrics(num_classes=probs.shape[1])
    for i in range(0, len(idx), 16):
        j = idx[i:i + 16]
        m.update(probs[j], target[j], video_ids=j)
    padded = as_dict(m.compute())
    empty = vm.YouTube8MMetrics(num_classes=probs.shape[1])  # the last rank sees nothing
    if rank < world - 1:
        lo, hi = rank * n // (world - 1), (rank + 1) * n // (world - 1)
        empty.update(probs[lo:hi], target[lo:hi])
    no_rows = as_dict(empty.compute())
    failing = vm.YouTube8MMetrics(num_classes=probs.shape[1])
    bad = probs[:4].clone()
    if rank == 0:
        bad[0, 0] = float("nan")
    failing.update(bad, target[:4])
    try:
        failing.compute()
        raised = None
    except ValueError as e:
        raised = str(e)
    return padded, no_rows, raised


@pytest.mark.timeout(180)
@pytest.mark.parametrize("world", [2, 3])
def test_processes_with_padding_and_an_empty_rank_equal_one_process(world):
    logits, target = youtube_like(101, c=C, seed=9)
    probs = torch.sigmoid(logits)
    single = run(probs, target)
    assert_values(single, official(probs.double().numpy(), target.numpy()))
    for padded, no_rows, raised in _dist.run(_worker, world, probs, target):
        assert padded == single and no_rows == single
        assert raised is not None and "1 row(s) with invalid `scores`" in raised


def test_forward_gives_the_batch_value_and_a_checkpoint_round_trips():
    logits, target = youtube_like(40, c=50, seed=1)
    probs = torch.sigmoid(logits).float()
    m = vm.YouTube8MMetrics(num_classes=50)
    first = m(probs[:20], target[:20])  # the batch's own value (the rows go into preallocated blocks)
    m(probs[20:], target[20:])
    assert_values(as_dict(first), as_dict(F.youtube8m_metrics(probs[:20], target[:20])))
    whole = as_dict(F.youtube8m_metrics(probs, target))
    assert_values(as_dict(m.compute()), whole)
    m.persistent(True)
    again = vm.YouTube8MMetrics(num_classes=50)
    again.persistent(True)
    again.load_state_dict(m.state_dict())
    assert_values(as_dict(again.compute()), whole)
    again.reset()
    again.update(probs[:20], target[:20])
    assert_values(as_dict(again.compute()), as_dict(first))
