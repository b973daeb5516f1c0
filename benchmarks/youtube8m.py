"""YouTube-8M at full size: YouTube8MMetrics over a million videos x 3,862 classes on one process,
and the same metric on 50,000 videos beside the official NumPy functions and torchmetrics.

    python benchmarks/youtube8m.py                      # both parts (a few minutes on 2 cores)
    python benchmarks/youtube8m.py --videos 1000000     # the full-size part only
    python benchmarks/youtube8m.py --reference 50000    # the reference part only

Data (generated in batches, never held whole): each video has 1 + Poisson(2) labels (at most 23)
drawn from a heavy-tailed class frequency (weight ~ 1 / (rank + 20)), and calibrated-looking
sigmoid scores: logit ~ N(-5, 1) for a negative, that plus N(4.5, 1.5) for a positive (GAP about
0.8, as good YouTube-8M models). fp32 scores, as a model's.

Full size (its own subprocess, so that the peak is this run's): the state's bytes, the peak RSS
above the RSS before the first update (sampled every 5 ms; the batch being generated included),
update throughput (videos/s, generation excluded) and ``compute()`` time; GAP is recomputed with
NumPy from the metric's kept top-20 entries (an independent ranking of the pooled list) as an
exactness check at full size.

Reference (50,000 videos, dense scores held): the official functions (a NumPy transcription of
google/youtube-8m's code, ``youtube8m_official.py``, with its loops) and YouTube8MMetrics, time
and every value side by side; torchmetrics' ``MultilabelAveragePrecision`` (exact, macro) on the
same rows for time and state size (a different quantity: AP over every score, not the top 20).
Each timing: min and median of ``--repeats`` (default 3).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from machine import reference_timings  # noqa: E402
from scale import PeakRSS, _rss  # noqa: E402

C = 3862


def class_cdf(c: int = C) -> torch.Tensor:
    w = 1.0 / (torch.arange(c, dtype=torch.float64) + 20.0)
    return torch.cumsum(w / w.sum(), 0)


def batch(n: int, g: torch.Generator, cdf: torch.Tensor, c: int = C):
    """``(scores fp32 (n, c), target bool (n, c))`` as the module doc says."""
    k = (1 + torch.poisson(torch.full((n,), 2.0), generator=g)).clamp(max=23).long()
    draws = torch.searchsorted(cdf, torch.rand(n, 23, generator=g, dtype=torch.float64)).clamp(max=c - 1)
    use = torch.arange(23)[None, :] < k[:, None]
    target = torch.zeros(n, c, dtype=torch.bool)
    target.scatter_(1, torch.where(use, draws, draws[:, :1]), True)
    logits = torch.randn(n, c, generator=g)
    logits.sub_(5.0)
    pos = torch.randn(n, c, generator=g).mul_(1.5).add_(4.5)
    logits.add_(torch.where(target, pos, 0.0))
    return torch.sigmoid_(logits), target


def state_bytes(m) -> int:
    total = 0
    for name in m._defaults:
        v = getattr(m, name)
        for x in (v if isinstance(v, list) else [v]):
            total += x.numel() * x.element_size()
    return total


def pooled_gap_numpy(m) -> float:
    """GAP from the metric's stored top-k with NumPy: the pooled entries ranked by score, equal
    scores one threshold, over every positive label (the labels table)."""
    s = torch.cat(m.top_scores).numpy().ravel().astype(np.float64)
    h = torch.cat(m.top_hits).numpy().ravel()
    total = int((torch.cat(m.labels) >= 0).sum())
    order = np.argsort(-s, kind="stable")
    s, h = s[order], h[order]
    cum = np.cumsum(h)
    last = np.searchsorted(-s, -s, side="right") - 1  # the end of each entry's tie group
    return float(np.sum(np.where(h, cum[last] / (last + 1), 0.0)) / total)


def full_size(videos: int, batch_size: int, seed: int) -> dict:
    import video_metrics as vm

    g = torch.Generator().manual_seed(seed)
    cdf = class_cdf()
    m = vm.YouTube8MMetrics(C)
    t_update, done = 0.0, 0
    with PeakRSS() as peak:
        base = _rss()
        while done < videos:
            n = min(batch_size, videos - done)
            s, t = batch(n, g, cdf)
            t0 = time.perf_counter()
            m.update(s, t)
            t_update += time.perf_counter() - t0
            done += n
            del s, t
        before_compute = _rss()
        t0 = time.perf_counter()
        out = m.compute()
        t_compute = time.perf_counter() - t0
    check = pooled_gap_numpy(m)
    return {"videos": videos, "state_bytes": state_bytes(m), "peak_extra_bytes": peak.peak - base,
            "rss_before_compute_extra": before_compute - base, "update_s": t_update, "videos_per_s": videos / t_update,
            "compute_s": t_compute, "values": {k: float(v) for k, v in out.items()}, "gap_numpy_check": check}


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), statistics.median(times)


def reference(videos: int, repeats: int, seed: int) -> None:
    import torchmetrics

    import video_metrics as vm
    from youtube8m_official import official

    g = torch.Generator().manual_seed(seed)
    cdf = class_cdf()
    parts = [batch(min(5000, videos - i), g, cdf) for i in range(0, videos, 5000)]
    scores = torch.cat([p[0] for p in parts])
    target = torch.cat([p[1] for p in parts])
    del parts
    pred, act = scores.numpy(), target.numpy().astype(np.int64)

    def ours():
        m = vm.YouTube8MMetrics(C)
        for i in range(0, videos, 5000):
            m.update(scores[i:i + 5000], target[i:i + 5000])
        return {k: float(v) for k, v in m.compute().items()}

    want, o_min, o_med = timed(lambda: official(pred, act, distinct=False), repeats)
    got, v_min, v_med = timed(ours, repeats)
    pooled = torch.topk(scores, 20, 1).values.numpy().ravel()
    ties = pooled.size - np.unique(pooled).size
    print(f"\n## {videos} videos x {C} classes, fp32 scores (dense scores held: {scores.numel() * 4 / 2**30:.2f} GiB)")
    print(f"{'':<36}{'min s':>9}{'median s':>10}   gap        hit_at_1   perr       map")
    print(f"{'official functions (NumPy, loops)':<36}{o_min:>9.2f}{o_med:>10.2f}   "
          + "  ".join(f"{float(want[k]):.8f}" for k in ("gap", "hit_at_1", "perr", "map")))
    print(f"{'YouTube8MMetrics (update + compute)':<36}{v_min:>9.2f}{v_med:>10.2f}   "
          + "  ".join(f"{got[k]:.8f}" for k in ("gap", "hit_at_1", "perr", "map")))
    diff = max(abs(got[k] - float(want[k])) for k in ("gap", "hit_at_1", "perr", "map"))
    print(f"largest difference {diff:.2e} ({ties} of the {pooled.size} pooled top-20 fp32 scores repeat another: "
          "the official value of a tie depends on its seeded shuffle, ours groups it); speed-up "
          f"{o_min / v_min:.1f}x (min)")

    def tm():
        metric = torchmetrics.classification.MultilabelAveragePrecision(num_labels=C, average="macro", thresholds=None)
        for i in range(0, videos, 5000):
            metric.update(scores[i:i + 5000], target[i:i + 5000].long())
        return metric, float(metric.compute())

    (metric, tm_ap), t_min, t_med = timed(tm, repeats)
    tm_state = sum(x.numel() * x.element_size() for v in (metric.preds, metric.target) for x in v)
    ours_m = vm.YouTube8MMetrics(C)
    ours_m.update(scores, target)
    print(f"{'torchmetrics MultilabelAveragePrecision':<36}{t_min:>9.2f}{t_med:>10.2f}   macro AP over every score "
          f"{tm_ap:.6f} (another quantity)")
    print(f"state: torchmetrics {tm_state / 2**20:,.0f} MiB, YouTube8MMetrics {state_bytes(ours_m) / 2**20:,.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=None, help="full-size part: number of videos (default 1,000,000)")
    ap.add_argument("--reference", type=int, default=None, help="reference part: number of videos (default 50,000)")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(full_size(args.videos, args.batch, args.seed)))
        return
    both = args.videos is None and args.reference is None
    print(reference_timings())
    if args.videos or both:
        n = args.videos or 1_000_000
        cmd = [sys.executable, __file__, "--child", "--videos", str(n), "--batch", str(args.batch), "--seed", str(args.seed)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"\n## {n:,} videos x {C} classes through update() in batches of {args.batch}, one process")
        print(f"state {r['state_bytes'] / 2**20:,.1f} MiB ({r['state_bytes'] / n:.0f} bytes a video; their fp32 scores: "
              f"{n * C * 4 / 2**30:.1f} GiB); peak RSS above the start {r['peak_extra_bytes'] / 2**20:,.0f} MiB "
              f"(before compute {r['rss_before_compute_extra'] / 2**20:,.0f} MiB)")
        print(f"update {r['videos_per_s']:,.0f} videos/s ({r['update_s']:.1f} s, generation excluded); "
              f"compute {r['compute_s']:.2f} s")
        print("values " + ", ".join(f"{k} {v:.6f}" for k, v in r["values"].items()))
        print(f"GAP from the kept top-20 with NumPy {r['gap_numpy_check']:.12f} "
              f"(difference {abs(r['gap_numpy_check'] - r['values']['gap']):.1e})")
    if args.reference or both:
        reference(args.reference or 50_000, args.repeats, args.seed)


if __name__ == "__main__":
    main()
