"""The edges a user hits: report folders keep the user's files, an --out that is a file is one
line, conflicting duplicate rows are an error (not padding), on one process and on several."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

import _dist
import video_metrics as vm
from video_metrics.cli import main


def _csv(path, rows=40, clips=4, classes=5, clip_ids=None, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "target"] + [f"score_{k}" for k in range(classes)])
        for i in range(rows):
            v = i // clips
            w.writerow([f"vid_{v:03d}", i % clips if clip_ids is None else clip_ids, v % classes]
                       + [f"{x:.5f}" for x in rng.normal(size=classes)])
    return str(path)


# ------------------------------------------------------------------ report folders
def test_report_and_compare_keep_every_file_they_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = {"mine.png": b"\x89PNG my figure", "notes.html": b"<p>my notes</p>", "data.json": b"{\"mine\": 1}"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    a, b = _csv(tmp_path / "a.csv"), _csv(tmp_path / "b.csv", seed=1)
    assert main(["report", a, "--out", str(out), "--no-progress", "--fit-temperature"]) == 0
    first = set(os.listdir(out))
    assert "temperature.png" in first and "report.html" in first
    assert main(["report", a, "--out", str(out), "--no-progress"]) == 0  # no temperature figure this time
    second = set(os.listdir(out))
    assert "temperature.png" not in second  # the previous report's own file, not written again: removed
    assert main(["compare", a, b, "--out", str(out), "--no-progress", "--bootstrap", "20"]) == 0
    third = set(os.listdir(out))
    assert {"compare.html", "compare.json", "report.html", "metrics.json"} <= third
    for name, data in mine.items():  # the user's files, whatever their extension, untouched
        assert (out / name).read_bytes() == data
    written = json.loads((out / ".video-metrics-report.json").read_text())
    assert "report.html" in written and "mine.png" not in written
    capsys.readouterr()


def test_out_naming_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    a, b = _csv(tmp_path / "a.csv"), _csv(tmp_path / "b.csv", seed=1)
    f = tmp_path / "taken.txt"
    f.write_text("mine")
    for argv in (["report", a, "--out", str(f)], ["compare", a, b, "--out", str(f)]):
        assert main(argv + ["--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is a file, not a folder" in err[0] and "Traceback" not in err[0]
    assert f.read_text() == "mine"


# ------------------------------------------------------------------ conflicting duplicates
def test_rows_under_one_id_pair_with_different_scores_are_an_error_not_padding():
    torch.manual_seed(0)
    x, y = torch.randn(12, 5), torch.arange(4).repeat_interleave(3)
    vid = torch.arange(4).repeat_interleave(3)
    m = vm.VideoClassificationMetrics(5, video_reduction="mean_logits")
    m.update(x, y, vid, clip_ids=torch.zeros(12, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^8 row\(s\) repeat the \(video_id, clip_id\).*first: video 0, clip 0"):
        m.compute()
    # a different target under the same pair, same scores: an error too
    m = vm.VideoClassificationMetrics(5, video_reduction="mean_logits")
    m.update(torch.cat([x[:3], x[:1]]), torch.tensor([0, 0, 0, 1]), torch.zeros(4, dtype=torch.long),
             torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"^1 row\(s\).*video 0, clip 0"):
        m.compute()
    # identical repeats (a padding sampler) stay dropped
    m = vm.VideoClassificationMetrics(5, video_reduction="mean_logits")
    m.update(torch.cat([x, x[:2]]), torch.cat([y, y[:2]]), torch.cat([vid, vid[:2]]),
             torch.cat([torch.arange(12), torch.arange(2)]))
    out = m.compute()
    assert int(out["video/num_clips"]) == 12
    # names from the registry
    reg = vm.IdRegistry()
    m = vm.VideoClassificationMetrics(5, video_reduction="mean_logits", id_registry=reg)
    m.update(x[:2], y[:2], reg.ids(["kitchen_07", "kitchen_07"]), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="video 'kitchen_07', clip 0"):
        m.compute()


def test_a_csv_whose_clip_ids_repeat_is_one_line(tmp_path, capsys):
    path = _csv(tmp_path / "p.csv", rows=400, clip_ids=0)
    assert main(["report", path, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "300 row(s) repeat the (video_id, clip_id)" in err[0] and "'vid_000', clip 0" in err[0]
    assert not (tmp_path / "r").exists()


def test_action_metrics_refuse_conflicting_repeats():
    m = vm.ActionMetrics(4, 5, top_k=(1, 2))
    vs, ns = torch.randn(3, 4), torch.randn(3, 5)
    m.update(vs, ns, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), video_ids=torch.tensor([0, 0, 1]),
             clip_ids=torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match="1 row"):
        m.compute()


def test_duplicate_pairs_fingerprints_and_rows_at_by_hand():
    from video_metrics.functional.aggregation import duplicate_pairs, row_fingerprints, rows_at

    vid = torch.tensor([3, 1, 3, 1, 3, 2])
    cid = torch.tensor([0, 0, 0, 0, 1, 0])
    first, dup, of = duplicate_pairs(vid, cid)
    assert first.tolist() == [1, 5, 0, 4] and dup.tolist() == [3, 2] and of.tolist() == [1, 0]
    chunks = [torch.arange(6.0).reshape(3, 2), torch.zeros(0, 2), torch.arange(6.0, 10.0).reshape(2, 2)]
    assert rows_at(chunks, torch.tensor([4, 0, 3])).tolist() == [[8, 9], [0, 1], [6, 7]]
    x = torch.randn(50, 7)
    t = torch.randint(0, 7, (50,))
    fp = row_fingerprints(x, t)
    assert fp.unique().numel() == 50 and bool((fp >= 0).all())
    assert torch.equal(row_fingerprints(x[10:20], t[10:20]), fp[10:20])  # independent of the batch
    y = x.clone()
    y[3, 2] = torch.nextafter(y[3, 2], torch.tensor(10.0))  # one ulp
    assert row_fingerprints(y, t)[3] != fp[3] and torch.equal(row_fingerprints(y, t)[4:], fp[4:])
    assert row_fingerprints(x.half(), t).shape == (50,) and row_fingerprints(x.double(), t.bool()).shape == (50,)


def _conflict_worker(rank, world, shard):
    torch.manual_seed(0)
    x, y = torch.randn(9, 5), torch.arange(3).repeat_interleave(3) % 5
    vid, cid = torch.arange(3).repeat_interleave(3), torch.arange(9) % 3
    rows = {0: [0, 1, 2, 3], 1: [4, 5, 6, 7, 8]}[rank] if world == 2 else None
    xs = x[rows].clone()
    cs = cid[rows].clone()
    if rank == 1:
        xs[-1] += 1.0  # row 8 (video 2, clip 2) ...
        cs[-1] = 0  # ... relabelled as clip 0 of video 2, whose clip 0 (row 6) has other scores
    m = vm.VideoClassificationMetrics(5, video_reduction="mean_probs", shard_classes=shard)
    m.update(xs, y[rows], vid[rows], cs)
    try:
        m.compute()
        return "no error"
    except ValueError as e:
        return str(e)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("shard", [False, True])
def test_conflicting_repeats_raise_on_every_rank(shard):
    out = _dist.run(_conflict_worker, 2, shard)
    assert all(o.startswith("1 row(s) repeat") and "video 2, clip 0" in o for o in out), out


# ------------------------------------------------------------------ say what the numbers are
def _framework_dumps(tmp_path, n=40, c=5, seed=0):
    import pickle

    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g)
    logits[torch.arange(n), t] += 1.0
    p = torch.softmax(logits, 1)
    mm = [{"pred_score": p[i].clone(), "gt_label": t[i:i + 1].clone()} for i in range(n)]
    paths = {}
    for name, obj in (("a.pkl", mm), ("sf.pkl", [p.numpy(), t.numpy()])):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f)
        paths[name] = str(tmp_path / name)
    p2 = torch.softmax(logits + 0.5 * torch.randn(n, c, generator=g), 1)
    with open(tmp_path / "b.pkl", "wb") as f:
        pickle.dump([{"pred_score": p2[i].clone(), "gt_label": t[i:i + 1].clone()} for i in range(n)], f)
    t3 = t.clone()
    t3[7] = (t3[7] + 1) % c
    with open(tmp_path / "other_list.pkl", "wb") as f:
        pickle.dump([{"pred_score": p2[i].clone(), "gt_label": t3[i:i + 1].clone()} for i in range(n)], f)
    return p, t, paths


def test_framework_results_are_reported_as_the_video_level_with_probabilities_by_default(tmp_path, capsys):
    p, t, paths = _framework_dumps(tmp_path)
    for name, framework in (("a.pkl", "mmaction2"), ("sf.pkl", "PySlowFast")):
        out = tmp_path / f"rep_{name}"
        assert main(["report", paths[name], "--out", str(out), "--no-progress"]) == 0  # no --input: probs
        printed = capsys.readouterr().out
        assert "clip" not in printed.splitlines()[0] and "video" in printed.splitlines()[0]
        m = json.loads((out / "metrics.json").read_text())
        assert m["clip"] is None and m["rows"] == f"videos as aggregated by {framework}"
        assert all(k.startswith("video/") for k in m["scalars"]) and m["scalars"]["video/num_videos"] == 40
        su = vm.VideoClassificationMetrics(5, input="probs")
        su.update(p, t)
        assert m["scalars"]["video/top1"] == pytest.approx(float(su.compute()["clip/top1"]), abs=1e-12)
        page = (out / "report.html").read_text()
        assert f"Rows are videos as aggregated by {framework}" in page and "No video ids" not in page
    from video_metrics.cli import build_parser

    help_text = build_parser().parse_args(["report", "x", "--out", "y"]) and None
    sub = build_parser()._subparsers._group_actions[0].choices["report"].format_help()
    assert "probs for mmaction2 / PySlowFast" in " ".join(sub.split())


def test_compare_pairs_two_dumps_of_one_test_list_row_by_row(tmp_path, capsys):
    _, _, paths = _framework_dumps(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", paths["a.pkl"], str(tmp_path / "b.pkl"), "--out", str(out), "--no-progress",
                 "--bootstrap", "50", "--format", "mmaction2"]) == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["num_videos"] == 40 and set(res["mcnemar"]) == {"video"}
    assert res["deltas"] and all(k.startswith("video/") for k in res["deltas"])
    capsys.readouterr()
    assert main(["compare", paths["a.pkl"], str(tmp_path / "other_list.pkl"), "--out", str(out), "--no-progress",
                 "--bootstrap", "20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagree on the target of 1 video(s) (first: video 7)" in err[0]


def test_compare_slices_give_paired_per_slice_deltas(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for seed, name in ((0, "a.csv"), (1, "b.csv")):
        r = np.random.default_rng(seed)
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "clip_id", "target", "site"] + [f"score_{k}" for k in range(4)])
            for v in range(60):
                for c in range(2):
                    y = v % 4
                    s = r.normal(size=4)
                    s[y] += 1.0 if name == "a.csv" else 2.0
                    w.writerow([f"v{v}", c, y, ["north", "south", "west"][v % 3]] + [f"{x:.4f}" for x in s])
        paths.append(str(tmp_path / name))
    del rng
    out = tmp_path / "cmp"
    assert main(["compare", *paths, "--out", str(out), "--no-progress", "--bootstrap", "100", "--slices-from", "site",
                 "--min-slice-size", "25"]) == 0
    res = json.loads((out / "compare.json").read_text())
    sl = {x["value"]: x for x in res["slices"]}
    assert set(sl) == {"north", "south", "west"} and all(x["num_videos"] == 20 and x["too_small"] for x in sl.values())
    d = sl["north"]["deltas"]["video/top1"]
    assert d["low"] <= d["delta"] <= d["high"] and d["delta"] > 0 and 0 <= d["p_value"] <= 1
    page = (out / "compare.html").read_text()
    assert "Slices: paired deltas" in page and "site=north" in page
    capsys.readouterr()


def test_cli_warnings_and_errors_speak_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=40)
    with open(tmp_path / "p.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "target"] + [f"score_{k}" for k in range(4)])
        for i in range(40):
            w.writerow([i // 2, i % 2, (i // 2) % 4] + [f"{x:.6f}" for x in probs[i]])
    assert main(["report", str(tmp_path / "p.csv"), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("video-metrics report: warning:") and "pass --input probs" in err[0]
    assert "input=" not in err[0] and "warnings.warn" not in "".join(err)
    logits = _csv(tmp_path / "l.csv")
    assert main(["report", logits, "--out", str(tmp_path / "r2"), "--no-progress", "--input", "probs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 2 has scores outside [0, 1]: these look like logits" in err[0]
    assert "drop --input probs" in err[0]


def test_a_class_slice_without_videos_is_nan_without_an_interval():
    torch.manual_seed(0)
    x, y = torch.randn(30, 5), torch.randint(0, 4, (30,))  # class 4 never a target
    m = vm.VideoClassificationMetrics(5, class_slices={"empty": [4], "some": [0, 1]}, bootstrap=20)
    m.update(x, y, torch.arange(30))
    rep = m.report()
    empty = next(s for s in rep.slices if s.value == "empty")
    assert empty.num_videos == 0 and empty.intervals == {} and empty.too_small
    assert empty.scalars and all(v != v for v in empty.scalars.values())  # every key NaN (f1_micro was 0.0)
    some = next(s for s in rep.slices if s.value == "some")
    assert some.intervals and not any(v != v for v in some.scalars.values())


def test_csv_targets_by_class_name(tmp_path, capsys):
    names = ["brush teeth", "open door", "pour water"]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    rows = [(i // 2, i % 2, (i // 2) % 3) for i in range(30)]
    scores = rng.normal(size=(30, 3))
    by_index, by_name, multi = tmp_path / "i.csv", tmp_path / "n.csv", tmp_path / "m.csv"
    for path, cell in ((by_index, lambda t: str(t)), (by_name, lambda t: names[t]),
                       (multi, lambda t: names[t] + ("|" + names[(t + 1) % 3] if t == 0 else ""))):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "clip_id", "target"] + [f"score_{k}" for k in range(3)])
            for (v, c, t), s in zip(rows, scores):
                w.writerow([v, c, cell(t)] + [f"{x:.5f}" for x in s])
    outs = {}
    for path in (by_index, by_name, multi):
        out = tmp_path / ("r_" + path.stem)
        assert main(["report", str(path), "--out", str(out), "--no-progress", "--class-names",
                     str(tmp_path / "classes.txt")]) == 0
        outs[path.stem] = json.loads((out / "metrics.json").read_text())
    assert outs["i"]["scalars"] == outs["n"]["scalars"]  # names and indices give the same targets
    assert outs["m"]["task"] == "multilabel" and outs["m"]["video"]["support"] == [5, 10, 5]
    with open(by_name, "a") as f:
        f.write("99,0,wash hands,0.1,0.2,0.3\n")
    assert main(["report", str(by_name), "--out", str(tmp_path / "bad"), "--no-progress", "--class-names",
                 str(tmp_path / "classes.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "row 32, column target: 'wash hands' is not a class name (from --class-names) nor a label index" in err[-1]


# ------------------------------------------------------------------ reports a person reads
def test_the_demo_sentence_follows_its_numbers():
    from video_metrics.demo import summary_sentence

    ev = {"clips_missing": 0.5, "videos_without_evidence": 0.05}
    same = summary_sentence({"video/top1": 0.125, "clip/top1": 0.125}, {"video/top1": (0.0, 0.3)}, ev)
    assert "no difference shown" in same and "rarely" not in same and "5% of the videos miss it in every clip" in same
    better = summary_sentence({"video/top1": 0.83, "clip/top1": 0.70}, {"video/top1": (0.75, 0.91)}, ev)
    assert "beats the clip level beyond its interval" in better
    worse = summary_sentence({"video/top1": 0.5, "clip/top1": 0.7}, {"video/top1": (0.4, 0.6)}, ev)
    assert "below the clip level" in worse


def test_report_prints_as_a_short_table_and_writes_the_cli_folder_from_python(tmp_path):
    torch.manual_seed(0)
    m = vm.VideoClassificationMetrics(400, video_reduction="mean_logits", bootstrap=20)
    m.update(torch.randn(60, 400), torch.arange(20).repeat_interleave(3), torch.arange(20).repeat_interleave(3),
             torch.arange(3).repeat(20))
    rep = m.report()
    text = repr(rep)
    assert text == str(rep) and len(text) < 3000 and text.startswith("SuiteReport(multiclass, 400 classes")
    assert "top1" in text and "[" in text  # values with their intervals
    paths = vm.write_report(m, str(tmp_path / "r"))  # a suite or its report
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["scalars"] == json.loads(
        json.dumps(rep.to_dict()["scalars"]))
    assert os.path.isfile(paths["report.html"])


def _report_60_classes(tmp_path):
    rng = np.random.default_rng(0)
    c = 60
    names = [f"class_{k:02d}_a_longer_name" for k in range(c)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    with open(tmp_path / "p.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "target", "site"] + [f"score_{k}" for k in range(c)])
        for v in range(240):
            for clip in range(4):
                s = rng.normal(size=c) * 2
                s[v % c] += 3 * rng.random()
                w.writerow([f"vid_{v:03d}", clip, v % c, ["north", "south", "far east region", "west"][v % 4]]
                           + [f"{x:.3f}" for x in s])
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "p.csv"), "--out", str(out), "--no-progress", "--fit-temperature",
                 "--bootstrap", "30", "--slices-from", "site", "--class-names", str(tmp_path / "names.txt")]) == 0
    return out


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_figures_read_back_bars_legends_titles_and_ticks(tmp_path):
    from matplotlib.patches import Rectangle

    from video_metrics.plots import plot_per_class, plot_reliability, plot_temperature, plot_views

    rep_dir = _report_60_classes(tmp_path)
    torch.manual_seed(0)
    x = torch.randn(400, 10) * 3
    y = torch.randint(0, 10, (100,)).repeat_interleave(4)
    m = vm.VideoClassificationMetrics(10, video_reduction="mean_logits")
    m.update(x, y, torch.arange(400) // 4, torch.arange(400) % 4)
    rep = m.report()
    fig = plot_reliability(rep.clip.reliability)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax = fig.axes[1]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0 and p.get_width() > 0]
    acc = [p for p in bars if p.get_label() == "accuracy" or p.get_facecolor()[2] > 0.5]
    gap = [p for p in bars if p not in acc]
    assert acc and gap
    for g in gap:  # the gap bar sits beside the accuracy bar of its bin, never over it
        assert not any(g.get_x() < a.get_x() + a.get_width() - 1e-9 and a.get_x() < g.get_x() + g.get_width() - 1e-9
                       for a in acc)
    legend = ax.get_legend().get_window_extent(r)
    assert not any(_overlap(legend, p.get_window_extent(r)) for p in bars)
    assert fig.axes[0].get_legend() is None  # the histogram's lines are named in its title
    fig = plot_temperature(m.fit_temperature("video"))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    sup = fig._suptitle.get_window_extent(r)
    titles = [a.title.get_window_extent(r) for a in fig.axes if a.get_title()]
    assert len(titles) == 2 and not any(_overlap(sup, t) for t in titles) and not _overlap(*titles)
    fig = plot_views(rep.views)
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2", "3", "4"]
    c = 60
    fig = plot_per_class(np.linspace(0, 1, c), [5] * c, [f"class_{k:02d}_a_longer_name" for k in range(c)], max_bars=60)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    labels = fig.axes[0].get_yticklabels()
    assert len(labels) == 60 and min(t.get_fontsize() for t in labels) >= 8
    boxes = sorted((t.get_window_extent(r) for t in labels), key=lambda b: b.y0)
    assert all(b0.y1 <= b1.y0 + 0.5 for b0, b1 in zip(boxes, boxes[1:]))  # no two labels overlap
    assert (rep_dir / "temperature.png").is_file()


def test_html_slices_fit_the_page_and_compare_prints_p_values_and_names(tmp_path, capsys):
    import re
    import shutil
    import subprocess

    rep_dir = _report_60_classes(tmp_path)
    page = (rep_dir / "report.html").read_text()
    assert '<div class="scroll"><table class="sortable" id="slices">' in page
    # compare: p-values below the bootstrap's resolution, flipped clips by name
    a = _csv(tmp_path / "a.csv", rows=80)
    rng = np.random.default_rng(3)
    with open(a) as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:  # b: the right class pushed far up, so every replicate improves
        row[3 + int(row[2])] = f"{float(row[3 + int(row[2])]) + 20:.5f}"
    with open(tmp_path / "b.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    del rng
    out = tmp_path / "cmp"
    assert main(["compare", a, str(tmp_path / "b.csv"), "--out", str(out), "--no-progress", "--bootstrap", "100"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"video/top1 .* < 0\.01", printed) and " 0\n" not in printed
    html_text = (out / "compare.html").read_text()
    assert "&lt; 0.01" in html_text and "vid_000 clip" in html_text and "(&#x27;" not in html_text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    probe = rep_dir / "probe.html"
    probe.write_text(page.replace("</body>", """<script>
