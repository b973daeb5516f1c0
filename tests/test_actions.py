"""ActionMetrics against a NumPy transcription of EPIC-Kitchens-100's official evaluation
(C1-Action-Recognition: ``utils/scoring.py::compute_action_scores``, ``utils/metrics.py::
topk_accuracy`` and ``compute_metrics``), sklearn for the class-mean recall, hand-worked ties,
multi-view segments, bad input, sync-free update and gloo processes."""
import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import balanced_accuracy_score

import video_metrics as vm
from video_metrics.functional.actions import pair_topk
from video_metrics.metrics import NoDataError

from _dist import run
from test_gpu_resident import host_reads_forbidden

V, N = 97, 300  # EPIC-Kitchens-100's verb and noun classes


# ------------------------------------------------------------------ the official rules, in NumPy
def _top_scores(scores, top_n):
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :top_n]  # ties: lower index first
    return idx, np.take_along_axis(scores, idx, 1)


def official_action_ranks(verb, noun, top_n=100):
    """compute_action_scores: softmax over each head's top-n scores, outer product, best pairs."""
    tv, sv = _top_scores(verb, top_n)
    tn, sn = _top_scores(noun, top_n)
    probs = softmax(sv.astype(np.float64), axis=1)[:, :, None] * softmax(sn.astype(np.float64), axis=1)[:, None, :]
    flat = probs.reshape(len(verb), -1)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :top_n]
    vi, ni = np.unravel_index(order, probs.shape[1:])
    rows = np.arange(len(verb))[:, None]
    return tv[rows, vi] * 1000 + tn[rows, ni]  # action_id_from_verb_noun


def topk_accuracy(rankings, labels, ks):
    tp = rankings[:, :max(ks)] == labels[:, None]
    return [tp[:, :k].max(1).mean() for k in ks]


def official_metrics(verb, noun, tv, tn, tail_verbs, tail_nouns, unseen, action_ranks=None):
    ranks = {"verb": np.argsort(-verb, axis=1, kind="stable"), "noun": np.argsort(-noun, axis=1, kind="stable"),
             "action": official_action_ranks(verb, noun) if action_ranks is None else action_ranks}
    labels = {"verb": tv, "noun": tn, "action": tv * 1000 + tn}
    out = {}
    for task in ranks:
        for k, acc in zip((1, 5), topk_accuracy(ranks[task], labels[task], (1, 5))):
            out[f"{task}/top{k}"] = acc
    tail_v, tail_n = np.isin(tv, tail_verbs), np.isin(tn, tail_nouns)
    for task, m in (("verb", tail_v), ("noun", tail_n), ("action", tail_v | tail_n)):
        for name, subset in (("tail", m), ("unseen", unseen)):
            if subset.any():  # the official topk_accuracy raises on no instance
                out[f"{name}/{task}/top1"] = topk_accuracy(ranks[task][subset], labels[task][subset], (1,))[0]
    return out


def _data(n, seed, v=V, nn=N, kind="normal"):
    g = np.random.default_rng(seed)
    if kind == "normal":
        verb, noun = g.normal(size=(n, v)).astype(np.float32), g.normal(size=(n, nn)).astype(np.float32)
    else:  # integer logits: many ties within a head and between pairs
        verb, noun = g.integers(0, 3, (n, v)).astype(np.float32), g.integers(0, 3, (n, nn)).astype(np.float32)
    # targets: the r-th best class, r geometric, so that top-1 < top-5 < 1 for the action too
    rows = np.arange(n)
    tv = np.argsort(-verb, 1, kind="stable")[rows, np.minimum(g.geometric(0.5, n) - 1, v - 1)]
    tn = np.argsort(-noun, 1, kind="stable")[rows, np.minimum(g.geometric(0.5, n) - 1, nn - 1)]
    return verb, noun, tv, tn


