"""``video-metrics report`` and ``video-metrics demo`` end to end."""
from __future__ import annotations

import csv
import glob
import json
import re
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from video_metrics import VideoClassificationMetrics, stable_id
from video_metrics.cli import main
from video_metrics.data.predictions import synthetic_predictions


def _data(task="multiclass", c=7, videos=30, clips=3, seed=0):
    return synthetic_predictions(num_videos=videos, clips_per_video=clips, num_classes=c, task=task, seed=seed)


def _direct(d, task="multiclass", video_ids=None, reduction="mean_logits", **kw):
    s = VideoClassificationMetrics(d.scores.shape[1], task=task, video_reduction=reduction, **kw)
    s.update(d.scores, d.target, d.video_ids if video_ids is None else video_ids, d.clip_ids)
    return s.report()


def _write_csv(path, d, video_names=None, multilabel=False):
    c = d.scores.shape[1]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "target"] + [f"score_{k}" for k in range(c)])
        for i in range(len(d.scores)):
            vid = video_names[int(d.video_ids[i])] if video_names else int(d.video_ids[i])
            tgt = " ".join(str(k) for k in torch.nonzero(d.target[i]).flatten().tolist()) if multilabel else int(d.target[i])
            w.writerow([vid, int(d.clip_ids[i]), tgt] + [repr(float(v)) for v in d.scores[i]])


def _json(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def _assert_scalars(got, exp):
    assert set(got) == set(exp)
    for k, v in exp.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def test_report_npz_equals_the_suite(tmp_path, capsys):
    d = _data()
    f = tmp_path / "preds.npz"
    np.savez(f, scores=d.scores.numpy(), target=d.target.numpy(), video_ids=d.video_ids.numpy(),
             clip_ids=d.clip_ids.numpy(), class_names=np.array(d.class_names))
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--no-progress", "--chunk-size", "17"]) == 0
    rep = _direct(d, class_names=d.class_names)
    got = _json(out)
    _assert_scalars(got["scalars"], rep.scalars)
    assert got["class_names"] == d.class_names
    assert got["clip"]["support"] == rep.clip.support
    assert "top1" in capsys.readouterr().out


def test_report_pt_with_probabilities_and_top_k(tmp_path):
    d = _data(seed=1)
    probs = d.scores.softmax(1)
    f = tmp_path / "preds.pt"
    torch.save({"scores": probs, "target": d.target, "video_ids": d.video_ids, "clip_ids": d.clip_ids}, f)
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--input", "probs", "--top-k", "1", "3", "--no-progress"]) == 0
    s = VideoClassificationMetrics(7, top_k=(1, 3), input="probs", video_reduction="mean_probs")
    s.update(probs, d.target, d.video_ids, d.clip_ids)
    _assert_scalars(_json(out)["scalars"], {k: float(v) for k, v in s.compute().items()})


def test_report_csv_with_string_video_ids_and_class_names_file(tmp_path):
    d = _data(seed=2)
    names = [f"youtube_{i:03d}" for i in range(30)]
    f = tmp_path / "preds.csv"
    _write_csv(f, d, names)
    cn = tmp_path / "classes.txt"
    cn.write_text("\n".join(f"action {k}" for k in range(7)) + "\n")
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--class-names", str(cn), "--no-progress", "--chunk-size", "8"]) == 0
    vids = torch.tensor([stable_id(names[int(v)]) for v in d.video_ids])
    rep = _direct(d, video_ids=vids)
    got = _json(out)
    _assert_scalars(got["scalars"], rep.scalars)
    assert got["class_names"][3] == "action 3"


def test_report_csv_multilabel(tmp_path):
    d = _data("multilabel", c=6, seed=3)
    f = tmp_path / "preds.csv"
    _write_csv(f, d, multilabel=True)
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--no-progress"]) == 0
    rep = _direct(d, task="multilabel")
    got = _json(out)
    assert got["task"] == "multilabel"
    _assert_scalars(got["scalars"], rep.scalars)
    assert os.path.isfile(out / "clip_pr_curves.png")


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.ids = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src"))
        if "id" in a:
            self.ids.append(a["id"])


def test_html_report_images_resolve_and_render_in_chromium(tmp_path):
    d = _data(c=60, videos=80, seed=4)  # 60 classes: top-confusions layout
    f = tmp_path / "preds.npz"
    np.savez(f, scores=d.scores.numpy(), target=d.target.numpy(), video_ids=d.video_ids.numpy(), clip_ids=d.clip_ids.numpy())
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--no-progress"]) == 0
    page = (out / "report.html").read_text()
    p = _Imgs()
    p.feed(page)
    # confusion, reliability, per-class F1 of both levels, and the views curve
    assert len(p.srcs) == 7 and "headline" in p.ids and "per-class" in p.ids and "coverage" in p.ids
    assert "by-reduction" in p.ids and "views.png" in p.srcs
    for src in p.srcs:
        assert not src.startswith(("http:", "https:", "/")), src
        img = imread(out / src, format="png")
        assert img.shape[0] > 100 and img[..., :3].std() > 0.01
    assert "<td>top1</td>" in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "shot.png"
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1200,1600", f"--screenshot={shot}", (out / "report.html").as_uri()],
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), r.stderr.decode()[-500:]
    img = imread(shot, format="png")[..., :3]
    assert img.shape[:2] == (1600, 1200)
    assert img.std() > 0.05  # not a blank page
    dark = (img.mean(2) < 0.5).mean()
    assert 0.005 < dark < 0.6  # text and figures on a white page


