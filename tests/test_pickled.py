"""Result files of mmaction2 and PySlowFast, read with a restricted unpickler: equal to the suite
on the same arrays; a pickle that would run code is refused with one line and nothing runs."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

import video_metrics as vm
from video_metrics.cli import main
from video_metrics.pickled import UnsafePickleError, safe_load


def _data(n=60, c=5, seed=0, multilabel=False):
    g = torch.Generator().manual_seed(seed)
    if multilabel:
        y = (torch.rand(n, c, generator=g) < 0.3).long()
        y[0] = 0
        y[0, 1] = 1
        s = torch.randn(n, c, generator=g) + y
        return torch.sigmoid(s), y
    t = torch.randint(0, c, (n,), generator=g)
    s = torch.randn(n, c, generator=g)
    s[torch.arange(n), t] += 1.5
    return torch.softmax(s, 1), t


def _suite(p, t, multilabel=False):
    su = vm.VideoClassificationMetrics(p.shape[1], task="multilabel" if multilabel else "multiclass", input="probs")
    su.update(p, t)
    return {k: float(v) for k, v in su.compute().items()}


def _dump(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def _report(tmp_path, f, *extra):
    out = tmp_path / "rep"
    code = main(["report", str(f), "--out", str(out), "--input", "probs", "--no-progress", *extra])
    if code:
        return code, None
    with open(out / "metrics.json") as fh:
        return code, json.load(fh)["scalars"]


def _close(got, exp):
    # one row per video, as the framework aggregated its views: reported as the video level
    exp = {"video/" + k.split("/", 1)[1]: v for k, v in exp.items()}
    exp["video/num_videos"] = got.get("video/num_videos")
    assert set(got) == set(exp)
    for k, v in exp.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


@pytest.mark.parametrize("layout", ["1.1", "1.0"])
def test_mmaction2_dump(tmp_path, layout):
    p, t = _data()
    if layout == "1.1":  # ActionDataSample.to_dict(): pred_score (C,), gt_label (1,)
        rows = [{"pred_score": p[i].clone(), "gt_label": t[i:i + 1].clone(), "num_classes": 5} for i in range(len(t))]
    else:  # mmaction2 1.0: LabelData fields as dicts with an "item" tensor
        rows = [{"pred_scores": {"item": p[i].clone()}, "gt_labels": {"item": t[i:i + 1].clone()}} for i in range(len(t))]
    f = _dump(tmp_path / "results.pkl", rows)
    code, got = _report(tmp_path, f)
    assert code == 0
    _close(got, _suite(p, t))
    code, got = _report(tmp_path, f, "--format", "mmaction2")
    assert code == 0


def test_mmaction2_multilabel_labels_become_multi_hot(tmp_path):
    p, y = _data(multilabel=True)
    rows = [{"pred_score": p[i], "gt_label": torch.nonzero(y[i]).reshape(-1)} for i in range(len(y))]
    f = _dump(tmp_path / "results.pkl", rows)
    code, got = _report(tmp_path, f)
    assert code == 0
    _close(got, _suite(p, y, multilabel=True))


@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_slowfast_results(tmp_path, kind):
    p, t = _data(seed=2)
    obj = [p, t] if kind == "tensor" else [p.numpy(), t.numpy()]
    f = _dump(tmp_path / "slowfast.pkl", obj)
    code, got = _report(tmp_path, f)
    assert code == 0
    _close(got, _suite(p, t))


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    p, t = _data(n=4)
    f = tmp_path / "results.pkl"
    with open(f, "wb") as fh:
        pickle.dump([{"pred_score": p[0], "gt_label": t[:1], "x": _Evil(str(marker))}], fh)
    with pytest.raises(UnsafePickleError, match="io.open"):
        safe_load(str(f))
    code, _ = _report(tmp_path, f)
    assert code == 2 and not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused to unpickle the global io.open" in err[0]
    # a tensor storage is read with the weights-only loader, never torch.load(weights_only=False)
    f2 = tmp_path / "os.pkl"
    with open(f2, "wb") as fh:
        pickle.dump([os.system, 1], fh)
    assert _report(tmp_path, f2)[0] == 2 and not marker.exists()


def test_unknown_layout_and_bad_shapes_exit_2(tmp_path, capsys):
    f = tmp_path / "x.pkl"
    with open(f, "wb") as fh:
        pickle.dump({"a": 1}, fh)
    assert _report(tmp_path, f)[0] == 2
    assert "--format" in capsys.readouterr().err
    with open(f, "wb") as fh:
        pickle.dump([np.zeros((3, 4), dtype=np.float32), np.zeros(5, dtype=np.int64)], fh)
    assert _report(tmp_path, f)[0] == 2
    assert "all_labels" in capsys.readouterr().err
