"""forward() at every step (Lightning's ``self.log(metric, on_step=True)``), with rows accumulating.

    python benchmarks/forward_steps.py [--steps 200] [--repeats 3]

Each side feeds the same batches of 256 clips x 400 classes (10 clips a video) through
``forward()``, from an empty state, ``--repeats`` times; printed as ``min (median)`` seconds.

* video_metrics' suite (clip and video level, every key): each step computes the batch only and
  keeps the accumulated rows by reference;
* the same suite with torchmetrics' own state snapshot (``Metric._copy_state_dict``, which clones
  every state: every stored row, at every step) — what the suite did before;
* torchmetrics' ``MulticlassAUROC`` (exact, ``thresholds=None``), whose forward clones its rows at
  every step too.

The cost of the snapshot grows with the rows stored, so the whole loop grows quadratically.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torchmetrics.classification as tmc
from torchmetrics import Metric

import video_metrics as vm
from video_metrics.metrics.base import VideoMetric


def batches(steps: int, c: int = 400, b: int = 256):
    g = torch.Generator().manual_seed(0)
    vt = torch.randint(0, c, (steps * b // 10 + 1,), generator=g)
    out = []
    for i in range(steps):
        rows = torch.arange(i * b, (i + 1) * b)
        out.append((torch.randn(b, c, generator=g), vt[rows // 10], rows // 10, rows % 10))
    return out


def timed(make, data, repeats: int, args):
    times = []
    for _ in range(repeats):
        m = make()
        t0 = time.perf_counter()
        for x in data:
            m(*args(x))
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", message=".*No positive samples")  # torchmetrics, per batch
    data = batches(a.steps)
    print(f"# {a.steps} forward() steps of 256 x 400 ({a.steps * 256} rows at the end); seconds, min (median) of {a.repeats}")

    def suite():
        return vm.VideoClassificationMetrics(400, top_k=(1, 5), video_reduction="mean_logits")

    ours = timed(suite, data, a.repeats, lambda x: x)
    own = VideoMetric.__dict__["_copy_state_dict"]
    VideoMetric._copy_state_dict = Metric._copy_state_dict
    try:
        cloned = timed(suite, data, a.repeats, lambda x: x)
    finally:
        VideoMetric._copy_state_dict = own
    tm = timed(lambda: tmc.MulticlassAUROC(400, thresholds=None), data, a.repeats, lambda x: x[:2])
    print(f"video_metrics suite, rows kept by reference:        {ours[0]:6.2f} ({ours[1]:.2f})")
    print(f"video_metrics suite, torchmetrics' state snapshot:  {cloned[0]:6.2f} ({cloned[1]:.2f})"
          f"   ratio {cloned[0] / ours[0]:.2f}x")
    print(f"torchmetrics MulticlassAUROC (exact):               {tm[0]:6.2f} ({tm[1]:.2f})"
          f"   ratio {tm[0] / ours[0]:.2f}x")


if __name__ == "__main__":
    main()
