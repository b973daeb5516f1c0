"""benchmarks/gpu_check.py runs end to end on CPU (--cpu-smoke), so the GPU script cannot rot
between the rare runs on a real GPU."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_smoke(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-smoke", "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["all_updates_sync_free"] is True
    assert len(res["ours_update_sync_check"]) == 22
    assert res["ours_update_sync_check"]["YouTube8MMetrics(top_k=20)"] == "ok: no host sync"
    assert {"suite_exact_update_ms", "suite_bins1000_eager_update_ms", "torchmetrics_collection_update_ms"} <= set(
        res["suite_update_256x400"])
    ours, theirs = res["exact_compute"]["map_20kx157_values"]
    assert abs(ours - theirs) < 1e-6
    scale = res["scale_4kx40"]
    assert scale["clips"] == 4000 and scale["state_mb"] > 0.6 and 0 < scale["video_top1"] <= 1
