"""``video-metrics compare`` (paired comparison of two files, CI gate) and ``report --bootstrap
--slices-from`` end to end."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch
from matplotlib.image import imread

import video_metrics as vm
from video_metrics.cli import main
from video_metrics.data.predictions import synthetic_predictions


def _write(path, scores, target, video_ids, clip_ids, names, order=None, extra=None):
    c = scores.shape[1]
    rows = range(len(scores)) if order is None else order
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "target"] + [f"score_{k}" for k in range(c)] + list(extra or {}))
        for i in rows:
            w.writerow([names[int(video_ids[i])], int(clip_ids[i]), int(target[i])]
                       + [repr(float(v)) for v in scores[i]] + [v[i] for v in (extra or {}).values()])


@pytest.fixture
def pair(tmp_path):
    d = synthetic_predictions(120, 3, 6, seed=2)
    g = torch.Generator().manual_seed(0)
    sb = d.scores + 0.3 * torch.randn(d.scores.shape, generator=g)
    sb[d.target == 2, 2] -= 3.0  # the candidate forgets class 2
    names = [f"vid_{i:04d}" for i in range(120)]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _write(a, d.scores, d.target, d.video_ids, d.clip_ids, names)
    order = torch.randperm(len(d.scores), generator=g).tolist()  # another row order
    _write(b, sb, d.target, d.video_ids, d.clip_ids, names, order)
    return d, sb, names, a, b


def test_compare_writes_json_html_figures_and_equals_the_api(pair, tmp_path, capsys):
    d, sb, names, a, b = pair
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--bootstrap", "200", "--no-progress"]) == 0
    with open(out / "compare.json") as f:
        got = json.load(f)
    reg = vm.IdRegistry()
    vid = reg.ids([names[i] for i in d.video_ids.tolist()])
    sa = vm.VideoClassificationMetrics(6, video_reduction="mean_logits", id_registry=reg)
    sbm = vm.VideoClassificationMetrics(6, video_reduction="mean_logits", id_registry=reg)
    sa.update(d.scores, d.target, vid, d.clip_ids)
    sbm.update(sb, d.target, vid, d.clip_ids)
    ref = vm.compare(sa, sbm, bootstrap=200).to_dict()
    for k, v in ref["deltas"].items():
        assert got["deltas"][k]["delta"] == pytest.approx(v["delta"], abs=1e-6), k
        assert got["deltas"][k]["low"] == pytest.approx(v["low"], abs=1e-6), k
    assert got["mcnemar"] == ref["mcnemar"]
    assert got["per_class"][0]["index"] == 2 and got["per_class"][0]["high"] < 0
    assert sorted(got["flips"]["video"]["right_to_wrong"]) == sorted(ref["flips"]["video"]["right_to_wrong"])
    assert all(x.startswith("vid_") for x in got["flips"]["video"]["right_to_wrong"])
    html = (out / "compare.html").read_text()
    assert "McNemar" in html and "Per class (recall, video level)" in html and "vid_" in html
    for png in ("compare_deltas.png", "compare_per_class_deltas.png"):
        img = imread(out / png)
        assert img.shape[0] > 100 and img.std() > 0.01
    assert "video/top1" in capsys.readouterr().out


def test_gate_trips_on_a_regression_and_passes_a_lenient_one(pair, tmp_path, capsys):
    _, _, _, a, b = pair
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--bootstrap", "200", "--no-progress",
                 "--fail-if-worse", "video/mean_class_top1:0.01"]) == 1
    text = capsys.readouterr().out
    assert "GATE TRIPPED: video/mean_class_top1" in text
    assert "GATE TRIPPED" in (out / "compare.html").read_text()
    assert main(["compare", str(a), str(b), "--out", str(out), "--bootstrap", "200", "--no-progress",
                 "--fail-if-worse", "video/mean_class_top1:0.9"]) == 0
    # lower is better for the NLL: a rise is the regression
    assert main(["compare", str(a), str(b), "--out", str(out), "--bootstrap", "200", "--no-progress",
                 "--fail-if-worse", "video/nll:0.05"]) == 1
    assert "GATE TRIPPED: video/nll" in capsys.readouterr().out
    assert main(["compare", str(b), str(a), "--out", str(out), "--bootstrap", "200", "--no-progress",
                 "--fail-if-worse", "video/nll:0.05"]) == 0
    # the same file against itself never trips
    assert main(["compare", str(a), str(a), "--out", str(out), "--bootstrap", "50", "--no-progress",
                 "--fail-if-worse", "video/top1:0", "clip/top1:0"]) == 0


@pytest.mark.parametrize("args,msg", [
    (["--fail-if-worse", "video/top1"], "KEY:DELTA"),
    (["--fail-if-worse", "video/top1:-1"], "KEY:DELTA"),
    (["--fail-if-worse", "video/nope:0.1"], "unknown key 'video/nope'"),
])
def test_bad_gates_exit_2(pair, tmp_path, capsys, args, msg):
    _, _, _, a, b = pair
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o"), "--bootstrap", "20", "--no-progress"] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


def test_different_videos_exit_2(tmp_path, capsys):
    d = synthetic_predictions(40, 2, 5, seed=1)
    names = [f"v{i}" for i in range(40)]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _write(a, d.scores, d.target, d.video_ids, d.clip_ids, names)
    keep = (d.video_ids < 37).nonzero().squeeze(1).tolist()
    _write(b, d.scores, d.target, d.video_ids, d.clip_ids, names, keep)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o"), "--no-progress", "--bootstrap", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # the files as given on the command line, and one example id
    assert len(err) == 1 and f"3 video(s) only in {a}, 0 only in {b}" in err[0] and "e.g. video 'v3" in err[0]
    assert main(["compare", str(a), str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2


def test_report_with_bootstrap_and_slices_from_a_text_column(tmp_path, capsys):
    d = synthetic_predictions(90, 2, 5, seed=3)
    names = [f"v{i}" for i in range(90)]
    site = [["north", "south", "east"][int(v) % 3] for v in d.video_ids]
    f = tmp_path / "p.csv"
    _write(f, d.scores, d.target, d.video_ids, d.clip_ids, names, extra={"site": site})
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--bootstrap", "40", "--slices-from", "site",
                 "--min-slice-size", "31", "--no-progress"]) == 0
    with open(out / "metrics.json") as fh:
        got = json.load(fh)
    assert got["ci"] == 0.95 and got["intervals"]["video/top1"][0] <= got["scalars"]["video/top1"] + 1e-12
    sl = {s["value"]: s for s in got["slices"]}
    assert set(sl) == {"east", "north", "south"} and all(s["num_videos"] == 30 and s["too_small"] for s in sl.values())
    m = torch.tensor([s == "north" for s in site])
    ref = vm.VideoClassificationMetrics(5, video_reduction="mean_logits")
    ref.update(d.scores[m], d.target[m], d.video_ids[m], d.clip_ids[m])
    for k, v in ref.compute().items():
        if k in sl["north"]["scalars"]:
            assert sl["north"]["scalars"][k] == pytest.approx(float(v), abs=1e-6), k
    html = (out / "report.html").read_text()
    assert "id=\"slices\"" in html and "site=north" in html and "bootstrap percentile intervals" in html
    assert os.path.exists(out / "intervals.png")
    assert "[" in capsys.readouterr().out  # intervals next to the numbers
    assert main(["report", str(f), "--out", str(out), "--slices-from", "nope", "--no-progress"]) == 2


def test_report_fit_temperature(tmp_path, capsys):
    d = synthetic_predictions(80, 3, 5, seed=4)
    scores = d.scores * 3  # over-confident
    f = tmp_path / "p.csv"
    _write(f, scores, d.target, d.video_ids, d.clip_ids, [f"v{i}" for i in range(80)])
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--fit-temperature", "--no-progress"]) == 0
    with open(out / "metrics.json") as fh:
        got = json.load(fh)["temperature"]
    su = vm.VideoClassificationMetrics(5, video_reduction="mean_logits")
    su.update(scores, d.target, d.video_ids, d.clip_ids)
    ref = su.fit_temperature("video")
    assert got["level"] == "video" and got["temperature"] == pytest.approx(ref.temperature, rel=1e-6)
    assert got["ece_after"] < got["ece_before"]
    assert "Temperature scaling" in (out / "report.html").read_text() and os.path.exists(out / "temperature.png")
    assert "Temperature (video level)" in capsys.readouterr().out
    fp = tmp_path / "probs.csv"
    _write(fp, torch.softmax(scores, 1), d.target, d.video_ids, d.clip_ids, [f"v{i}" for i in range(80)])
    assert main(["report", str(fp), "--out", str(out), "--input", "probs", "--no-progress"]) == 0
    assert main(["report", str(fp), "--out", str(out), "--fit-temperature", "--input", "probs", "--no-progress"]) == 2
    assert "input='probs'" in capsys.readouterr().err
