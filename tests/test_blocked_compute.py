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


def _watch_workspace(monkeypatch) -> list:
    """The shapes of every Workspace.empty() call from now on (the levels' ranking buffers)."""
    from video_metrics.functional import workspace as wsmod

    shapes = []
    orig = wsmod.Workspace.empty

    def spy(self, shape, dtype, device):
        shapes.append(tuple(shape))
        return orig(self, shape, dtype, device)

    monkeypatch.setattr(wsmod.Workspace, "empty", spy)
    return shapes


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
    """multiclass_rows (one definition of the per-row quantities) and the transposed writes."""
    from video_metrics.functional.classification import log_softmax_rows, multiclass_rows, target_rank
    from video_metrics.functional.ranking import copy_transposed, sub_transposed

    g = torch.Generator().manual_seed(c)
    x = torch.randn(2050, c, generator=g) * 30
    x[5] = 7.0  # a row of ties
    x[6, :] = -1e30
    x[7, 0] = 3e38  # near the float32 maximum
    t = torch.randint(0, c, (2050,), generator=g)
    t[5] = c - 1  # tied with every class
    r = multiclass_rows(x, t)
    assert torch.equal(r.pred, x.argmax(1)) and torch.equal(r.rank, target_rank(x, t))
    lse = r.lse
    assert torch.equal(lse, x.logsumexp(1))
    # the losses: the softmax's confidence (bitwise, as the standalone metrics bin it), the NLL
    # from the log-sum-exp, the Brier term in float64
    p = x.softmax(1)
    assert torch.equal(r.conf, p.gather(1, r.pred[:, None]).squeeze(1))
    assert torch.equal(r.nll, -(x.gather(1, t[:, None]).squeeze(1) - lse).double())
    onehot = torch.nn.functional.one_hot(t, c).double()
    torch.testing.assert_close(r.brier, (p.double() - onehot).square().sum(1), rtol=0, atol=1e-12)
    exact = target_rank(x, t)
    x_ties = x.round()  # many ties with the target
    for k in (1, 2, 5):
        for xx in (x, x_ties):
            got = multiclass_rows(xx, t, k_max=k, losses=False).rank  # exact below k, >= k above
            ref = target_rank(xx, t)
            assert torch.equal(torch.where(ref < k, ref, k), got.clamp_max(k)), k
    assert c == 1 or ((exact > 0).any() and ((x_ties == x_ties.gather(1, t[:, None])).sum(1) > 1).any())
    short = multiclass_rows(x, t, losses=False)
    assert short.conf is None and torch.equal(short.lse, lse) and torch.equal(short.rank, r.rank)
    # the probabilities form (aggregated videos, input="probs") gives the same from (key, probs, log p)
    rp = multiclass_rows(x, t, p, log_softmax_rows(x, lse[:, None]))
    assert torch.equal(rp.conf, r.conf) and torch.equal(rp.nll, r.nll) and torch.equal(rp.brier, r.brier)
    dst_fused = torch.full((c, 2100), float("nan"))
    dst_plain = dst_fused.clone()
    sub_transposed(dst_fused[:, 30:30 + 2050], x, lse, tile=256)
    copy_transposed(dst_plain[:, 30:30 + 2050], log_softmax_rows(x))
    assert torch.equal(dst_fused[:, 30:2080], dst_plain[:, 30:2080])
    assert dst_fused[:, :30].isnan().all() and dst_fused[:, 2080:].isnan().all()  # nothing written outside
    from video_metrics.functional.classification import rowwise_f64

    for fn in (lambda d: d.square().sum(1), lambda d: d.logsumexp(1)):
        assert torch.equal(rowwise_f64(fn, x, rows=100), fn(x.double()))


