"""update() must not synchronise with the host: checked on the meta device (no values exist)
and with every host-reading call patched to raise."""
import contextlib

import pytest
import torch

from _data import for_task
from _factories import all_metrics

METRICS = all_metrics(10)


def inputs(metric, device="cpu"):
    s, t = for_task(metric.task, "random", 64, 10, 0)
    return s.to(device), t.to(device)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_update_runs_on_meta_device(name):
    m = METRICS[name]().to("meta")
    s, t = inputs(m, "meta")
    m.update(s, t)
    m.update(s.half(), t)
    assert all(v.device.type == "meta" for v in m.metric_state.values() if isinstance(v, torch.Tensor))


@contextlib.contextmanager
def host_reads_forbidden():
    def boom(*_, **__):
        raise AssertionError("host-device synchronisation in update()")

    patches = [
        (torch.Tensor, "item"), (torch.Tensor, "tolist"), (torch.Tensor, "cpu"), (torch.Tensor, "numpy"),
        (torch.Tensor, "__bool__"), (torch.Tensor, "__int__"), (torch.Tensor, "__float__"), (torch.Tensor, "nonzero"),
        (torch, "nonzero"), (torch, "bincount"), (torch.Tensor, "bincount"), (torch, "unique"), (torch.Tensor, "unique"),
        (torch, "masked_select"), (torch.Tensor, "masked_select"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name in patches]
    try:
        for obj, name, _ in saved:
            setattr(obj, name, boom)
        yield
    finally:
        for obj, name, orig in saved:
            setattr(obj, name, orig)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_update_reads_no_value_on_host(name):
    m = METRICS[name]()
    s, t = inputs(m)
    bad_t = t.clone()
    bad_t[0] = 99 if m.task == "multiclass" else 2  # value errors are counted, not raised (binary: t[0] = 2)
    with host_reads_forbidden():
        m.update(s, t)
        m.update(s, bad_t)
    with pytest.raises(ValueError, match=r"1 row\(s\) with a `target` outside"):  # counted, raised at compute
        m.compute()


def test_patch_catches_a_sync():
    with host_reads_forbidden(), pytest.raises(AssertionError, match="synchronisation"):
        torch.ones(2).sum().item()


SUITES = {
    "suite_mc": lambda: __import__("video_metrics").VideoClassificationMetrics(10, video_reduction="mean_logits"),
    "suite_ml": lambda: __import__("video_metrics").VideoClassificationMetrics(10, task="multilabel", video_reduction="max"),
    "aggregator": lambda: __import__("video_metrics").VideoAggregator(10, reduction="vote"),
    "suite_mc_hist": lambda: __import__("video_metrics").VideoClassificationMetrics(10, bins=100),
    "suite_ml_hist": lambda: __import__("video_metrics").VideoClassificationMetrics(10, task="multilabel", bins=100),
    "suite_binary": lambda: __import__("video_metrics").VideoClassificationMetrics(task="binary", video_reduction="mean_probs"),
    "suite_binary_hist": lambda: __import__("video_metrics").VideoClassificationMetrics(task="binary", bins=100),
}


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_update_is_sync_free(name):
    m = SUITES[name]()
    s, t = inputs(m)
    vid, cid = torch.arange(64) // 4, torch.arange(64) % 4
    if getattr(m, "bins", None) is not None:
        vid = cid = None  # histogram mode: clip level only
    with host_reads_forbidden():
        m.update(s, t, vid, cid)
    meta = SUITES[name]().to("meta")
    meta.update(s.to("meta"), t.to("meta"), *(None if x is None else x.to("meta") for x in (vid, cid)))
    assert all(x.device.type == "meta" for v in meta.metric_state.values() for x in (v if isinstance(v, list) else [v]))


def test_suite_update_with_groups_is_sync_free():
    """Slices' group columns: shape/dtype checks only, appended on the device."""
    import video_metrics as vm

    def make():
        return vm.VideoClassificationMetrics(10, video_reduction="mean_logits", slices=("site", "night"), bootstrap=10)

    m = make()
    s, t = inputs(m)
    vid, cid = torch.arange(64) // 4, torch.arange(64) % 4
    groups = torch.stack([vid % 3, vid % 2], 1)
    with host_reads_forbidden():
        m.update(s, t, vid, cid, groups=groups)
    meta = make().to("meta")
    meta.update(s.to("meta"), t.to("meta"), vid.to("meta"), cid.to("meta"), groups=groups.to("meta"))
    assert all(x.device.type == "meta" for v in meta.metric_state.values() for x in (v if isinstance(v, list) else [v]))
