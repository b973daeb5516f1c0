"""summarize_runs and ``video-metrics report A B C --runs``: mean, std (ddof=1), min, max by hand and
against each run reported alone; runs that differ in keys or classes refused in one line."""
from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest

import video_metrics as vm
from video_metrics.cli import main
from video_metrics.data.predictions import synthetic_predictions
from video_metrics.runs import RunsError


def test_statistics_by_hand():
    runs = [{"scalars": {"top1": a, "ece": b}} for a, b in ((0.70, 0.05), (0.74, 0.07), (0.72, 0.03), (0.69, 0.04))]
    s = vm.summarize_runs(runs)
    top1 = [0.70, 0.74, 0.72, 0.69]
    assert s.mean["top1"] == pytest.approx(statistics.fmean(top1), abs=1e-15)
    assert s.std["top1"] == pytest.approx(statistics.stdev(top1), abs=1e-15)  # ddof=1
    assert s.std["ece"] == pytest.approx(np.std([0.05, 0.07, 0.03, 0.04], ddof=1), abs=1e-15)
    assert (s.min["top1"], s.max["top1"], s.values["top1"]) == (0.69, 0.74, top1)
    assert s.names == ["run1", "run2", "run3", "run4"] and s.keys == ["top1", "ece"]


def test_an_undefined_value_is_nan_not_averaged_over_the_rest():
    s = vm.summarize_runs([{"scalars": {"map": 0.5}}, {"scalars": {"map": None}}, {"scalars": {"map": 0.7}}])
    assert all(math.isnan(x) for x in (s.mean["map"], s.std["map"], s.min["map"], s.max["map"]))
    assert s.to_dict()["keys"]["map"]["values"] == [0.5, None, 0.7]


def test_runs_that_differ_are_refused():
    a = {"num_classes": 101, "class_names": ["a"] * 101, "scalars": {"top1": 0.5}}
    with pytest.raises(RunsError, match="run2 reports other keys than run1: not in run1: \\['top5'\\]; missing: \\['top1'\\]"):
        vm.summarize_runs([a, dict(a, scalars={"top5": 0.9})])
    with pytest.raises(RunsError, match="run2 has other classes than run1"):
        vm.summarize_runs([a, dict(a, class_names=["b"] * 101)])
    with pytest.raises(RunsError, match="at least 2 runs"):
        vm.summarize_runs([a])
    with pytest.raises(RunsError, match="scalar 'top1' is 'high', not a number"):
        vm.summarize_runs([a, dict(a, scalars={"top1": "high"})])


def _npz(path, seed):
    p = synthetic_predictions(num_videos=40, clips_per_video=2, num_classes=5, seed=seed)
    np.savez(path, scores=p.scores.numpy(), target=p.target.numpy(), video_ids=p.video_ids.numpy(),
             clip_ids=p.clip_ids.numpy())
    return str(path)


def test_cli_runs_equal_each_file_reported_alone(tmp_path, capsys):
    files = [_npz(tmp_path / f"split{i}.npz", i) for i in (1, 2, 3)]
    alone = []
    for i, f in enumerate(files):
        assert main(["report", f, "--out", str(tmp_path / f"r{i}"), "--no-progress"]) == 0
        alone.append(json.load(open(tmp_path / f"r{i}" / "metrics.json"))["scalars"])
    out = tmp_path / "runs"
    out.mkdir()
    (out / "keep.md").write_text("mine")
    assert main(["report", *files, "--runs", "--out", str(out), "--no-progress"]) == 0
    rows = {r["key"]: r for r in csv.DictReader(open(out / "runs.csv"))}
    for key in ("video/top1", "clip/ece", "video/auprc_macro"):
        vals = [a[key] for a in alone]
        assert float(rows[key]["mean"]) == pytest.approx(statistics.fmean(vals), abs=1e-12)
        assert float(rows[key]["std"]) == pytest.approx(statistics.stdev(vals), abs=1e-12)
        assert [float(rows[key][f]) for f in files] == pytest.approx(vals, abs=1e-12)
    assert (out / "keep.md").read_text() == "mine"
    assert "video/top1" in capsys.readouterr().out
    # report folders and metrics.json files are runs too
    assert main(["report", str(tmp_path / "r0"), str(tmp_path / "r1" / "metrics.json"), "--runs",
                 "--out", str(tmp_path / "runs2")]) == 0
    got = json.load(open(tmp_path / "runs2" / "runs.json"))["keys"]["video/top1"]
    assert got["values"] == pytest.approx([alone[0]["video/top1"], alone[1]["video/top1"]])


def test_cli_runs_refusals_are_one_line(tmp_path, capsys):
    a = _npz(tmp_path / "a.npz", 1)
    p = synthetic_predictions(num_videos=40, clips_per_video=2, num_classes=6, seed=2)
    b = str(tmp_path / "b.npz")
    np.savez(b, scores=p.scores.numpy(), target=p.target.numpy(), video_ids=p.video_ids.numpy(),
             clip_ids=p.clip_ids.numpy())
    assert main(["report", a, b, "--runs", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has other classes than" in err[0] and "6 classes named" in err[0] and "vs 5 classes" in err[0]
    assert main(["report", a, a, "--out", str(tmp_path / "o")]) == 2
    assert "pass --runs" in capsys.readouterr().err
    assert main(["report", a, "--runs", "--out", str(tmp_path / "o")]) == 2
    assert "--runs needs at least 2 runs" in capsys.readouterr().err