def test_workspace_hands_out_disjoint_views_then_fresh_tensors():
    from video_metrics.functional.workspace import Workspace

    buf = torch.zeros(100, dtype=torch.float32)  # 400 bytes
    ws = Workspace(buf)
    a = ws.empty((3, 4), torch.float64, torch.device("cpu"))  # 96 bytes at 0
    b = ws.zeros((5,), torch.int64, torch.device("cpu"))  # 40 bytes at 128 (aligned)
    c = ws.full((2, 2), 7.0, torch.float32, torch.device("cpu"))  # 16 bytes at 192
    for x in (a, b, c):
        assert x.untyped_storage().data_ptr() == buf.untyped_storage().data_ptr()
    offsets = [x.data_ptr() - buf.data_ptr() for x in (a, b, c)]
    assert offsets == [0, 128, 192]
    a.fill_(1.0)
    assert torch.equal(b, torch.zeros(5, dtype=torch.int64)) and torch.equal(c, torch.full((2, 2), 7.0))
    assert ws.free_bytes == 400 - 256
    big = ws.empty((100,), torch.float32, torch.device("cpu"))  # does not fit: a fresh tensor
    assert big.untyped_storage().data_ptr() != buf.untyped_storage().data_ptr()
    other = ws.empty((2,), torch.float32, torch.device("meta"))  # another device: fresh
    assert other.device.type == "meta"
    assert Workspace().empty((2, 3), torch.float64, torch.device("cpu")).shape == (2, 3)
    assert Workspace(buf).empty((0, 3), torch.float64, torch.device("cpu")).shape == (0, 3)


@pytest.mark.parametrize("task, reduction, clips", [
    ("multiclass", "mean_logits", 10), ("multiclass", "mean_logits", 2), ("multiclass", "mean_probs", 6),
    ("multiclass", "vote", 10), ("multiclass", "max", 3), ("multilabel", "mean_logits", 10), ("multilabel", "max", 2),
])
@pytest.mark.filterwarnings("ignore:.*identical scores")
def test_compute_on_lent_clip_memory_equals_report(monkeypatch, task, reduction, clips):
    """compute() carves the video level's arrays from the clip level's finished ranking matrix
    (all of them at 10 clips a video, some at 2-3): its scalars equal report()'s, which lends
    nothing, and the workspace was really used."""
    from video_metrics.functional import workspace as wsmod

    lent = []
    orig = wsmod.Workspace.empty

    def spy(self, shape, dtype, device):
        out = orig(self, shape, dtype, device)
        if self._bytes is not None:
            lent.append(out.untyped_storage().data_ptr() == self._bytes.untyped_storage().data_ptr())
        return out

    monkeypatch.setattr(wsmod.Workspace, "empty", spy)
    s, t, vid, cid = _data(task, n_videos=30, clips=clips, c=13, seed=clips)
    suite = vm.VideoClassificationMetrics(13, task=task, top_k=(1, 3) if task == "multiclass" else None,
                                          video_reduction=reduction)
    _feed(suite, s, t, vid, cid)
    out = suite.compute()
    assert lent and lent[0]  # the first video array always fits in the clip matrix
    if clips >= 10:
        assert all(lent)
    rep = suite.report()
    for k, v in out.items():
        assert float(v) == pytest.approx(rep.scalars[k], rel=1e-12, abs=1e-15, nan_ok=True), k
    # and equal to a suite that never lends (a fresh tensor for every array)
    monkeypatch.setattr(levels.Level, "lend_workspace", lambda self: wsmod.Workspace())
    suite._computed = None
    again = suite.compute()
    for k, v in out.items():
        assert float(v) == pytest.approx(float(again[k]), rel=1e-12, abs=1e-15, nan_ok=True), k


@pytest.mark.filterwarnings("ignore:.*identical scores")
@pytest.mark.parametrize("reduction, input", [("mean_logits", "logits"), ("mean_probs", "probs"), ("vote", "logits"),
                                              ("max", "probs")])