def test_matches_official_evaluation_on_random_logits():
    verb, noun, tv, tn = _data(600, 0)
    tail_verbs, tail_nouns = np.arange(10, 97), np.arange(60, 300)
    participant = np.random.default_rng(1).integers(0, 10, 600)
    unseen = np.isin(participant, [3, 7])
    ref = official_metrics(verb, noun, tv, tn, tail_verbs, tail_nouns, unseen)
    m = vm.ActionMetrics(V, N, tail_verbs=tail_verbs.tolist(), tail_nouns=tail_nouns.tolist(),
                         group_names={1: "unseen", 0: "seen"})
    for lo in range(0, 600, 77):
        s = slice(lo, lo + 77)
        m.update(torch.from_numpy(verb[s]), torch.from_numpy(noun[s]), torch.from_numpy(tv[s]), torch.from_numpy(tn[s]),
                 groups=torch.from_numpy(unseen[s].astype(np.int64)))
    out = {k: float(v) for k, v in m.compute().items()}
    for k, v in ref.items():
        assert out[k] == pytest.approx(v, abs=1e-12), k
    assert 0.1 < out["action/top5"] < 0.9 and out["action/top1"] < out["action/top5"]
    assert out["num_segments"] == 600
    assert out["seen/verb/top1"] == pytest.approx(
        np.mean(np.argsort(-verb[~unseen], 1, kind="stable")[:, 0] == tv[~unseen]))


def _exact_pair_ranks(verb, noun, combine):
    """Every pair of the full V x N matrix, exact keys, ties by the verb's then the noun's rank."""
    n, v = verb.shape
    nn = noun.shape[1]
    vorder = np.argsort(-verb, axis=1, kind="stable")
    norder = np.argsort(-noun, axis=1, kind="stable")
    vpos, npos = np.argsort(vorder, axis=1), np.argsort(norder, axis=1)
    out = []
    for i in range(n):
        key = (verb[i, :, None].astype(np.float64) + noun[i, None, :] if combine == "add"
               else verb[i, :, None].astype(np.float64) * noun[i, None, :])
        vv, ni = np.meshgrid(np.arange(v), np.arange(nn), indexing="ij")
        order = np.lexsort((npos[i][ni].ravel(), vpos[i][vv].ravel(), -key.ravel()))
        out.append(vv.ravel()[order] * 1000 + ni.ravel()[order])
    return np.asarray(out)


@pytest.mark.parametrize("input", ["logits", "probs"])
def test_ties_against_the_full_pair_matrix(input):
    verb, noun, tv, tn = _data(300, 2, v=6, nn=8, kind="ties")
    if input == "probs":  # dyadic probabilities: products are exact, ties are real ties
        verb, noun = verb / 4, noun / 8
    combine = "add" if input == "logits" else "mul"
    ranks = _exact_pair_ranks(verb, noun, combine)
    ref = official_metrics(verb, noun, tv, tn, [], [], np.zeros(300, bool), action_ranks=ranks)
    m = vm.ActionMetrics(6, 8, input=input)
    m.update(torch.from_numpy(verb), torch.from_numpy(noun), torch.from_numpy(tv), torch.from_numpy(tn))
    out = {k: float(v) for k, v in m.compute().items()}
    for k in ("verb/top1", "verb/top5", "noun/top1", "noun/top5", "action/top1", "action/top5"):
        assert out[k] == pytest.approx(ref[k], abs=1e-12), k
    # pair_topk against the full matrix, every k
    for k in (1, 2, 3, 7, 48):
        pv, pn, _ = pair_topk(torch.from_numpy(verb).double(), torch.from_numpy(noun).double(), k, combine)
        assert np.array_equal((pv * 1000 + pn).numpy(), ranks[:, :k]), k


def test_hand_worked_ties():
    # verbs (2): [1, 1] -> order 0, 1; nouns (3): [0, 2, 2] -> order 1, 2, 0
    # pair sums: (0,0)=1 (0,1)=3 (0,2)=3 (1,0)=1 (1,1)=3 (1,2)=3
    # ranked: (0,1) (0,2) (1,1) (1,2) (0,0) (1,0)  [ties: verb rank, then noun rank]
    verb = torch.tensor([[1.0, 1.0]] * 6)
    noun = torch.tensor([[0.0, 2.0, 2.0]] * 6)
    tv = torch.tensor([0, 0, 1, 1, 0, 1])
    tn = torch.tensor([1, 2, 1, 2, 0, 0])
    pv, pn, _ = pair_topk(verb.double(), noun.double(), 6, "add")
    assert (pv[0] * 10 + pn[0]).tolist() == [1, 2, 11, 12, 0, 10]
    m = vm.ActionMetrics(2, 3, top_k=(1, 2))
    m.update(verb, noun, tv, tn)
    out = m.compute()
    assert float(out["action/top1"]) == pytest.approx(1 / 6)
    assert float(out["action/top2"]) == pytest.approx(2 / 6)
    assert float(out["verb/top1"]) == pytest.approx(3 / 6)  # verb 0 wins the tie
    assert float(out["noun/top1"]) == pytest.approx(2 / 6)  # noun 1 wins the tie
    # action mean class recall: 6 distinct pairs, one right
    assert float(out["action/mean_class_recall"]) == pytest.approx(1 / 6)


