"""Start-up cost of the package and its command line, side by side with torch's own, in one run.

Each command is a fresh interpreter, timed 5 times (wall clock); min and median are reported.
Goals: ``video-metrics --help`` and a one-line error (a missing file) within 1.3x of
``python -c "import torch"``; ``import video_metrics`` within 1.3x of ``import torch`` plus
``import torchmetrics``'s own cost (names are imported on first use, so the package itself costs
next to nothing; ``from video_metrics import VideoClassificationMetrics`` pays for torchmetrics).

    .venv/bin/python benchmarks/startup.py
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import reference_timings  # noqa: E402

PY = sys.executable
CLI = [PY, "-m", "video_metrics.cli"]
ROUNDS = 5

COMMANDS = {
    "python -c 'import torch'": [PY, "-c", "import torch"],
    "python -c 'import torch, torchmetrics'": [PY, "-c", "import torch, torchmetrics"],
    "python -c 'import video_metrics'": [PY, "-c", "import video_metrics"],
    "python -c 'from video_metrics import VideoClassificationMetrics'":
        [PY, "-c", "from video_metrics import VideoClassificationMetrics"],
    "video-metrics --help": CLI + ["--help"],
    "video-metrics report missing.csv (one-line error)": CLI + ["report", "missing.csv", "--out", "unused"],
}


def timed(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main() -> int:
    times = {k: [] for k in COMMANDS}
    for _ in range(ROUNDS):  # interleaved, so a slow phase of the machine hits every command
        for name, cmd in COMMANDS.items():
            times[name].append(timed(cmd))
    print(f"start-up, {ROUNDS} runs each (interleaved), seconds; {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(reference_timings())
    print(f"{'command':<66}{'min':>7}{'median':>8}")
    for name, ts in times.items():
        print(f"{name:<66}{min(ts):7.2f}{statistics.median(ts):8.2f}")
    torch_s = min(times["python -c 'import torch'"])
    tm_s = min(times["python -c 'import torch, torchmetrics'"])
    help_r = min(times["video-metrics --help"]) / torch_s
    err_r = min(times["video-metrics report missing.csv (one-line error)"]) / torch_s
    pkg_r = min(times["python -c 'import video_metrics'"]) / tm_s
    print(f"\n--help / import torch: {help_r:.2f}x; one-line error / import torch: {err_r:.2f}x (goal <= 1.3x)")
    print(f"import video_metrics / (import torch + torchmetrics): {pkg_r:.2f}x (goal <= 1.3x)")
    return 0 if max(help_r, err_r, pkg_r) <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