def test_compute_builds_class_blocks_from_the_rows(monkeypatch, reduction, input):
    """compute() of a multiclass level makes no (C, N) ranking matrix: each class block is rebuilt
    from the rows (their log-sum-exps, or logarithms of probabilities; padded duplicates dropped)
    into one reused buffer. With blocks forced tiny (many row and class blocks) its scalars equal
    report()'s, which ranks from the whole matrix."""
    s, t, vid, cid = _data("multiclass", n_videos=40, clips=3, c=11, seed=3)
    if input == "probs":
        s = s.softmax(1)
    shapes = _watch_workspace(monkeypatch)
    results = []
    for bv in (1 << 22, 23):
        monkeypatch.setattr(levels, "BLOCK_VALUES", bv)
        suite = vm.VideoClassificationMetrics(11, top_k=(1, 3), video_reduction=reduction, input=input)
        _feed(suite, s, t, vid, cid)
        shapes.clear()
        out = suite.compute()
        n = int(out["video/num_clips"])
        assert n == 120
        if bv == 23:  # one class block's buffer per level, never the whole (C, N) matrix
            cb = levels.block_sizes(n, 11)[1]
            assert cb < 11 and (cb, n) in shapes, shapes
            assert ((cb, 40) in shapes) == ("video/auroc_macro" in out), shapes  # vote: no video ranking
            assert (11, n) not in shapes and (11, 40) not in shapes, shapes
        results.append((out, suite.report().scalars))
    (big, big_rep), (tiny, tiny_rep) = results
    for k in big:
        for other in (big_rep[k], float(tiny[k]), tiny_rep[k]):
            assert float(big[k]) == pytest.approx(other, rel=1e-12, abs=1e-15, nan_ok=True), k


