"""After any exception inside compute() every rank's metric is exactly as before the call (local,
unsynced) and reset() works: 3 gloo processes, a NaN on one rank, every metric class, the
aggregator and the suite (torchmetrics' sync_context left the gathered states in place)."""
import pytest
import torch

import _dist
import video_metrics as vm
from _factories import all_metrics

pytestmark = pytest.mark.timeout(240)

C = 6


def makers():
    out = dict(all_metrics(C))
    out["precision"] = lambda: vm.Precision(C, average="macro")
    out["binary_auroc"] = lambda: vm.AUROC(task="binary")
    out["map_samples"] = lambda: vm.MeanAveragePrecision(C, average="samples")
    out["aggregator"] = lambda: vm.VideoAggregator(C, reduction="mean_probs")
    out["suite"] = lambda: vm.VideoClassificationMetrics(C, video_reduction="mean_logits")
    out["suite_hist"] = lambda: vm.VideoClassificationMetrics(C, bins=32)
    return out


def batch(name, metric, rank, nan):
    g = torch.Generator().manual_seed(100 + rank)
    n = 5 + rank
    task = getattr(metric, "task", "multiclass")
    if task == "binary":
        s, t = torch.randn(n, generator=g), torch.randint(0, 2, (n,), generator=g)
    else:
        s = torch.randn(n, C, generator=g)
        t = torch.randint(0, C, (n,), generator=g) if task == "multiclass" else torch.randint(0, 2, (n, C), generator=g)
    if nan:
        s[0] = float("nan")
    args = [s, t]
    if isinstance(metric, (vm.VideoAggregator, vm.VideoClassificationMetrics)):
        vid = torch.arange(n) + 100 * rank
        if task == "multiclass":
            t[:] = t[0]
            vid = torch.zeros(n, dtype=torch.long) + rank
        args += [vid, torch.arange(n)]
        if metric.bins is not None if isinstance(metric, vm.VideoClassificationMetrics) else False:
            args = [s, t]
    return args


def snapshot(metric):
    out = {}
    for k in metric._defaults:
        v = getattr(metric, k)
        out[k] = [x.clone() for x in v] if isinstance(v, list) else v.clone()
    return out


def _eq(x, y):
    if x.is_floating_point():  # raw rows may hold the NaN that made compute() raise
        return x.shape == y.shape and torch.allclose(x, y, rtol=0, atol=0, equal_nan=True)
    return torch.equal(x, y)


def same(a, b):
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, list) != isinstance(y, list):
            return False
        if isinstance(x, list):
            if len(x) != len(y) or not all(_eq(p, q) for p, q in zip(x, y)):
                return False
        elif not _eq(x, y):
            return False
    return True


def worker(rank, world):
    out = {}
    for name, make in makers().items():
        m = make()
        m.update(*batch(name, m, rank, nan=(rank == 1)))
        before = snapshot(m)
        raised = False
        try:
            m.compute()
        except ValueError:
            raised = True
        restored = same(before, snapshot(m)) and not m._is_synced
        # a second compute raises again with the same counts (sum states not counted twice)
        try:
            m.compute()
            second = None
        except ValueError as e:
            second = str(e)
        m.reset()
        m.update(*batch(name, m, rank, nan=False))
        value = m.compute()
        if isinstance(value, dict):
            value = {k: float(v) for k, v in value.items() if torch.is_tensor(v) and v.numel() == 1}
        elif torch.is_tensor(value):
            value = value.double().tolist()
        else:
            value = type(value).__name__
        out[name] = (raised, restored, second, value)
    return out


def test_compute_error_restores_local_state_on_every_rank():
    results = _dist.run(worker, 3)
    for name in makers():
        per_rank = [r[name] for r in results]
        for rank, (raised, restored, second, _) in enumerate(per_rank):
            assert raised, (name, rank)
            assert restored, (name, rank)
            assert second is not None and "1 row(s) with invalid `scores`" in second, (name, rank, second)
        # after reset() every rank computes the same synced value
        values = [r[3] for r in per_rank]
        assert values[0] == values[1] == values[2], name
