"""Synced results on 2-3 gloo processes equal the single-process result on the concatenated
data, for every metric: uneven shards, an empty rank, at most 3 collectives per compute()."""
import numpy as np
import pytest
import torch

import _dist
from _data import for_task
from _factories import all_metrics

pytestmark = pytest.mark.timeout(180)

C = 10
N = 157


def data(task):
    return for_task(task, "random", N, C, 7)


def plain(x):
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.double().numpy()
    if hasattr(x, "precision"):
        return [p.numpy() for p in x.precision] + [r.numpy() for r in x.recall]
    return x


def bounds(world):
    # uneven shards, rank 0 empty
    cuts = {2: [0, 0, N], 3: [0, 0, 40, N]}[world]
    return cuts


def worker(rank, world):
    counts = _dist.install_counter()
    cuts = bounds(world)
    out = {}
    for name, make in all_metrics(C).items():
        m = make()
        s, t = data(m.task)
        lo, hi = cuts[rank], cuts[rank + 1]
        for i in range(lo, hi, 23):  # several batches, the last one short
            j = min(i + 23, hi)
            m.update(s[i:j], t[i:j])
        before = counts["n"]
        value = m.compute()
        out[name] = (plain(value), counts["n"] - before)
        if name == "confmat":
            before = counts["n"]
            out["top_confusions"] = (m.top_confusions(3), counts["n"] - before)
    # a bad row on one rank only: every rank raises (after the sync), none hangs
    m = all_metrics(C)["auroc_mc"]()
    s, t = data("multiclass")
    if rank == world - 1:
        t = t.clone()
        t[0] = -3
    m.update(s[:5], t[:5])
    try:
        m.compute()
        out["bad"] = "no error"
    except ValueError as err:
        out["bad"] = str(err)
    # no data anywhere: every rank raises
    try:
        all_metrics(C)["top1"]().compute()
        out["empty"] = "no error"
    except ValueError as err:
        out["empty"] = str(err)
    return out


def reference():
    out = {}
    for name, make in all_metrics(C).items():
        m = make()
        s, t = data(m.task)
        m.update(s, t)
        out[name] = plain(m.compute())
        if name == "confmat":
            out["top_confusions"] = m.top_confusions(3)
    return out


def assert_same(a, b, name):
    if isinstance(a, dict):
        for k in a:
            assert_same(a[k], b[k], f"{name}.{k}")
    elif isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-9, equal_nan=True, err_msg=name)
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, equal_nan=True, err_msg=name)
    else:
        assert a == b, name


@pytest.mark.parametrize("world", [2, 3])
def test_synced_equals_single_process(world):
    ref = reference()
    results = _dist.run(worker, world)
    for rank, res in enumerate(results):
        for name, expected in ref.items():
            value, collectives = res[name]
            assert_same(value, expected, f"rank{rank}:{name}")
            assert collectives <= 3, (name, collectives)
        assert "1 row(s) with a `target` outside" in res["bad"]
        assert "no valid data" in res["empty"]
    # sum-only metrics need one all_reduce; exact ranking metrics one all_reduce + two all_gathers
    assert results[0]["top1"][1] == 1
    assert results[0]["auroc_mc"][1] == 3


def _views_worker(rank, world):
    import video_metrics as vm

    g = torch.Generator().manual_seed(rank)
    m = vm.VideoClassificationMetrics(5, task="multilabel", top_k=None, video_reduction="max")
    n = [0, 3, 7][rank]  # rank 0 empty, uneven shards; bool targets (1 byte) between float and int64 states
    for lo in range(0, n, 2):
        k = min(2, n - lo)
        m.update(torch.randn(k, 5, generator=g), torch.randint(0, 2, (k, 5), generator=g),
                 torch.full((k,), 10 * rank), torch.arange(lo, lo + k))
    local = {name: [x.data_ptr() for x in getattr(m, name)] for name in ("scores", "target", "valid", "video_ids")}
    local_rows = {name: m._cat(name).clone() for name in local}
    m.sync()
    synced = {name: [x.clone() for x in getattr(m, name)] for name in local}
    shared = {name: {x.untyped_storage().data_ptr() for x in getattr(m, name)} for name in local}
    m.unsync()
    restored = {name: [x.data_ptr() for x in getattr(m, name)] for name in local}
    return local_rows, synced, shared, local == restored


@pytest.mark.timeout(120)
def test_gathered_rows_are_views_of_one_buffer_and_local_rows_are_not_copied():
    """The concatenated states arrive as per-rank views of one gathered buffer (each state's bytes
    padded to 8, so float32, bool and int64 pieces view in place), equal to every rank's rows in
    rank order; unsync() puts back the very tensors the rank had (no clone of the rows)."""
    results = _dist.run(_views_worker, 3)
    for rank, (_, synced, shared, same_objects) in enumerate(results):
        assert same_objects, rank
        storages = set().union(*shared.values())
        assert len(storages) == 1, (rank, shared)  # every piece of every state: one buffer
        for name, pieces in synced.items():
            assert len(pieces) == 3
            for r in range(3):
                torch.testing.assert_close(pieces[r], results[r][0][name], rtol=0, atol=0, msg=f"{rank}:{name}:{r}")