def test_class_mean_recall_matches_sklearn():
    verb, noun, tv, tn = _data(400, 3, v=12, nn=15)
    m = vm.ActionMetrics(12, 15)
    m.update(torch.from_numpy(verb), torch.from_numpy(noun), torch.from_numpy(tv), torch.from_numpy(tn))
    out = m.compute()
    action_pred = official_action_ranks(verb, noun)[:, 0]
    assert float(out["verb/mean_class_recall"]) == pytest.approx(balanced_accuracy_score(tv, verb.argmax(1)), abs=1e-12)
    assert float(out["noun/mean_class_recall"]) == pytest.approx(balanced_accuracy_score(tn, noun.argmax(1)), abs=1e-12)
    with pytest.warns(UserWarning):  # sklearn warns about predicted pairs absent from the targets
        ref = balanced_accuracy_score(tv * 1000 + tn, action_pred)
    assert float(out["action/mean_class_recall"]) == pytest.approx(ref, abs=1e-12)


def test_epic_script_softmaxes_probabilities_again():
    verb, noun, tv, tn = _data(500, 4, v=20, nn=40)
    pv, pn = softmax(verb.astype(np.float64) * 3, 1).astype(np.float32), softmax(noun.astype(np.float64) * 3, 1).astype(np.float32)
    args = (torch.from_numpy(pv), torch.from_numpy(pn), torch.from_numpy(tv), torch.from_numpy(tn))
    script = vm.ActionMetrics(20, 40, input="probs", action_scores="epic_script")
    product = vm.ActionMetrics(20, 40, input="probs")
    script.update(*args)
    product.update(*args)
    s, p = script.compute(), product.compute()
    ref_script = official_metrics(pv, pn, tv, tn, [], [], np.zeros(500, bool))  # the script softmaxes pv, pn
    ref_product = official_metrics(pv, pn, tv, tn, [], [], np.zeros(500, bool),
                                   action_ranks=_exact_pair_ranks(pv, pn, "mul")[:, :100])
    for k in ("action/top1", "action/top5"):
        assert float(s[k]) == pytest.approx(ref_script[k], abs=1e-12)
        assert float(p[k]) == pytest.approx(ref_product[k], abs=1e-12)
    assert float(s["action/top5"]) != float(p["action/top5"])  # the double softmax changes the ranking
    # for logits both rules are the official one
    a, b = vm.ActionMetrics(20, 40), vm.ActionMetrics(20, 40, action_scores="epic_script")
    for m in (a, b):
        m.update(torch.from_numpy(verb), torch.from_numpy(noun), torch.from_numpy(tv), torch.from_numpy(tn))
    assert {k: float(v) for k, v in a.compute().items()} == {k: float(v) for k, v in b.compute().items()}


