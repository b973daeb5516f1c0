"""Class-sharded compute() (shard_classes=True) on 2 and 3 gloo processes: equal to one process
(integers exactly, floats to 1e-9) with sampler padding, clips of a video on several ranks, an
empty rank and shards of uneven width; the same collectives on every rank; errors on every rank."""
import pytest
import torch
from torch.utils.data import DistributedSampler

import _dist
import video_metrics as vm
from video_metrics.data import synthetic_predictions

pytestmark = pytest.mark.timeout(240)

N_VIDEOS, CLIPS, C = 23, 3, 7  # 69 rows: every world size pads; 7 classes: uneven shards


def dataset(task, seed=5):
    d = synthetic_predictions(N_VIDEOS, CLIPS, C, seed=seed, task=task)
    s = d.scores.clone()
    s[5] = s[4]  # tied rows and tied classes
    s[10, 1] = s[10, 2]
    return s, d.target, d.video_ids, d.clip_ids


CONFIGS = {
    "mc_clip": dict(task="multiclass", top_k=(1, 3)),
    "mc_mean_logits": dict(task="multiclass", video_reduction="mean_logits", top_k=(1, 3)),
    "mc_mean_probs_voc11": dict(task="multiclass", video_reduction="mean_probs", ap_mode="voc11"),
    "mc_vote": dict(task="multiclass", video_reduction="vote", top_k=(1, 2), predicted_absent="zero"),
    "mc_max": dict(task="multiclass", video_reduction="max", empty_class="zero"),
    "mc_kinetics": dict(preset="kinetics", expected_video_ids=list(range(N_VIDEOS + 2))),
    "mc_probs": dict(task="multiclass", video_reduction="mean_probs", input="probs"),
    "ml_clip": dict(task="multilabel"),
    "ml_max": dict(task="multilabel", video_reduction="max"),
    "ml_mean_logits_exclude": dict(task="multilabel", video_reduction="mean_logits", empty_videos="exclude"),
    "ml_mean_probs": dict(task="multilabel", video_reduction="mean_probs", ap_empty_class="zero"),
}


def _inputs(name, cfg):
    task = "multilabel" if cfg.get("task") == "multilabel" else "multiclass"
    s, t, vid, cid = dataset(task)
    if task == "multilabel":
        t = t.clone()
        t[:6] = 0  # videos 0 and 1 without labels
    if cfg.get("input") == "probs":
        s = torch.softmax(s, 1)
    return s, t, vid, cid


def indices(rank, world, mode, n):
    if mode == "sampler":
        return list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=3))
    cuts = [0, 30, 30, n] if world == 3 else [0, 0, n]  # rank 1 holds nothing
    return list(range(cuts[rank], cuts[rank + 1]))


def worker(rank, world, mode):
    counts = _dist.install_counter()
    out = {}
    for name, cfg in CONFIGS.items():
        s, t, vid, cid = _inputs(name, cfg)
        m = vm.VideoClassificationMetrics(C, shard_classes=True, **cfg)
        idx = torch.tensor(indices(rank, world, mode, s.shape[0]), dtype=torch.long)
        for j in idx.split(4):
            m.update(s[j], t[j], vid[j], cid[j])
        before = counts["n"]
        res = m.compute()
        out[name] = ({k: v.item() for k, v in res.items()}, counts["n"] - before)
    return out


def reference():
    out = {}
    for name, cfg in CONFIGS.items():
        s, t, vid, cid = _inputs(name, cfg)
        m = vm.VideoClassificationMetrics(C, **cfg)
        m.update(s, t, vid, cid)
        out[name] = {k: v.item() for k, v in m.compute().items()}
    return out


INTEGER_KEYS = ("num_videos", "num_clips", "missing_videos")


@pytest.mark.parametrize("world,mode", [(2, "sampler"), (3, "sampler"), (3, "empty_rank")])
def test_sharded_compute_equals_one_process(world, mode):
    ref = reference()
    results = _dist.run(worker, world, mode)
    for rank, res in enumerate(results):
        for name, expected in ref.items():
            got, collectives = res[name]
            assert set(got) == set(expected), name
            for k, v in expected.items():
                tol = dict(abs=0) if k.endswith(INTEGER_KEYS) else dict(abs=1e-9, rel=1e-9)
                assert got[k] == pytest.approx(v, nan_ok=True, **tol), (world, mode, rank, name, k)
            # every rank issues the same collectives
            assert collectives == results[0][name][1], (name, rank)
    n = {name: results[0][name][1] for name in CONFIGS}
    # a padding sampler repeats rows: their fingerprints are gathered to check that they are identical (2 more)
    extra = 2 if mode == "sampler" and (N_VIDEOS * CLIPS) % world else 0
    assert n["mc_clip"] == 5 + extra and n["mc_mean_probs_voc11"] == 7 + extra and n["mc_mean_logits"] == 8 + extra, n
    assert n["ml_clip"] == 9 + extra and n["ml_max"] == 9 + extra, n


def _error_worker(rank, world):
    counts = _dist.install_counter()
    s, t, vid, cid = dataset("multiclass")
    t = t.clone()
    t[1] = (t[1] + 1) % C  # clip 1 of video 0 disagrees with its video
    m = vm.VideoClassificationMetrics(C, video_reduction="mean_logits", shard_classes=True)
    idx = torch.tensor(indices(rank, world, "sampler", s.shape[0]))
    m.update(s[idx], t[idx], vid[idx], cid[idx])
    err = _compute_error(m)
    # the processes are still in step: a further collective completes
    total = torch.tensor([1.0])
    torch.distributed.all_reduce(total)
    bad = vm.VideoClassificationMetrics(C, video_reduction="mean_logits", shard_classes=True)
    sb = s.clone()
    if rank == 1:
        sb[idx[0]] = float("nan")
    bad.update(sb[idx], t[idx], vid[idx], cid[idx])
    return err, _compute_error(bad), float(total), counts["n"]


def _compute_error(m):
    """The message of the ValueError compute() raises, or None."""
    try:
        m.compute()
    except ValueError as e:
        return str(e)
    return None


def test_errors_are_raised_on_every_rank():
    for err, err2, total, _ in _dist.run(_error_worker, 3):
        assert err is not None and "different targets" in err
        assert err2 is not None and "invalid `scores`" in err2
        assert total == 3.0


def _memory_worker(rank, world, n, c):
    g = torch.Generator().manual_seed(rank)
    m = vm.VideoClassificationMetrics(c, video_reduction="mean_logits", shard_classes=True, top_k=(1, 5))
    rows = n // world
    vid = torch.arange(rank * rows, (rank + 1) * rows) // 4
    m.update(torch.randn(rows, c, generator=g), vid % c, vid, torch.arange(rows) % 4)
    from video_metrics import sharded

    seen = []
    orig = torch.distributed.all_to_all_single

    def spy(out, inp, *a, **k):
        seen.append(out.numel())
        return orig(out, inp, *a, **k)

    torch.distributed.all_to_all_single = spy
    try:
        m.compute()
    finally:
        torch.distributed.all_to_all_single = orig
    return seen, sharded.shard_bounds(c, world)[rank]


def test_bytes_received_scale_with_the_shard():
    n, c = 1200, 40
    for world in (3,):
        for rank, (seen, (lo, hi)) in enumerate(_dist.run(_memory_worker, world, n, c)):
            # the rank's class shard of every kept row, 4 bytes a value (the full gather: every row)
            assert seen == [n * (hi - lo) * 4], (world, rank, seen)