var box = document.getElementById('slices').parentElement;
var spans = Array.prototype.slice.call(document.querySelectorAll('#slices td .note'));
var r = {page: document.documentElement.scrollWidth <= window.innerWidth + 1,
         box: box.getBoundingClientRect().right <= window.innerWidth + 1,
         oneLine: spans.length > 0 && spans.every(function(s){ return s.getClientRects().length === 1; }),
         spans: spans.length};
document.body.setAttribute('data-probe', JSON.stringify(r));
</script></body>"""))
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1400",
                          "--disable-background-networking", "--no-first-run", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]+)"', res.stdout)
    assert found, res.stderr[-500:]
    probe_result = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe_result == {"page": True, "box": True, "oneLine": True, "spans": probe_result["spans"]}
    assert probe_result["spans"] >= 8


# ------------------------------------------------------------------ start fast, install what is needed
def test_the_package_and_the_cli_import_nothing_heavy_up_front():
    import subprocess
    import sys

    heavy = ["torchmetrics", "pytorch_lightning", "lightning", "captum", "matplotlib", "scipy", "transformers"]
    code = ("import sys, video_metrics; import video_metrics.cli as c; c.build_parser().format_help(); "
            f"print([m for m in {heavy!r} + ['torch'] if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "video_metrics.cli", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "report" in r.stdout
    # a one-line error needs torch (the file readers), nothing heavier
    code = ("import sys; from video_metrics.cli import main; main(['report', 'missing.csv', '--out', 'x']); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "[]" and "no such file" in r.stderr
    # names still resolve, and `compare` is the function
    import video_metrics

    assert callable(video_metrics.compare) and video_metrics.VideoClassificationMetrics.__name__ == "VideoClassificationMetrics"
    import video_metrics.compare as module  # noqa: F401  (the submodule, imported by name)

    assert callable(video_metrics.compare) and "compare" in dir(video_metrics)


def test_make_demo_installs_only_the_demo_extra():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    make = (root / "Makefile").read_text()

    def recipe(target):
        return re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", make, re.M).group(1)

    assert re.search(r"^demo: \$\(DEMO\)$", make, re.M) and re.search(r"^test: \$\(TEST\)$", make, re.M)
    assert '".[demo]"' in recipe("$(DEMO)") and "test" not in recipe("$(DEMO)")
    assert '".[test,demo]"' in recipe("$(TEST)")
    toml = (root / "pyproject.toml").read_text()
    demo_extra = re.search(r"^demo = \[(.*?)\]", toml, re.M | re.S).group(1)
    assert "wandb" not in demo_extra and "mlflow" not in demo_extra and "transformers" not in demo_extra
    readme = (root / "README.md").read_text()
    assert "CUDA build" in readme and "CUDA build" in make  # both say which torch build pip gets