@pytest.mark.parametrize("reduction", ["mean_logits", "mean_probs", "max"])
def test_views_are_aggregated_per_segment(reduction):
    g = torch.Generator().manual_seed(5)
    segs, views = 150, 4
    verb = torch.randn(segs * views, 10, generator=g) * 2
    noun = torch.randn(segs * views, 14, generator=g) * 2
    tv = torch.randint(0, 10, (segs,), generator=g).repeat_interleave(views)
    tn = torch.randint(0, 14, (segs,), generator=g).repeat_interleave(views)
    vid = torch.arange(segs).repeat_interleave(views) * 7 + 3
    cid = torch.arange(views).repeat(segs)
    m = vm.ActionMetrics(10, 14, video_reduction=reduction, tail_verbs=[0, 1, 2])
    perm = torch.randperm(segs * views, generator=g)
    pad = perm[:37]  # a padding sampler repeats rows: dropped by (video id, clip id)
    order = torch.cat([perm, pad])
    for lo in range(0, order.numel(), 64):
        i = order[lo:lo + 64]
        m.update(verb[i], noun[i], tv[i], tn[i], video_ids=vid[i], clip_ids=cid[i])
    out = m.compute()
    # reference: each segment's aggregated scores as one row
    lv, ln = verb.view(segs, views, 10), noun.view(segs, views, 14)
    if reduction == "mean_logits":
        rv, rn, inp = lv.mean(1), ln.mean(1), "logits"
    elif reduction == "mean_probs":
        rv, rn, inp = lv.softmax(-1).mean(1), ln.softmax(-1).mean(1), "probs"
    else:
        rv, rn, inp = lv.softmax(-1).amax(1), ln.softmax(-1).amax(1), "probs"
    ref = vm.ActionMetrics(10, 14, input=inp, tail_verbs=[0, 1, 2])
    ref.update(rv, rn, tv[::views], tn[::views])
    r = ref.compute()
    assert set(out) == set(r)
    for k in r:
        assert float(out[k]) == pytest.approx(float(r[k]), abs=1e-12), k
    assert float(out["num_segments"]) == segs