BAD = [
    ("missing column", "csv", lambda p: p.write_text("video_id,clip_id,score_0,score_1\n0,0,0.1,0.2\n"),
     "missing column 'target'"),
    ("wrong shape", "npz", lambda p: np.savez(p, scores=np.zeros((4, 3), np.float32), target=np.zeros(5, np.int64)),
     "'target' must be (4,) or (4, 3)"),
    ("non-numeric score", "csv", lambda p: p.write_text("video_id,clip_id,target,score_0,score_1\n0,0,1,0.1,0.2\n"
                                                        "0,1,0,abc,0.3\n"), "row 3, column score_0: 'abc' is not a number"),
    ("label outside", "csv", lambda p: p.write_text("video_id,clip_id,target,score_0,score_1\n0,0,1,0.1,0.2\n"
                                                    "1,0,2,0.5,0.3\n"), "row 3, column target: label 2 is outside the 2 classes"),
    ("label outside npz", "npz", lambda p: np.savez(p, scores=np.zeros((4, 3), np.float32), target=np.array([0, 1, 7, 2])),
     "index 2, column target: label 7 is outside the 3 classes"),
    ("nan score", "pt", lambda p: torch.save({"scores": torch.tensor([[0.1, float("nan")]]), "target": torch.tensor([0])}, p),
     "index 0, column score_1: score is nan"),
    ("unreadable", "npz", lambda p: p.write_bytes(b"this is not a zip file"), "not a readable .npz file"),
    ("unreadable pt", "pt", lambda p: p.write_bytes(b"\x00garbage"), "not a readable .pt file"),
    ("no file", "csv", None, "no such file"),
    ("unknown format", "txt", lambda p: p.write_text("x"), "unknown format '.txt'"),
]


