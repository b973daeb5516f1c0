"""video_metrics vs torchmetrics vs scikit-learn on the same data, in one run.

    python benchmarks/run.py            # 20k x 400 multiclass, 20k x 157 multilabel
    python benchmarks/run.py --quick    # 5k rows, about a minute
    python benchmarks/run.py --scale    # benchmarks/scale.py: the suite's compute() at 20k-320k clips

Every timing is taken ``--repeats`` times (at least 3) and printed as ``min (median)``; ratios
are "other / ours" on the minima (> 1 means we are faster). For each metric: update() over
batches of 256 plus compute(), for ours and torchmetrics (each repetition resets and refeeds),
and sklearn's one-shot time on the concatenated NumPy arrays. Then: histogram mode against torchmetrics' ``thresholds=`` mode; the whole
suite (clip + video level, every key; and histogram mode) against the equivalent torchmetrics
MetricCollection, with the collectives of one sync counted on 2 gloo processes; memory (state
sizes, peak allocation during update); the clip -> video aggregation.
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch
import torchmetrics
import torchmetrics.classification as tmc
from sklearn import metrics as skm

import video_metrics as vm
import video_metrics.data  # noqa: F401

warnings.filterwarnings("ignore")


def tm_collection(c):
    """The torchmetrics MetricCollection of the suite's clip-level multiclass metrics."""
    return torchmetrics.MetricCollection({
        "top1": tmc.MulticlassAccuracy(c, average="micro"), "top5": tmc.MulticlassAccuracy(c, top_k=5, average="micro"),
        "balanced": tmc.MulticlassRecall(c, average="macro"), "mean_top5": tmc.MulticlassRecall(c, top_k=5, average="macro"),
        "prec": tmc.MulticlassPrecision(c, average="macro"), "f1": tmc.MulticlassF1Score(c, average="macro"),
        "f1w": tmc.MulticlassF1Score(c, average="weighted"), "auroc": tmc.MulticlassAUROC(c, thresholds=None),
        "ap": tmc.MulticlassAveragePrecision(c, thresholds=None), "ece": tmc.MulticlassCalibrationError(c, n_bins=15),
        "mce": tmc.MulticlassCalibrationError(c, n_bins=15, norm="max"),
    })


def feed_collection(col, s, t, bs=256):
    """Reset a torchmetrics collection and feed it softmax probabilities batch by batch."""
    col.reset()
    for i in range(0, len(s), bs):
        col.update(torch.softmax(s[i:i + bs], 1), t[i:i + bs])


def compute_collection(col):
    for m in col.values():
        m._computed = None
    return col.compute()


class Timing(float):
    """Seconds: the minimum over the repetitions, with the median as ``.median``."""

    median: float