def test_clips_of_a_segment_must_share_their_group():
    g = torch.Generator().manual_seed(8)
    verb, noun = torch.randn(6, 4, generator=g), torch.randn(6, 5, generator=g)
    tv, tn = torch.tensor([1, 1, 2, 2, 3, 3]), torch.tensor([0, 0, 4, 4, 2, 2])
    vid, cid = torch.tensor([5, 5, 9, 9, 2, 2]), torch.tensor([0, 1, 0, 1, 0, 1])
    m = vm.ActionMetrics(4, 5, top_k=(1,), group_names={1: "unseen"})
    m.update(verb, noun, tv, tn, video_ids=vid, clip_ids=cid, groups=torch.tensor([0, 0, 1, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"1 segment\(s\) have clips in different `groups`"):
        m.compute()
    m = vm.ActionMetrics(4, 5, top_k=(1,), group_names={1: "unseen"})
    m.update(verb, noun, tv, tn, video_ids=vid, clip_ids=cid, groups=torch.tensor([0, 0, 1, 1, 0, 0]))
    out = m.compute()
    assert float(out["num_segments"]) == 3 and "unseen/verb/top1" in out and "group_0/verb/top1" in out


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs(dtype):
    verb, noun, tv, tn = _data(200, 6, v=9, nn=11)
    v, n = torch.from_numpy(verb).to(dtype), torch.from_numpy(noun).to(dtype)
    m = vm.ActionMetrics(9, 11)
    m.update(v, n, torch.from_numpy(tv), torch.from_numpy(tn))
    vf, nf = v.float().numpy(), n.float().numpy()  # the metric ranks the fp32 values of the inputs
    ref = official_metrics(vf, nf, tv, tn, [], [], np.zeros(200, bool), action_ranks=_exact_pair_ranks(vf, nf, "add"))
    out = m.compute()
    for k in ("verb/top1", "noun/top5", "action/top1", "action/top5"):
        assert float(out[k]) == pytest.approx(ref[k], abs=1e-12), k


def test_single_segment_and_empty_subsets():
    m = vm.ActionMetrics(4, 5, top_k=(1,), tail_verbs=[3])
    m.update(torch.tensor([[0.0, 3.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0, 0.0, 9.0]]), torch.tensor([1]),
             torch.tensor([4]))
    with pytest.warns(UserWarning, match="tail/verb/top1"):
        out = m.compute()
    assert float(out["action/top1"]) == 1.0 and float(out["verb/mean_class_recall"]) == 1.0
    assert np.isnan(float(out["tail/verb/top1"])) and float(out["tail/action/top1"]) != float(out["tail/action/top1"])


def test_bad_input():
    m = vm.ActionMetrics(4, 5, top_k=(1, 2))
    v, n, t = torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="noun_scores.*num_classes=5"):
        m.update(v, torch.zeros(3, 4), t, t)
    with pytest.raises(ValueError, match="one row per segment"):
        m.update(v, torch.zeros(2, 5), t, t)
    with pytest.raises(TypeError, match="noun_target"):
        m.update(v, n, t, t.float())
    with pytest.raises(ValueError, match="clip_ids"):
        m.update(v, n, t, t, clip_ids=t)
    with pytest.raises(TypeError, match="strings"):
        m.update(v, n, t, t, video_ids=["a", "b", "c"])
    assert m._update_count == 0 and not m.verb_scores
    with pytest.raises(ValueError, match="top_k"):
        vm.ActionMetrics(4, 5, top_k=(1, 5))
    with pytest.raises(ValueError, match="tail_nouns"):
        vm.ActionMetrics(4, 5, top_k=(1,), tail_nouns=[5])
    with pytest.raises(ValueError, match="vote"):
        vm.ActionMetrics(4, 5, top_k=(1,), video_reduction="vote")
    # values: counted on the device, raised at compute() naming both heads
    m = vm.ActionMetrics(4, 5, top_k=(1,))
    m.update(v, n, torch.tensor([0, 4, 1]), torch.tensor([0, 1, 2]))
    bad = n.clone()
    bad[0, 0] = float("nan")
    m.update(v, bad, t, t)
    with pytest.raises(ValueError, match=r"1 row\(s\) with a `target`.*verb indices.*\[0, 4\).*1 row\(s\) with invalid"):
        m.compute()
    m.reset()
    with pytest.raises(NoDataError, match="no valid data"):
        m.compute()


def test_update_is_sync_free():
    m = vm.ActionMetrics(6, 7, top_k=(1, 5), tail_verbs=[1]).to("meta")
    s1, s2 = torch.randn(8, 6, device="meta"), torch.randn(8, 7, device="meta")
    t = torch.zeros(8, dtype=torch.long, device="meta")
    m.update(s1, s2, t, t, video_ids=t, clip_ids=t, groups=t)
    m = vm.ActionMetrics(6, 7, top_k=(1, 5))
    with host_reads_forbidden():
        m.update(torch.randn(8, 6), torch.randn(8, 7), torch.full((8,), 9), torch.zeros(8, dtype=torch.long),
                 video_ids=torch.arange(8), clip_ids=torch.zeros(8, dtype=torch.long), groups=torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="8 row"):
        m.compute()


# ------------------------------------------------------------------ distributed
def _shard(rank, world, empty_rank):
    g = torch.Generator().manual_seed(11)
    segs, views = 90, 3
    verb = torch.randn(segs * views, 10, generator=g)
    noun = torch.randn(segs * views, 12, generator=g)
    tv = torch.randint(0, 10, (segs,), generator=g).repeat_interleave(views)
    tn = torch.randint(0, 12, (segs,), generator=g).repeat_interleave(views)
    vid = torch.arange(segs).repeat_interleave(views)
    cid = torch.arange(views).repeat(segs)
    grp = (vid % 4 == 0).long()
    n = segs * views
    if rank is None:
        idx = torch.arange(n)
    else:  # uneven shards, one rank empty, the last rank padded with rows of the first (sampler padding)
        ranks = [r for r in range(world) if r != empty_rank]
        bounds = torch.linspace(0, n, len(ranks) + 1).long().tolist()
        bounds[1] -= 17
        if rank == empty_rank:
            idx = torch.zeros(0, dtype=torch.long)
        else:
            j = ranks.index(rank)
            idx = torch.arange(bounds[j], bounds[j + 1])
            if j == len(ranks) - 1:
                idx = torch.cat([idx, torch.arange(5)])
    m = vm.ActionMetrics(10, 12, tail_nouns=[0, 3], group_names={1: "unseen"})
    for lo in range(0, max(idx.numel(), 1), 40):
        i = idx[lo:lo + 40]
        m.update(verb[i], noun[i], tv[i], tn[i], video_ids=vid[i], clip_ids=cid[i], groups=grp[i])
    return {k: float(v) for k, v in m.compute().items()}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("world,empty", [(2, None), (3, 1)])
def test_distributed_equals_one_process(world, empty):
    one = _shard(None, 1, None)
    outs = run(_shard, world, empty)
    for out in outs:
        assert out == pytest.approx(one, abs=1e-12)
