"""``video-metrics report --format epic``: EPIC-Kitchens-100 results files in both layouts the
official evaluate.py reads (.pt list of dicts, .pkl dict of arrays), against the official rules;
unsafe and malformed files refused with one line and exit 2."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

from video_metrics.cli import main

from test_actions import _data, official_metrics

NV, NN = 30, 45


def _fixture(tmp_path, n=240, seed=0):
    verb, noun, tv, tn = _data(n, seed, v=NV, nn=NN)
    g = np.random.default_rng(seed + 1)
    participants = np.array([f"P{p:02d}" for p in g.integers(1, 8, n)])
    ids = [f"{p}_{100 + i // 10}_{i}" for i, p in enumerate(participants)]
    with open(tmp_path / "EPIC_100_validation.csv", "w") as f:
        f.write("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,start_frame,"
                "stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n")
        for i, p in enumerate(participants):
            f.write(f"{ids[i]},{p},{ids[i].rsplit('_', 1)[0]},00:00:01.100,00:00:00.54,00:00:02.23,27,111,"
                    f"take knife,take,{tv[i]},knife,{tn[i]},\"['knife']\",\"[{tn[i]}]\"\n")
        f.write(f"P09_900_0,P09,P09_900,00:00:01.100,00:00:00.54,00:00:02.23,27,111,open door,open,1,door,3,"
                "\"['door']\",\"[3]\"\n")  # a labelled segment nobody submitted
    (tmp_path / "EPIC_100_tail_verbs.csv").write_text("verb\n" + "\n".join(str(v) for v in range(12, NV)) + "\n")
    (tmp_path / "EPIC_100_tail_nouns.csv").write_text("noun\n" + "\n".join(str(v) for v in range(20, NN)) + "\n")
    (tmp_path / "EPIC_100_unseen_participant_ids_validation.csv").write_text("participant_id\nP03\nP05\n")
    unseen = np.isin(participants, ["P03", "P05"])
    ref = official_metrics(verb, noun, tv, tn, np.arange(12, NV), np.arange(20, NN), unseen)
    return verb, noun, ids, ref


def _run(tmp_path, results, *extra):
    out = tmp_path / "rep"
    code = main(["report", str(results), "--out", str(out), "--labels", str(tmp_path / "EPIC_100_validation.csv"),
                 "--tail-verbs", str(tmp_path / "EPIC_100_tail_verbs.csv"),
                 "--tail-nouns", str(tmp_path / "EPIC_100_tail_nouns.csv"),
                 "--unseen-participants", str(tmp_path / "EPIC_100_unseen_participant_ids_validation.csv"), *extra])
    return code, out


@pytest.mark.parametrize("layout", ["pt_list", "pkl_dict", "pkl_list", "pt_dict"])
def test_both_layouts_match_the_official_rules(tmp_path, capsys, layout):
    verb, noun, ids, ref = _fixture(tmp_path)
    if layout.endswith("list"):
        obj = [{"verb_output": verb[i], "noun_output": noun[i], "narration_id": ids[i]} for i in range(len(ids))]
    else:
        obj = {"verb_output": verb, "noun_output": noun, "narration_id": np.array(ids)}
    path = tmp_path / ("results.pt" if layout.startswith("pt") else "results.pkl")
    if layout.startswith("pt"):
        torch.save(obj, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    code, out = _run(tmp_path, path)  # --format auto finds the layout
    printed = capsys.readouterr().out
    assert code == 0
    got = json.loads((out / "metrics.json").read_text())
    for k, v in ref.items():
        assert got["scalars"][k] == pytest.approx(v, abs=1e-12), k
    assert got["info"]["num_unsubmitted"] == 1 and got["scalars"]["num_segments"] == len(ids)
    assert "1 labelled segment(s) had no prediction" in printed
    line = next(ln for ln in printed.splitlines() if ln.startswith("all") and "top1" in ln)
    assert [float(x) for x in line.split()[2:]] == pytest.approx(
        [ref["verb/top1"], ref["noun/top1"], ref["action/top1"]], abs=5e-5)
    page = (out / "report.html").read_text()
    assert "<td>unseen</td>" in page and "<td>tail</td>" in page and f"{ref['action/top5']:.4f}" in page


def test_unsafe_and_malformed_files(tmp_path, capsys):
    verb, noun, ids, _ = _fixture(tmp_path, n=20)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name, save in (("evil.pt", torch.save), ("evil.pkl", lambda o, p: pickle.dump(o, open(p, "wb")))):
        save([{"verb_output": Evil(), "noun_output": noun[0], "narration_id": ids[0]}], tmp_path / name)
        code, _ = _run(tmp_path, tmp_path / name, "--format", "epic")
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "system" in err, err
        assert not marker.exists()
    # an id without a label
    torch.save({"verb_output": verb[:3], "noun_output": noun[:3], "narration_id": np.array(["P01_1_x", *ids[1:3]])},
               tmp_path / "unknown.pt")
    code, _ = _run(tmp_path, tmp_path / "unknown.pt")
    assert code == 2 and "1 narration id(s) without a label" in capsys.readouterr().err
    # shapes that disagree
    torch.save({"verb_output": verb[:3], "noun_output": noun[:2], "narration_id": np.array(ids[:3])}, tmp_path / "bad.pt")
    code, _ = _run(tmp_path, tmp_path / "bad.pt")
    assert code == 2 and "one entry per segment" in capsys.readouterr().err
    # labels as a pickled DataFrame: refused, the CSV asked for
    good = tmp_path / "good.pt"
    torch.save({"verb_output": verb[:3], "noun_output": noun[:3], "narration_id": np.array(ids[:3])}, good)
    code = main(["report", str(good), "--out", str(tmp_path / "o"), "--labels", str(tmp_path / "EPIC_100_validation.pkl")])
    assert code == 2 and "annotations CSV" in capsys.readouterr().err
    code = main(["report", str(good), "--out", str(tmp_path / "o")])
    assert code == 2 and "--labels" in capsys.readouterr().err
    # options of the clip/video suite that EPIC scoring would silently ignore
    code, _ = _run(tmp_path, good, "--bootstrap", "100", "--reduction", "max")
    err = capsys.readouterr().err
    assert code == 2 and "--format epic does not use --reduction, --bootstrap" in err
    # a tail list outside the classes
    (tmp_path / "EPIC_100_tail_verbs.csv").write_text("verb\n3\n97\n")
    code, _ = _run(tmp_path, good)
    assert code == 2 and "tail verb(s) [97]" in capsys.readouterr().err
