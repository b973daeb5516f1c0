"""benchmarks/zoo.py keeps working: the rows that need no torchvision (a user (N, T, C, H, W) CNN and
Hugging Face VideoMAE / TimeSformer / ViViT / X-CLIP), with explain()'s map equal to the script's
hand-written Grad-CAM at the layer expected for each architecture."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_zoo_rows_without_torchvision(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "zoo.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo.py"), "--smoke", "--out", str(out),
                        "--only", "user_ntchw,videomae,timesformer,vivit,xclip"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert {(x["name"], x["method"]) for x in rows} == {
        ("user_ntchw", "gradcam"), ("videomae", "rollout"), ("videomae", "gradcam"), ("timesformer", "rollout"),
        ("timesformer", "gradcam"), ("vivit", "rollout"), ("vivit", "gradcam"), ("xclip", "rollout"),
        ("xclip", "gradcam")}
    for x in rows:
        assert "error" not in x, x
        if x["method"] == "gradcam":
            assert x["layer"] == x["expected"] and x["max_abs_diff"] < 1e-5, x
            assert x["spearman"] is None or x["spearman"] > 0.999, x
    assert next(x for x in rows if x["name"] == "user_ntchw")["layout"] == "NTCHW"
