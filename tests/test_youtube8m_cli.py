"""``video-metrics report --format youtube8m``: a Kaggle submission against its labels, equal to the
official functions (tests/test_youtube8m.py's transcription) and to YouTube8MMetrics; missing
videos as misses; every malformed file refused in one line naming the file and line; the report
folder read back."""
from __future__ import annotations

import json
import os

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

import video_metrics as vm
from test_youtube8m import official, youtube_like
from video_metrics.cli import main

C = 3862


def write_files(folder, n=400, skip=(), seed=0):
    logits, target = youtube_like(n, seed=seed)
    probs = torch.sigmoid(logits.double())
    vals, cls = torch.topk(probs, 20, dim=1)
    sub, lab = os.path.join(folder, "submission.csv"), os.path.join(folder, "labels.csv")
    with open(sub, "w") as f:
        f.write("VideoId,LabelConfidencePairs\n")
        for i in range(n):
            if i not in skip:
                f.write(f"v{i}," + " ".join(f"{int(c)} {float(v)!r}" for c, v in zip(cls[i], vals[i])) + "\n")
    with open(lab, "w") as f:
        f.write("VideoId,Labels\n")
        for i in range(n):
            f.write(f"v{i}," + " ".join(str(j) for j in torch.nonzero(target[i]).flatten().tolist()) + "\n")
    return sub, lab, probs, target


def report(tmp_path, sub, lab, *extra):
    out = str(tmp_path / "out")
    return main(["report", sub, "--format", "youtube8m", "--labels", lab, "--out", out, "--no-progress", *extra]), out


def test_submission_equals_the_official_functions_and_the_folder_reads_back(tmp_path, capsys):
    sub, lab, probs, target = write_files(str(tmp_path))
    os.makedirs(tmp_path / "out")
    (tmp_path / "out" / "notes.txt").write_text("mine")
    code, out = report(tmp_path, sub, lab)
    assert code == 0
    want = official(probs.numpy(), target.numpy())
    got = json.load(open(os.path.join(out, "metrics.json")))
    for k in ("gap", "hit_at_1", "perr", "map"):
        assert got["scalars"][k] == pytest.approx(float(want[k]), abs=1e-12), k
    assert got["scalars"]["num_videos"] == 400 and got["info"]["missing_videos"] == 0
    assert sum(got["per_class"]["positives"]) == int(target.sum())
    printed = capsys.readouterr().out
    assert f"GAP@20      {want['gap']:>10.4f}" in printed
    page = open(os.path.join(out, "report.html")).read()
    worst = min((v, i) for i, v in enumerate(got["per_class"]["ap"]) if v is not None)[1]
    assert f"<tr><td>{worst}</td>" in page and 'src="per_class_ap.png"' in page
    img = mpimg.imread(os.path.join(out, "per_class_ap.png"))
    assert img.shape[0] > 300 and img.shape[1] > 300 and img[..., :3].std() > 0.05  # drawn, not blank
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_videos_without_a_line_are_misses_and_said(tmp_path, capsys):
    sub, lab, probs, target = write_files(str(tmp_path), n=200, skip={3, 50, 51}, seed=1)
    code, out = report(tmp_path, sub, lab)
    assert code == 0
    got = json.load(open(os.path.join(out, "metrics.json")))["scalars"]
    keep = [i for i in range(200) if i not in {3, 50, 51}]
    part = official(probs[keep].numpy(), target[keep].numpy())
    assert got["num_videos"] == 200
    assert got["hit_at_1"] == pytest.approx(part["hit_at_1"] * 197 / 200, abs=1e-12)
    assert got["perr"] == pytest.approx(part["perr"] * 197 / 200, abs=1e-12)
    m = vm.YouTube8MMetrics(C, score_dtype=torch.float64)  # the same as the metric fed with empty rows
    vals, cls = torch.topk(probs, 20, dim=1)
    cls[[3, 50, 51]] = -1
    m.update_top_k(vals, cls, target)
    assert got["gap"] == pytest.approx(float(m.compute()["gap"]), abs=1e-15)
    assert got["gap"] < part["gap"]  # their labels stay in the denominator
    assert "3 labelled video(s) had no line in the submission and count as misses" in capsys.readouterr().out


@pytest.mark.parametrize("line, message", [
    ("v1,3 0.5 4", "submission.csv:2: LabelConfidencePairs must be 'label score' pairs, got 3 tokens"),
    ("nope,3 0.5", "submission.csv:2: video 'nope' has no line in"),
    ("v1,3862 0.5", "submission.csv:2: label 3862 outside the 3862 classes"),
    ("v1,x 0.5", "submission.csv:2: label 'x' is not an integer class id"),
    ("v1,3 1.5", "submission.csv:2: confidences must be numbers in [0, 1]"),
    ("v1,3 nan", "submission.csv:2: confidences must be numbers in [0, 1]"),
    ("v1,3 0.5 3 0.4", "submission.csv:2: a label is listed twice"),
    ("v1,3 0.5\nv1,4 0.5", "submission.csv:3: video 'v1' is submitted again (first on line 2)"),
    ("v1,3 0.5,extra", "submission.csv:2: expected 2 columns"),
])
def test_a_malformed_submission_is_one_line_and_exit_2(tmp_path, capsys, line, message):
    _, lab, _, _ = write_files(str(tmp_path), n=5)
    sub = tmp_path / "submission.csv"
    sub.write_text("VideoId,LabelConfidencePairs\n" + line + "\n")
    code, out = report(tmp_path, str(sub), lab)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(out)


def test_bad_labels_and_options(tmp_path, capsys):
    sub, lab, _, _ = write_files(str(tmp_path), n=5)
    bad = tmp_path / "bad_labels.csv"
    bad.write_text("VideoId,Labels\nv0,1 2\nv0,3\n")
    assert report(tmp_path, sub, str(bad))[0] == 2
    assert "bad_labels.csv:3: video 'v0' is listed again (first on line 2)" in capsys.readouterr().err
    bad.write_text("Id,Labels\nv0,1\n")
    assert report(tmp_path, sub, str(bad))[0] == 2
    assert "bad_labels.csv:1: the header must be VideoId,Labels" in capsys.readouterr().err
    assert main(["report", sub, "--format", "youtube8m", "--out", str(tmp_path / "o")]) == 2
    assert "--format youtube8m needs --labels" in capsys.readouterr().err
    assert report(tmp_path, sub, lab, "--top-k", "1", "5")[0] == 2
    assert "does not use --top-k with several values" in capsys.readouterr().err


def test_num_classes_and_top_k_options(tmp_path):
    sub, lab, probs, target = write_files(str(tmp_path), n=100, seed=2)
    code, out = report(tmp_path, sub, lab, "--top-k", "5", "--num-classes", "4000")
    assert code == 0
    got = json.load(open(os.path.join(out, "metrics.json")))
    wide = torch.cat([probs, torch.zeros(100, 138, dtype=probs.dtype)], 1)
    wt = torch.cat([target, torch.zeros(100, 138, dtype=target.dtype)], 1)
    want = official(wide.numpy(), wt.numpy(), top_k=5)
    for k in ("gap", "hit_at_1", "map"):
        assert got["scalars"][k] == pytest.approx(float(want[k]), abs=1e-12), k
    assert len(got["per_class"]["ap"]) == 4000 and got["info"]["top_k"] == 5