@pytest.mark.filterwarnings("ignore:.*identical scores")
@pytest.mark.parametrize("reduction, input", [("mean_logits", "logits"), ("mean_probs", "probs"), ("vote", "logits")])
def test_report_and_bootstrap_read_class_blocks_not_the_matrix(monkeypatch, reduction, input):
    """report()'s per-class curves and AP and the bootstrap's replicates of a multiclass suite are
    taken from class blocks rebuilt from the rows: no (C, N) ranking matrix is allocated, the
    clip-level per-class AP and PR curves equal sklearn's on the de-duplicated rows, and the
    replicates are the same with one class block or many."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    s, t, vid, cid = _data("multiclass", n_videos=40, clips=3, c=11, seed=5)
    if input == "probs":
        s = s.softmax(1)
    shapes = []
    orig_empty = torch.empty

    def spy(*size, **kw):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        shapes.append(tuple(int(x) for x in shape))
        return orig_empty(*size, **kw)

    results = []
    for bv in (1 << 22, 23):
        monkeypatch.setattr(levels, "BLOCK_VALUES", bv)
        suite = vm.VideoClassificationMetrics(11, top_k=(1, 3), video_reduction=reduction, input=input)
        _feed(suite, s, t, vid, cid)
        monkeypatch.setattr(torch, "empty", spy)
        shapes.clear()
        rep = suite.report()
        reps = vm.bootstrap.replicates(suite, 25, seed=3)
        monkeypatch.setattr(torch, "empty", orig_empty)
        if bv == 23:
            assert (11, 120) not in shapes and (11, 40) not in shapes, shapes
            assert (levels.block_sizes(120, 11)[1], 120) in shapes, shapes
        results.append((rep, reps))
        # clip level against sklearn: the ranking scores are the log-probabilities of the 120 kept rows
        logp = (s[:120].log_softmax(1) if input == "logits" else s[:120].log()).double().numpy()
        y = t[:120].numpy()
        for k in range(11):
            if (y == k).any():
                assert rep.clip.ap[k] == pytest.approx(average_precision_score(y == k, logp[:, k]), abs=1e-9), k
                p, r, _ = precision_recall_curve(y == k, logp[:, k])
                got_p, got_r = rep.clip.pr_curves.precision[k].numpy(), rep.clip.pr_curves.recall[k].numpy()
                for pi, ri in zip(got_p, got_r):
                    assert (np.isclose(r, ri) & np.isclose(p, pi)).any(), (k, pi, ri)
            else:
                assert math.isnan(rep.clip.ap[k])
    (rep_a, reps_a), (rep_b, reps_b) = results
    _same(rep_b.to_dict(), rep_a.to_dict())
    assert reps_a.keys() == reps_b.keys() and any(k.endswith("auprc_macro") for k in reps_a)
    for k in reps_a:
        torch.testing.assert_close(reps_b[k], reps_a[k], rtol=1e-12, atol=1e-15, equal_nan=True, msg=k)


@pytest.mark.filterwarnings("ignore:.*identical scores")
@pytest.mark.parametrize("reduction, input, kw", [("max", "logits", {}), ("mean_probs", "probs", {"empty_videos": "exclude"}),
                                                  ("mean_logits", "logits", {"ap_mode": "interpolated"})])
def test_multilabel_compute_builds_class_blocks_from_the_rows(monkeypatch, reduction, input, kw):
    """compute() and report() of a multilabel suite make no (C, N) ranking matrix: class blocks are
    rebuilt from the rows, the micro AP counts each block's pairs below the positives' scores.
    Scalars equal with one class block and with many, and the clip level equals sklearn's on the
    de-duplicated rows (macro AP over classes with a positive, micro AP over every pair)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    s, t, vid, cid = _data("multilabel", n_videos=40, clips=3, c=11, seed=3)
    if input == "probs":
        s = s.sigmoid()
    shapes = _watch_workspace(monkeypatch)
    results = []
    for bv in (1 << 22, 23):
        monkeypatch.setattr(levels, "BLOCK_VALUES", bv)
        suite = vm.VideoClassificationMetrics(11, task="multilabel", video_reduction=reduction, input=input, **kw)
        _feed(suite, s, t, vid, cid)
        shapes.clear()
        out = suite.compute()
        rep = suite.report()
        if bv == 23:
            cb = levels.block_sizes(120, 11)[1]
            assert cb < 11 and (cb, 120) in shapes and (cb, 40) in shapes, shapes
            assert (11, 120) not in shapes and (11, 40) not in shapes, shapes
        results.append((out, rep.scalars, rep.clip.pr_micro[0].tolist()))
    (big, big_rep, big_curve), (tiny, tiny_rep, tiny_curve) = results
    for k in big:
        for other in (big_rep[k], float(tiny[k]), tiny_rep[k]):
            assert float(big[k]) == pytest.approx(other, rel=1e-12, abs=1e-15, nan_ok=True), k
    assert big_curve == pytest.approx(tiny_curve, rel=1e-12)
    y, x = t[:120].numpy(), s[:120].double().numpy()
    assert float(big["clip/mAP_micro"]) == pytest.approx(average_precision_score(y.ravel(), x.ravel()), abs=1e-6)
    has = y.sum(0) > 0
    if kw.get("ap_mode", "step") == "step":
        rows = y.sum(1) > 0 if kw.get("empty_videos") == "exclude" else np.ones(120, bool)
        per = [average_precision_score(y[rows, j], x[rows, j]) for j in np.flatnonzero(has)]
        assert float(big["clip/mAP"]) == pytest.approx(np.mean(per), abs=1e-6)
    auc = [roc_auc_score(y[:, j], x[:, j]) for j in np.flatnonzero(has)]
    assert float(big["clip/auroc_macro"]) == pytest.approx(np.mean(auc), abs=1e-6)


def test_bin_update_in_chunks_is_bitwise_one_pass(monkeypatch):
    """bin_update bins BIN_CHUNK values at a time: each bin adds its values in the same order, so the
    sums are bitwise those of one pass (values on bin edges included)."""
    from video_metrics.functional import calibration as cal

    g = torch.Generator().manual_seed(0)
    conf = torch.cat([torch.rand(5000, generator=g), torch.arange(16) / 15.0]).float()
    correct = torch.rand(conf.numel(), generator=g) < conf
    weight = torch.rand(conf.numel(), generator=g) < 0.9
    one = cal.bin_update(conf, correct, weight, 15)
    monkeypatch.setattr(cal, "BIN_CHUNK", 7)
    assert torch.equal(cal.bin_update(conf, correct, weight, 15), one)
    assert one[0].sum() == weight.sum() and torch.equal(one[0], one[0].round())
