"""benchmarks/explain_quality.py keeps working (a few training steps; the figures come from a full run)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_explain_quality_smoke(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "explain_quality.py"), "--smoke", "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(out.read_text())
    for arch in ("videomae", "timesformer"):
        rows = {k: v for k, v in res[arch].items() if isinstance(v, dict)}
        assert set(rows) == {"random maps", "rollout (mean heads)", "rollout (max heads, discard 0.9)",
                             "Grad-CAM (token grid)", "Grad-CAM++ (token grid)", "explain() defaults",
                             "explain(method='gradcam')", "untrained: rollout (mean heads)",
                             "untrained: Grad-CAM (token grid)", "untrained: explain() defaults"}
        for v in rows.values():
            assert 0 <= v["pointing_game"] <= 1 and 0 <= v["temporal_share"] <= 1
            assert 0 < v["visible_frames_share"] < 1  # partly visible clips only
            assert 0 <= v["pointing_two_objects"] <= 1 and 0 <= v["pointing_other_object"] <= 1