def timed(fn, repeats=3):
    """``(Timing, last output)``: ``fn`` run ``max(3, repeats)`` times."""
    times, out = [], None
    for _ in range(max(3, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    best = Timing(min(times))
    best.median = float(np.median(times))
    return best, out


def feed_time(metric, s, t, repeats=3, bs=256):
    def run():
        metric.reset()
        for i in range(0, len(s), bs):
            metric.update(s[i:i + bs], t[i:i + bs])
    return timed(run, repeats)[0]


def compute_time(metric, repeats):
    def run():
        metric._computed = None
        return metric.compute()
    return timed(run, repeats)


def total_time(metric, s, t, repeats=3, bs=256, transform=None):
    """update() over batches of ``bs`` plus compute(), from a reset metric."""
    def run():
        metric.reset()
        for i in range(0, len(s), bs):
            x = s[i:i + bs]
            metric.update(transform(x) if transform is not None else x, t[i:i + bs])
        metric._computed = None
        return metric.compute()
    return timed(run, repeats)


def fmt(x):
    if x is None:
        return f"{'-':>16}"
    med = getattr(x, "median", None)
    return f"{float(x):7.3f} ({med:6.3f})" if med is not None else f"{float(x):16.3f}"


def ratio(a, b):
    return "     -" if a is None or b is None or b == 0 else f"{float(a) / float(b):6.1f}x"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--scale", action="store_true", help="run benchmarks/scale.py (compute at 20k-320k clips) instead")
    ap.add_argument("--sections", nargs="+", default=["all"],
                    choices=["all", "main", "histogram", "suite", "collectives", "memory", "aggregation"],
                    help="which tables to run (default: all)")
    args = ap.parse_args()
    if args.scale:
        import os
        import subprocess
        import sys

        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale.py")
        raise SystemExit(subprocess.call([sys.executable, script, "--threads", str(args.threads or 2)]))
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 5000 if args.quick else 20000
    g = torch.Generator().manual_seed(0)
    c_mc, c_ml = 400, 157
    s_mc = torch.randn(n, c_mc, generator=g) * 2
    t_mc = torch.randint(0, c_mc, (n,), generator=g)
    s_mc[torch.arange(n), t_mc] += 2.0  # a model that is right ~ half the time
    p_mc = torch.softmax(s_mc, 1)
    s_ml = torch.randn(n, c_ml, generator=g)
    t_ml = (torch.rand(n, c_ml, generator=g) < 0.05).long()
    s_ml = s_ml + 2.0 * t_ml
    np_p_mc, np_t_mc = p_mc.double().numpy(), t_mc.numpy()
    np_s_ml, np_t_ml = s_ml.double().numpy(), t_ml.numpy()
    pred = np_p_mc.argmax(1)
    y_ml_onehot = np.eye(c_mc)[np_t_mc]

    rows = [
        ("top-1 accuracy (micro)", vm.TopKAccuracy(c_mc, k=1), tmc.MulticlassAccuracy(c_mc, average="micro"), (s_mc, t_mc),
         lambda: skm.accuracy_score(np_t_mc, pred)),
        ("top-5 accuracy (micro)", vm.TopKAccuracy(c_mc, k=5), tmc.MulticlassAccuracy(c_mc, top_k=5, average="micro"), (s_mc, t_mc),
         lambda: skm.top_k_accuracy_score(np_t_mc, np_p_mc, k=5, labels=range(c_mc))),
        ("F1 macro", vm.PrecisionRecallF1(c_mc), tmc.MulticlassF1Score(c_mc, average="macro"), (s_mc, t_mc),
         lambda: skm.f1_score(np_t_mc, pred, average="macro")),
        ("balanced accuracy", vm.BalancedAccuracy(c_mc), tmc.MulticlassRecall(c_mc, average="macro"), (s_mc, t_mc),
         lambda: skm.balanced_accuracy_score(np_t_mc, pred)),
        ("confusion matrix", vm.ConfusionMatrix(c_mc), tmc.MulticlassConfusionMatrix(c_mc), (s_mc, t_mc),
         lambda: skm.confusion_matrix(np_t_mc, pred, labels=range(c_mc))),
        ("ECE (15 bins)", vm.CalibrationError(c_mc), tmc.MulticlassCalibrationError(c_mc, n_bins=15), (s_mc, t_mc), None),
        ("AUROC macro exact 400 cls", vm.AUROC(c_mc), tmc.MulticlassAUROC(c_mc, average="macro", thresholds=None), (s_mc, t_mc),
         lambda: skm.roc_auc_score(np_t_mc, np_p_mc, multi_class="ovr", average="macro")),
        ("AP macro exact 400 cls (1-vs-rest)", vm.MeanAveragePrecision(c_mc, task="multiclass"),
         tmc.MulticlassAveragePrecision(c_mc, average="macro", thresholds=None), (s_mc, t_mc),
         lambda: skm.average_precision_score(y_ml_onehot, np_p_mc, average="macro")),
        ("mAP exact 157 labels", vm.MeanAveragePrecision(c_ml), tmc.MultilabelAveragePrecision(c_ml, average="macro", thresholds=None),
         (s_ml, t_ml), lambda: skm.average_precision_score(np_t_ml, np_s_ml, average="macro")),
        ("AUROC exact 157 labels", vm.AUROC(c_ml, task="multilabel"), tmc.MultilabelAUROC(c_ml, average="macro", thresholds=None),
         (s_ml, t_ml), lambda: skm.roc_auc_score(np_t_ml, np_s_ml, average="macro")),
    ]
    print(f"# video_metrics benchmark: N={n}, batches of 256, torch {torch.__version__}, torchmetrics "
          f"{torchmetrics.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    if not ("all" in args.sections or "main" in args.sections):
        rows = []
    print(f"times in seconds, min (median) of {max(3, args.repeats)} runs; ratios = other / ours, on the minima")
    hdr = (f"{'operation (update + compute)':<36}{'ours':>16}{'torchmetrics':>16}{'sklearn':>16}{'tm/ours':>9}"
           f"{'sk/ours':>9}   value ours / tm / sklearn")
    print(hdr)
    print("-" * len(hdr))
    for name, ours, tm, (s, t), sk in rows:
        softmax = tm.__class__.__name__.startswith("Multiclass")
        t_ours, v_ours = total_time(ours, s, t, args.repeats)
        t_tm, v_tm = total_time(tm, s, t, args.repeats, transform=(lambda x: torch.softmax(x, 1)) if softmax else None)
        t_sk, v_sk = timed(sk, args.repeats) if sk is not None else (None, None)
        if isinstance(v_ours, dict):
            v_ours = v_ours["f1"]
        val = lambda v: "-" if v is None else (f"{float(np.asarray(v).sum()):.6f}" if np.ndim(v) else f"{float(v):.6f}")
        print(f"{name:<36}{fmt(t_ours)}{fmt(t_tm)}{fmt(t_sk)}{ratio(t_tm, t_ours):>9}{ratio(t_sk, t_ours):>9}   "
              f"{val(v_ours)} / {val(v_tm)} / {val(v_sk)}")
    want = lambda name: "all" in args.sections or name in args.sections  # noqa: E731
    if want("histogram"):
        histogram_mode(s_mc, t_mc, s_ml, t_ml, rows, args)
    if want("suite"):
        suite_vs_collection(s_mc, t_mc, args)
    if want("collectives"):
        collectives()
    if want("memory"):
        memory(s_mc, t_mc)
    if want("aggregation"):
        aggregation(args)


def histogram_mode(s_mc, t_mc, s_ml, t_ml, rows, args):
    """Bounded-memory histogram mode vs torchmetrics' binned (``thresholds=``) mode, and the
    error of both against the exact value."""
    c_mc, c_ml = s_mc.shape[1], s_ml.shape[1]
    exact = {"auroc": float(vm.AUROC(c_mc).forward(s_mc, t_mc)),
             "map": float(vm.MeanAveragePrecision(c_ml).forward(s_ml, t_ml))}
    print("\n# histogram mode (bins) vs torchmetrics thresholds=; |error| against the exact value")
    print(f"{'operation':<36}{'ours':>16}{'torchmetrics':>16}{'':>16}{'tm/ours':>9}{'':>9}   |err| ours / tm")
    for bins in (100, 1000):
        cases = [
            (f"AUROC 400 cls, {bins} bins", vm.AUROC(c_mc, bins=bins), tmc.MulticlassAUROC(c_mc, thresholds=bins),
             (s_mc, t_mc), True, exact["auroc"]),
            (f"mAP 157 labels, {bins} bins", vm.MeanAveragePrecision(c_ml, bins=bins),
             tmc.MultilabelAveragePrecision(c_ml, thresholds=bins), (s_ml, t_ml), False, exact["map"]),
        ]
        for name, ours, tm, (s, t), softmax, ref in cases:
            u_ours = feed_time(ours, s, t, args.repeats)

            def feed_tm():
                tm.reset()
                for i in range(0, len(s), 256):
                    tm.update(torch.softmax(s[i:i + 256], 1) if softmax else s[i:i + 256], t[i:i + 256])

            u_tm, _ = timed(feed_tm, args.repeats)
            c_ours, v_ours = compute_time(ours, args.repeats)
            c_tm, v_tm = compute_time(tm, args.repeats)
            print(f"{name + ' update':<36}{fmt(u_ours)}{fmt(u_tm)}{'':>16}{ratio(u_tm, u_ours):>9}")
            print(f"{name + ' compute':<36}{fmt(c_ours)}{fmt(c_tm)}{'':>16}{ratio(c_tm, c_ours):>9}{'':>9}   "
                  f"{abs(float(v_ours) - ref):.1e} / {abs(float(v_tm) - ref):.1e}")


def suite_vs_collection(s, t, args):
    """The whole suite (clip level, every multiclass key) vs the torchmetrics collection of the
    same metrics (which has no video level), update and compute, plus collectives per sync."""
    n, c = s.shape
    vid = torch.arange(n) // 4
    cid = torch.arange(n) % 4
    # give every clip of a video the same target, as real data has
    t = t.view(-1, 4)[:, :1].expand(-1, 4).reshape(-1)
    ours = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits")
    col = tm_collection(c)

    def feed_ours():
        ours.reset()
        for i in range(0, n, 256):
            ours.update(s[i:i + 256], t[i:i + 256], vid[i:i + 256], cid[i:i + 256])

    u_ours, _ = timed(feed_ours, args.repeats)
    u_tm, _ = timed(lambda: feed_collection(col, s, t), args.repeats)
    c_ours, _ = compute_time(ours, args.repeats)
    c_tm, _ = timed(lambda: compute_collection(col), args.repeats)
    print(f"\n# whole suite vs the torchmetrics MetricCollection of the same clip-level metrics ({len(col)} metrics)")
    print(f"{'suite (clip+video) update':<36}{fmt(u_ours)}{fmt(u_tm)}{fmt(None)}{ratio(u_tm, u_ours):>9}")
    print(f"{'suite (clip+video) compute':<36}{fmt(c_ours)}{fmt(c_tm)}{fmt(None)}{ratio(c_tm, c_ours):>9}"
          f"   (torchmetrics: clip level only)")
    # histogram mode: clip level, bounded state; torchmetrics with thresholds=100 for AUROC/AP
    hist = vm.VideoClassificationMetrics(c, top_k=(1, 5), bins=1000)
    col_b = torchmetrics.MetricCollection({k: m for k, m in col.items() if k not in ("auroc", "ap")})
    col_b.add_metrics({"auroc": tmc.MulticlassAUROC(c, thresholds=100), "ap": tmc.MulticlassAveragePrecision(c, thresholds=100)})

    def feed_hist():
        hist.reset()
        for i in range(0, n, 256):
            hist.update(s[i:i + 256], t[i:i + 256])

    u_h, _ = timed(feed_hist, args.repeats)
    u_tb, _ = timed(lambda: feed_collection(col_b, s, t), args.repeats)
    c_h, _ = compute_time(hist, args.repeats)
    c_tb, _ = timed(lambda: compute_collection(col_b), args.repeats)
    print(f"{'suite 1000 bins (clip) update':<36}{fmt(u_h)}{fmt(u_tb)}{fmt(None)}{ratio(u_tb, u_h):>9}"
          f"   (torchmetrics: AUROC/AP with thresholds=100)")
    print(f"{'suite 1000 bins (clip) compute':<36}{fmt(c_h)}{fmt(c_tb)}{fmt(None)}{ratio(c_tb, c_h):>9}")


def _count_worker(rank, world, port, q):
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    counts = {"n": 0}
    for name in ("all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "all_gather_single", "barrier",
                 "broadcast", "reduce", "gather", "scatter"):
        orig = getattr(dist, name, None)
        if orig is None:
            continue

        def wrapped(*a, _orig=orig, **k):
            counts["n"] += 1
            return _orig(*a, **k)

        setattr(dist, name, wrapped)
    c = 400
    g = torch.Generator().manual_seed(rank)
    s, t = torch.randn(300, c, generator=g), torch.randint(0, c, (100,), generator=g).repeat_interleave(3)
    vid, cid = torch.arange(300) // 3 + 1000 * rank, torch.arange(300) % 3
    out = {}
    suite = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits")
    suite.update(s, t, vid, cid)
    before = counts["n"]
    suite.compute()
    out["suite (exact, clip+video)"] = counts["n"] - before
    hist = vm.VideoClassificationMetrics(c, top_k=(1, 5), bins=1000)
    hist.update(s, t)
    before = counts["n"]
    hist.compute()
    out["suite (1000 bins, clip)"] = counts["n"] - before
    col = tm_collection(c)
    col.update(torch.softmax(s, 1), t)
    before = counts["n"]
    col.compute()
    out[f"torchmetrics collection ({len(col)} metrics, compute groups on)"] = counts["n"] - before
    if rank == 0:
        q.put(out)
    dist.destroy_process_group()


def collectives():
    """Collectives issued by one compute() on 2 gloo processes (counted by patching torch.distributed)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_count_worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    import queue

    out = None
    while out is None and any(p.is_alive() for p in procs):
        try:
            out = q.get(timeout=1)
        except queue.Empty:
            pass
    for p in procs:
        p.join(timeout=60)
    if out is None:
        print("\n# collectives: the 2-process count failed (see the error above)")
        return
    print("\n# collectives per compute() on 2 processes (gloo)")
    for k, v in out.items():
        print(f"{k:<60}{v:>4}")


def _peak_update_mib(fn):
    """Approximate peak of CPU allocations while ``fn`` runs (torch profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.events() if e.name == "[memory]" or not e.cpu_children]
    events.sort(key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak / 2**20


def _state_mib(metric):
    return sum(x.numel() * x.element_size() for v in metric.metric_state.values()
               for x in (v if isinstance(v, list) else [v])) / 2**20


def memory(s, t):
    n, c = s.shape
    vid, cid = torch.arange(n) // 4, torch.arange(n) % 4
    exact = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits")
    clip_exact = vm.VideoClassificationMetrics(c, top_k=(1, 5))
    hist = vm.VideoClassificationMetrics(c, top_k=(1, 5), bins=1000)
    for i in range(0, n, 256):
        sl = slice(i, i + 256)
        exact.update(s[sl], t[sl], vid[sl], cid[sl])
        clip_exact.update(s[sl], t[sl])
        hist.update(s[sl], t[sl])
    print(f"\n# memory, {n} clips x {c} classes")
    print(f"suite state, exact (clip + video):     {_state_mib(exact):8.1f} MiB  (grows with N)")
    print(f"suite state, exact (clip only):        {_state_mib(clip_exact):8.1f} MiB  (grows with N)")
    print(f"suite state, 1000 bins (clip only):    {_state_mib(hist):8.1f} MiB  (fixed: C x bins x 2 int64 + C^2 + bins)")
    b_s, b_t = s[:256], t[:256]
    tm_auc = tmc.MulticlassAUROC(c, thresholds=100)
    tm_exact = tmc.MulticlassAUROC(c, thresholds=None)
    print("peak allocation during one update(256 x 400), approximate (torch profiler):")
    for name, fn in (("ours AUROC 100 bins", lambda m=vm.AUROC(c, bins=100): m.update(b_s, b_t)),
                     ("torchmetrics AUROC thresholds=100", lambda: tm_auc.update(torch.softmax(b_s, 1), b_t)),
                     ("ours AUROC exact", lambda m=vm.AUROC(c): m.update(b_s, b_t)),
                     ("torchmetrics AUROC exact", lambda: tm_exact.update(torch.softmax(b_s, 1), b_t)),
                     ("ours suite 1000 bins", lambda: hist.update(b_s, b_t)),
                     ("ours suite exact", lambda: exact.update(b_s, b_t, vid[:256], cid[:256]))):
        print(f"  {name:<36}{_peak_update_mib(fn):8.2f} MiB")


def aggregation(args):
    """30,000 clips x 400 classes in 1,000 videos: our aggregator + video-level metrics vs a
    straightforward per-video NumPy loop (+ sklearn) and vs torchmetrics on pre-aggregated scores."""
    n_videos, clips, c = (250, 30, 400) if args.quick else (1000, 30, 400)
    d = vm.data.synthetic_predictions(n_videos, clips, c, seed=1)
    n = len(d.target)
    suite = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_probs")

    def feed():
        suite.reset()
        for i in range(0, n, 256):
            sl = slice(i, i + 256)
            suite.update(d.scores[sl], d.target[sl], d.video_ids[sl], d.clip_ids[sl])

    u, _ = timed(feed, args.repeats)
    cpt, out = compute_time(suite, args.repeats)

    def numpy_baseline():
        s, vid, t = d.scores.double().numpy(), d.video_ids.numpy(), d.target.numpy()
        e = np.exp(s - s.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        vp, vt = [], []
        for v in np.unique(vid):  # per-video Python loop
            rows = vid == v
            vp.append(p[rows].mean(0))
            vt.append(t[rows][0])
        vp, vt = np.array(vp), np.array(vt)
        return (skm.top_k_accuracy_score(vt, vp, k=1, labels=range(c)),
                skm.roc_auc_score(vt, vp, multi_class="ovr", average="macro", labels=range(c)))

    t_np, (top1_np, _) = timed(numpy_baseline, args.repeats)
    vp_t = torch.softmax(d.scores, 1).view(n_videos, clips, c).mean(1)
    vt_t = d.target.view(n_videos, clips)[:, 0]
    tm_top1 = tmc.MulticlassAccuracy(c, average="micro")
    tm_auroc = tmc.MulticlassAUROC(c, thresholds=None)

    def tm_run():
        tm_top1.reset(), tm_auroc.reset()
        tm_top1.update(vp_t, vt_t), tm_auroc.update(vp_t, vt_t)
        return tm_top1.compute(), tm_auroc.compute()

    t_tm, _ = timed(tm_run, args.repeats)
    print(f"\n# clip->video: {n} clips x {c} classes in {n_videos} videos (mean_probs), every clip and video key")
    print(f"{'ours: update all clips':<36}{fmt(u)}")
    print(f"{'ours: compute (clip + video, all keys)':<36}{fmt(cpt)}   video top1 {out['video/top1'].item():.4f}")
    print(f"{'per-video NumPy loop + sklearn (top1, AUROC)':<36}{fmt(t_np)}   video top1 {top1_np:.4f}   "
          f"ratio {float(t_np) / (float(u) + float(cpt)):.1f}x of our update+compute")
    print(f"{'torchmetrics on pre-aggregated (top1, AUROC)':<36}{fmt(t_tm)}   (aggregation not included)")
    state_mb = sum(x.numel() * x.element_size() for v in suite.metric_state.values()
                   for x in (v if isinstance(v, list) else [v])) / 2**20
    print(f"suite state: {state_mb:.1f} MiB for {n} clips x {c} classes (formula N*(4C+25) bytes = "
          f"{n * (4 * c + 25) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