@pytest.mark.parametrize("case,ext,make,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exit_code_2_one_line_no_report(tmp_path, capsys, case, ext, make, message):
    f = tmp_path / f"preds.{ext}"
    if make is not None:
        make(f)
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("video-metrics report: error: ") and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (out / "report.html").exists() and not (out / "metrics.json").exists()
    assert not glob.glob(str(tmp_path / ".report-*"))


def test_bad_input_in_a_real_process_leaves_the_previous_report_alone(tmp_path):
    d = _data(seed=5)
    good = tmp_path / "good.pt"
    torch.save({"scores": d.scores, "target": d.target, "video_ids": d.video_ids, "clip_ids": d.clip_ids}, good)
    out = tmp_path / "rep"
    assert main(["report", str(good), "--out", str(out), "--no-progress"]) == 0
    before = (out / "metrics.json").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,clip_id,target,score_0,score_1\n0,0,x,0.5,0.1\n")
    r = subprocess.run([sys.executable, "-m", "video_metrics.cli", "report", str(bad), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == f"video-metrics report: error: {bad}: row 2, column target: 'x' is not a label index"
    assert (out / "metrics.json").read_text() == before


def test_demo_quick_writes_report_and_tensorboard(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "top1" in text and "num_videos" in text and "tensorboard --logdir" in text
    assert re.search(r"Video top-1 \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] against clip top-1", text)
    assert re.search(r"Video top-1 by views used: 1 view \d\.\d{3}, 2 views .*4 views", text)
    assert re.search(r"Temperature scaling \(video level\): T = \d+\.\d\d; ECE \d\.\d{3} -> \d\.\d{3} cross-fitted", text)
    got = _json(out / "report")
    assert got["coverage"]["num_videos"] == 16 and got["coverage"]["num_clips"] == 64
    assert got["temperature"]["level"] == "video" and "video/top1" in got["intervals"] and got["views"]["views"] == [1, 2, 3, 4]
    (ev,) = glob.glob(str(out / "tensorboard" / "**" / "events.out.tfevents.*"), recursive=True)
    acc = EventAccumulator(ev, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    last = acc.Scalars("val/video/top1")
    assert len(last) == 2 and last[-1].value == pytest.approx(got["scalars"]["video/top1"], abs=1e-6)
    for tag in ("val/clip/confusion_matrix", "val/video/reliability", "val/explain/clip_0"):
        assert tag in tags["images"], tag
    assert "val/explain/pointing_game" in tags["scalars"]
    p = _Imgs()
    p.feed((out / "report" / "report.html").read_text())
    assert all((out / "report" / s).is_file() for s in p.srcs) and any("explain" in s for s in p.srcs)
    assert {"views.png", "temperature.png", "intervals.png"} <= set(p.srcs)


def test_report_histogram_bins_is_clip_level_and_matches_the_suite(tmp_path):
    d = _data(seed=6)
    f = tmp_path / "preds.npz"
    np.savez(f, scores=d.scores.numpy(), target=d.target.numpy(), video_ids=d.video_ids.numpy(), clip_ids=d.clip_ids.numpy())
    out = tmp_path / "rep"
    assert main(["report", str(f), "--out", str(out), "--histogram-bins", "500", "--no-progress"]) == 0
    s = VideoClassificationMetrics(7, bins=500)
    s.update(d.scores, d.target)
    got = _json(out)
    assert got["video"] is None and got["coverage"] is None
    _assert_scalars(got["scalars"], {k: float(v) for k, v in s.compute().items()})
    assert main(["report", str(f), "--out", str(tmp_path / "r2"), "--histogram-bins", "500", "--reduction", "max",
                 "--no-progress"]) == 2


# ------------------------------------------------------------------ help, options, edge files
def test_help_has_no_rest_markup_and_every_option_has_help():
    from video_metrics.cli import build_parser

    parser = build_parser()
    texts = [parser.format_help()]
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subs.choices.items():
        texts.append(sub.format_help())
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
    for text in texts:
        assert "``" not in text and ":func:" not in text and ":class:" not in text, text


def test_readme_lists_every_report_option():
    from video_metrics.cli import build_parser

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    subs = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("report", "demo", "compare"):
        for action in subs.choices[name]._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help":
                    assert f"`{opt}" in readme or f" {opt}" in readme, f"README does not mention {name} {opt}"


def test_header_only_csv_is_no_rows(tmp_path, capsys):
    f = tmp_path / "empty.csv"
    f.write_text("video_id,clip_id,target,score_0,score_1\n")
    assert main(["report", str(f), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"video-metrics report: error: {f}: no rows (only the header)"
    assert not (tmp_path / "r").exists()


def test_multilabel_task_accepts_single_index_targets(tmp_path, capsys):
    d = _data()
    f = tmp_path / "p.csv"
    _write_csv(f, d)
    out = tmp_path / "r"
    assert main(["report", str(f), "--out", str(out), "--task", "multilabel", "--no-progress"]) == 0
    hot = torch.nn.functional.one_hot(d.target, d.scores.shape[1])
    s = VideoClassificationMetrics(d.scores.shape[1], task="multilabel", video_reduction="mean_logits")
    s.update(d.scores, hot, d.video_ids, d.clip_ids)
    _assert_scalars(_json(out)["scalars"], {k: float(v) for k, v in s.compute().items()})


def test_top_k_above_classes_and_binary_task(tmp_path, capsys):
    d = _data(c=4)
    f = tmp_path / "p.csv"
    _write_csv(f, d)
    assert main(["report", str(f), "--out", str(tmp_path / "r"), "--top-k", "1", "10", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`top_k`=(1, 10)" in err[0] and "`num_classes`=4" in err[0]
    # a binary file: one score column, 0/1 targets
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (30,), generator=g).repeat_interleave(2)
    x = torch.randn(60, generator=g) + y
    np.savez(tmp_path / "b.npz", scores=x[:, None].numpy(), target=y.numpy(),
             video_ids=(torch.arange(60) // 2).numpy(), clip_ids=(torch.arange(60) % 2).numpy())
    out = tmp_path / "rb"
    assert main(["report", str(tmp_path / "b.npz"), "--out", str(out), "--task", "binary", "--no-progress"]) == 0
    s = VideoClassificationMetrics(task="binary", video_reduction="mean_logits")
    s.update(x, y, torch.arange(60) // 2, torch.arange(60) % 2)
    _assert_scalars(_json(out)["scalars"], {k: float(v) for k, v in s.compute().items()})
    assert (out / "video_confusion_matrix.png").exists() or glob.glob(str(out / "*confusion*"))
