"""compute() works through rows and classes in blocks (bounded memory): with blocks forced tiny,
every scalar and every report field equals the one-block result."""
import math

import numpy as np
import pytest
import torch

import video_metrics as vm
import video_metrics.levels as levels


def _feed(suite, s, t, vid, cid, bs=37):
    for i in range(0, len(s), bs):
        suite.update(s[i:i + bs], t[i:i + bs], vid[i:i + bs], cid[i:i + bs])


def _data(task, n_videos=40, clips=3, c=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_videos * clips
    vid = torch.arange(n_videos).repeat_interleave(clips)
    cid = torch.arange(clips).repeat(n_videos)
    s = torch.randn(n, c, generator=g) * 2
    if task == "multiclass":
        t = torch.randint(0, c - 1, (n_videos,), generator=g).repeat_interleave(clips)  # class c-1: no positive
        s[torch.arange(n), t] += 1.5
    else:
        t = (torch.rand(n_videos, c, generator=g) < 0.3).long().repeat_interleave(clips, 0)
        t[:, -1] = 0
        t[:clips] = 0  # a video without any label
        s = s + 1.5 * t
    s[5] = s[4]  # tied rows
    # sampler padding: repeat a few rows at the end (dropped by clip ids)
    pad = torch.tensor([0, 7, 8])
    return torch.cat([s, s[pad]]), torch.cat([t, t[pad]]), torch.cat([vid, vid[pad]]), torch.cat([cid, cid[pad]])


def _same(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            assert a is b, path
        else:
            # rel 1e-7: fp32 sigmoid/softmax may differ by an ulp between the vectorised body and the
            # scalar tail of a block, so sums of probabilities can move in the 8th digit
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-7, abs=1e-12), (path, a, b)
    else:
        assert a == b, path


def _report(task, reduction, **kw):
    s, t, vid, cid = _data(task)
    suite = vm.VideoClassificationMetrics(11, task=task, top_k=(1, 3) if task == "multiclass" else None,
                                          video_reduction=reduction, **kw)
    _feed(suite, s, t, vid, cid)
    rep = suite.report()
    d = rep.to_dict()
    curves = {lv: [[c.tolist() for c in getattr(getattr(rep, lv), "pr_curves").precision],
                   [c.tolist() for c in getattr(getattr(rep, lv), "pr_curves").recall]]
              for lv in ("clip", "video") if getattr(rep, lv) is not None}
    extra = {}
    for lv in ("clip", "video"):
        r = getattr(rep, lv)
        if r is not None and r.pr_counts is not None:
            extra[lv] = r.pr_counts.tolist()
        if r is not None and r.pr_micro is not None:
            extra[lv + "_micro"] = [r.pr_micro[0].tolist(), r.pr_micro[1].tolist()]
    return d, curves, extra


@pytest.mark.parametrize("task, reduction, kw", [
    ("multiclass", "mean_logits", {}),
    ("multiclass", "mean_probs", {"ap_mode": "interpolated"}),
    ("multiclass", "max", {}),
    ("multiclass", "vote", {"predicted_absent": "zero"}),
    ("multilabel", "max", {"empty_videos": "exclude"}),
    ("multilabel", "mean_logits", {"ap_mode": "voc11", "empty_class": "zero"}),
])
def test_tiny_blocks_give_the_same_results(monkeypatch, task, reduction, kw):
    ref = _report(task, reduction, **kw)
    monkeypatch.setattr(levels, "BLOCK_VALUES", 23)  # 2 rows a block, one or two classes a block
    assert levels.block_sizes(120, 11) == (16, 2) or levels.block_sizes(120, 11)[1] <= 2
    got = _report(task, reduction, **kw)
    _same(got, ref)


def test_multilabel_micro_ap_and_curve_match_sklearn():
    from sklearn.metrics import average_precision_score, precision_recall_curve

    s, t, vid, cid = _data("multilabel")
    suite = vm.VideoClassificationMetrics(11, task="multilabel")
    suite.update(s, t)
    rep = suite.report()
    y, x = t.numpy().ravel(), s.numpy().ravel()
    assert rep.scalars["clip/mAP_micro"] == pytest.approx(average_precision_score(y, x), abs=1e-12)
    p, r, _ = precision_recall_curve(y, x)
    got_p, got_r = rep.clip.pr_micro[0].numpy(), rep.clip.pr_micro[1].numpy()
    # our curve has the points of sklearn's where recall changes (the corners of the step curve)
    for pi, ri in zip(got_p, got_r):
        hits = np.flatnonzero(np.isclose(r, ri) & np.isclose(p, pi))
        assert hits.size, (pi, ri)


def _sort_in_child(q):
    from video_metrics.functional.ranking import _sort_rows

    x = torch.randn(4, 2**17)
    q.put(bool((_sort_rows(x).numpy() == np.sort(x.numpy(), axis=1)).all()))


@pytest.mark.timeout(120)
def test_threaded_sort_works_after_fork():
    """The row-sort thread pool is per process: a child forked after the parent used it (DDP
    fork, DataLoader workers) must not wait on the parent's threads."""
    import multiprocessing as mp

    from video_metrics.functional.ranking import _sort_rows

    if torch.get_num_threads() < 2:
        torch.set_num_threads(2)
    _sort_rows(torch.randn(4, 2**17))  # the parent's pool exists now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_sort_in_child, args=(q,))
    p.start()
    p.join(60)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive, "the forked child hung on the parent's thread pool"
    assert q.get(timeout=5) is True


@pytest.mark.parametrize("c", [1, 3, 400, 1001])
def test_fused_row_pass_kernels_are_bitwise_the_plain_ones(c):
    from video_metrics.functional.classification import log_softmax_rows, logsumexp_from_max
    from video_metrics.functional.ranking import copy_transposed, sub_transposed

    g = torch.Generator().manual_seed(c)
    x = torch.randn(2050, c, generator=g) * 30
    x[5] = 7.0  # a row of ties
    x[6, :] = -1e30
    x[7, 0] = 3e38  # near the float32 maximum
    row_max, pred = x.max(1)
    assert torch.equal(pred, x.argmax(1)) and torch.equal(row_max, x.amax(1))
    lse = logsumexp_from_max(x, row_max)
    assert torch.equal(lse, x.logsumexp(1))
    dst_fused = torch.full((c, 2100), float("nan"))
    dst_plain = dst_fused.clone()
    sub_transposed(dst_fused[:, 30:30 + 2050], x, lse, tile=256)
    copy_transposed(dst_plain[:, 30:30 + 2050], log_softmax_rows(x))
    assert torch.equal(dst_fused[:, 30:2080], dst_plain[:, 30:2080])
    assert dst_fused[:, :30].isnan().all() and dst_fused[:, 2080:].isnan().all()  # nothing written outside
    from video_metrics.functional.classification import rowwise_f64

    for fn in (lambda d: d.square().sum(1), lambda d: d.logsumexp(1)):
        assert torch.equal(rowwise_f64(fn, x, rows=100), fn(x.double()))
