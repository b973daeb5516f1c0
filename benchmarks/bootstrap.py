"""Bootstrap intervals: video_metrics (every scalar key of both levels, resampling videos) against
torchmetrics' ``BootStrapper`` (resampling clips inside each batch, one metric per wrapper).

    python benchmarks/bootstrap.py [--replicates 1000] [--tm-replicates 1000] [--repeats 3]

Data: 2,000 videos x 10 clips x 400 classes (20,000 clip rows), batches of 256 rows. Each side is
timed ``--repeats`` times (min and median). torchmetrics' AUROC wrapper keeps B copies of every
row (B x 32 MB here), so it is timed at ``--tm-auroc-replicates`` and its cost per replicate is
reported next to ours.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import video_metrics as vm


def data(videos=2000, clips=10, classes=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, classes, (videos,), generator=g)
    s = torch.randn(videos * clips, classes, generator=g) * 2
    tt = t.repeat_interleave(clips)
    difficulty = torch.randn(videos, generator=g).repeat_interleave(clips)
    s[torch.arange(videos * clips), tt] += 2.0 + difficulty
    vid = torch.arange(videos).repeat_interleave(clips)
    cid = torch.arange(clips).repeat(videos)
    return s, tt, vid, cid


def timed(fn, repeats):
    times, out = [], None
    for _ in range(max(3, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times)), out


def ours(s, t, vid, cid, b, bs=256):
    su = vm.VideoClassificationMetrics(s.shape[1], video_reduction="mean_logits", bootstrap=b, seed=0)
    for i in range(0, len(s), bs):
        su.update(s[i:i + bs], t[i:i + bs], vid[i:i + bs], cid[i:i + bs])
    return su.report()


#: the clip-level keys a torchmetrics metric computes, and that metric
def tm_keys(c):
    from torchmetrics.classification import (MulticlassAccuracy, MulticlassCalibrationError, MulticlassF1Score,
                                             MulticlassPrecision, MulticlassRecall)

    return {
        "clip/top1": lambda: MulticlassAccuracy(c, average="micro"),
        "clip/top5": lambda: MulticlassAccuracy(c, top_k=5, average="micro"),
        "clip/f1_macro": lambda: MulticlassF1Score(c, average="macro"),
        "clip/f1_micro": lambda: MulticlassF1Score(c, average="micro"),
        "clip/f1_weighted": lambda: MulticlassF1Score(c, average="weighted"),
        "clip/precision_macro": lambda: MulticlassPrecision(c, average="macro"),
        "clip/recall_macro": lambda: MulticlassRecall(c, average="macro"),
        "clip/ece": lambda: MulticlassCalibrationError(c, n_bins=15),
    }


def ours_keys(s, t, vid, cid, b, keys, bs=256):
    """update() + the replicates of ``keys`` only."""
    su = vm.VideoClassificationMetrics(s.shape[1], video_reduction="mean_logits", seed=0)
    for i in range(0, len(s), bs):
        su.update(s[i:i + bs], t[i:i + bs], vid[i:i + bs], cid[i:i + bs])
    from video_metrics import bootstrap

    return bootstrap.percentile_intervals(bootstrap.replicates(su, b, 0, keys=keys), 0.95)


def tm(metric, s, t, b, bs=256):
    from torchmetrics.wrappers import BootStrapper

    w = BootStrapper(metric, num_bootstraps=b, quantile=torch.tensor([0.025, 0.975]), sampling_strategy="poisson")
    for i in range(0, len(s), bs):
        w.update(s[i:i + bs], t[i:i + bs])
    return w.compute()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--tm-replicates", type=int, default=1000)
    ap.add_argument("--tm-auroc-replicates", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from torchmetrics.classification import MulticlassAUROC

    s, t, vid, cid = data()
    c = s.shape[1]
    print(f"# bootstrap: {s.shape[0]} clips ({vid.max() + 1} videos) x {c} classes, B = {args.replicates}, "
          f"threads {torch.get_num_threads()}; seconds, min (median) of {max(3, args.repeats)}")
    base_min, base_med, _ = timed(lambda: ours(s, t, vid, cid, 0), args.repeats)
    o_min, o_med, rep = timed(lambda: ours(s, t, vid, cid, args.replicates), args.repeats)
    keys = len(rep.intervals)
    print(f"video_metrics report(), no bootstrap:                 {base_min:8.2f} ({base_med:.2f})")
    print(f"video_metrics report(), B={args.replicates}, {keys} keys, 2 levels:   {o_min:8.2f} ({o_med:.2f})"
          f"   bootstrap part {o_min - base_min:.2f} s = {(o_min - base_min) / args.replicates * 1e3:.2f} ms/replicate")
    for k in ("clip/top1", "video/top1", "clip/auroc_macro", "video/auprc_macro"):
        print(f"    {k:<20} {rep.scalars[k]:.4f}  [{rep.intervals[k][0]:.4f}, {rep.intervals[k][1]:.4f}]")
    # the same keys, side by side: torchmetrics wraps one metric per key (softmax probabilities in)
    p = torch.softmax(s, 1)
    same = tm_keys(c)
    k_min, k_med, iv = timed(lambda: ours_keys(s, t, vid, cid, args.tm_replicates, list(same)), args.repeats)
    print(f"video_metrics, B={args.tm_replicates}, the {len(same)} clip keys torchmetrics computes "
          f"(update + replicates): {k_min:8.2f} ({k_med:.2f})")
    total_min = total_med = 0.0
    for key, make in same.items():
        a_min, a_med, out = timed(lambda: tm(make(), p, t, args.tm_replicates), args.repeats)
        total_min += a_min
        total_med += a_med
        q = [round(float(x), 4) for x in out["quantile"]]
        print(f"    torchmetrics BootStrapper({key}), B={args.tm_replicates}: {a_min:8.2f} ({a_med:.2f})   "
              f"interval {q} (clips resampled) vs ours [{iv[key][0]:.4f}, {iv[key][1]:.4f}] (videos resampled)")
    print(f"torchmetrics, the {len(same)} keys: {total_min:8.2f} ({total_med:.2f});  ratio torchmetrics / "
          f"video_metrics on the same keys = {total_min / k_min:.0f}x")
    u_min, u_med, _ = timed(lambda: tm(MulticlassAUROC(c, thresholds=None), s, t, args.tm_auroc_replicates),
                            args.repeats)
    per = u_min / args.tm_auroc_replicates
    print(f"torchmetrics BootStrapper(MulticlassAUROC), B={args.tm_auroc_replicates}: {u_min:8.2f} ({u_med:.2f})"
          f" = {per:.2f} s/replicate (B={args.replicates}: ~{per * args.replicates:.0f} s and "
          f"{args.replicates * s.numel() * 4 / 2**30:.0f} GiB of row copies)")


if __name__ == "__main__":
    main()
