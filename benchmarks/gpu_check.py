"""GPU check: no host sync in any update() of ours, and timings against torchmetrics.

    python benchmarks/gpu_check.py --out gpu_result.json      # on a machine with one CUDA GPU, < 3 min
    python benchmarks/gpu_check.py --cpu-smoke                 # the same code paths on CPU, no timings

1. **No host sync.** Every metric class, the suite (exact and histogram mode) and the
   aggregator run ``update()`` on a 256 x 400 CUDA batch under
   ``torch.cuda.set_sync_debug_mode("error")`` (any host-device synchronisation raises). The
   torchmetrics equivalents are run under mode ``"warn"`` and their syncs counted.
2. **Whole-suite update** for a 256 x 400 batch: exact mode (rows appended), histogram mode
   eager, and histogram mode compiled with ``compile_update="reduce-overhead"`` (torch.compile
   replays it as a CUDA graph), against the torchmetrics MetricCollection of the same metrics.
3. **Exact compute**: AUROC over 20k x 400 and mAP over 20k x 157, ours vs torchmetrics.
4. **Scale**: the suite's exact ``compute()`` at Kinetics-400 size (600k clips x 400 classes,
   mean_logits): seconds (first, min of 3) and ``torch.cuda.max_memory_allocated()`` beyond the
   state.

Writes one JSON file with every figure (ms per call, CUDA-event timed, median of repeats).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
import warnings

import torch

import video_metrics as vm


def _metrics(c):
    return {
        "TopKAccuracy": lambda: vm.TopKAccuracy(c, k=5),
        "PrecisionRecallF1": lambda: vm.PrecisionRecallF1(c),
        "BalancedAccuracy": lambda: vm.BalancedAccuracy(c),
        "ConfusionMatrix": lambda: vm.ConfusionMatrix(c),
        "CalibrationError": lambda: vm.CalibrationError(c),
        "AUROC": lambda: vm.AUROC(c),
        "AUROC(bins=1000)": lambda: vm.AUROC(c, bins=1000),
        "MeanAveragePrecision(multiclass)": lambda: vm.MeanAveragePrecision(c, task="multiclass"),
        "MeanAveragePrecision(multilabel, bins=1000)": lambda: vm.MeanAveragePrecision(c, bins=1000),
        "PRCurve": lambda: vm.PRCurve(c),
        "suite exact (clip+video)": lambda: vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits"),
        "suite 1000 bins (clip)": lambda: vm.VideoClassificationMetrics(c, top_k=(1, 5), bins=1000),
        "suite multilabel exact": lambda: vm.VideoClassificationMetrics(c, task="multilabel", video_reduction="max"),
        "VideoAggregator": lambda: vm.VideoAggregator(c, reduction="mean_probs"),
        "Precision": lambda: vm.Precision(c),
        "F1Score(multilabel, beta=2)": lambda: vm.F1Score(c, task="multilabel", beta=2.0),
        "MeanAveragePrecision(samples)": lambda: vm.MeanAveragePrecision(c, average="samples"),
        "AUROC(binary)": lambda: vm.AUROC(task="binary"),
        "CalibrationError(binary)": lambda: vm.CalibrationError(task="binary"),
        "suite binary (clip+video)": lambda: vm.VideoClassificationMetrics(task="binary", video_reduction="mean_probs"),
        "YouTube8MMetrics(top_k=20)": lambda: vm.YouTube8MMetrics(c, top_k=min(20, c), input="logits", max_labels=c),
        "ActionMetrics (views, tail, groups)": lambda: vm.ActionMetrics(c, c, tail_verbs=[0, 1], group_names={1: "unseen"}),
    }


def _tm_metrics(c):
    import torchmetrics.classification as tmc

    return {
        "MulticlassAccuracy(top5)": lambda: tmc.MulticlassAccuracy(c, top_k=5, average="micro"),
        "MulticlassF1Score": lambda: tmc.MulticlassF1Score(c, average="macro"),
        "MulticlassConfusionMatrix": lambda: tmc.MulticlassConfusionMatrix(c),
        "MulticlassCalibrationError": lambda: tmc.MulticlassCalibrationError(c, n_bins=15),
        "MulticlassAUROC": lambda: tmc.MulticlassAUROC(c, thresholds=None),
        "MulticlassAUROC(thresholds=100)": lambda: tmc.MulticlassAUROC(c, thresholds=100),
        "MultilabelAveragePrecision": lambda: tmc.MultilabelAveragePrecision(c, thresholds=None),
    }


def _collection(c):
    from run import tm_collection  # benchmarks/run.py, beside this script

    return tm_collection(c)


def _batch(n, c, device, task="multiclass", seed=0):
    g = torch.Generator().manual_seed(seed)
    if task == "binary":
        return torch.randn(n, generator=g).to(device), torch.randint(0, 2, (n,), generator=g).to(device)
    s = torch.randn(n, c, generator=g)
    if task == "multiclass":
        t = torch.randint(0, c, (n,), generator=g)
    else:
        t = (torch.rand(n, c, generator=g) < 0.05).long()
    return s.to(device), t.to(device)


def _update(m, s, t, step=0):
    vid = torch.arange(s.shape[0], device=s.device) // 4 + step * 1000
    cid = torch.arange(s.shape[0], device=s.device) % 4
    if isinstance(m, vm.ActionMetrics):  # noun head: the same scores rolled by one class
        t = t.view(-1, 4)[:, :1].expand(-1, 4).reshape(-1)
        m.update(s, s.roll(1, 1), t, (t + 1) % s.shape[1], video_ids=vid, clip_ids=cid, groups=vid % 2)
    elif isinstance(m, vm.VideoAggregator) or (isinstance(m, vm.VideoClassificationMetrics) and m.video_reduction):
        if m.task in ("multiclass", "binary"):
            t = t.view(-1, 4)[:, :1].expand(-1, 4).reshape(-1)
        m.update(s, t, vid, cid)
    else:
        m.update(s, t)


def _timer(fn, repeats, device):
    """Median ms per call (CUDA events on GPU, perf_counter on CPU), after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def check_no_sync(device, c, result):
    out = {}
    for name, make in _metrics(c).items():
        m = make().to(device)
        task = getattr(m, "task", "multiclass")
        s, t = _batch(256, c, device, task)
        _update(m, s, t, 0)  # first update declares the configuration state
        try:
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            try:
                for step in range(1, 4):
                    _update(m, s, t, step)
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
            out[name] = "ok: no host sync"
        except RuntimeError as e:
            out[name] = f"SYNC: {str(e).splitlines()[0]}"
    result["ours_update_sync_check"] = out
    tm = {}
    for name, make in _tm_metrics(c).items():
        m = make().to(device)
        task = "multilabel" if name.startswith("Multilabel") else "multiclass"
        s, t = _batch(256, c, device, task)
        p = s.softmax(1) if task == "multiclass" else s.sigmoid()
        m.update(p, t)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                m.update(p, t)
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
        tm[name] = sum("synchroniz" in str(x.message) for x in w)
    result["torchmetrics_syncs_per_update"] = tm


def time_suite(device, c, repeats, result, compile_modes):
    s, t = _batch(256, c, device)
    tv = t.view(-1, 4)[:, :1].expand(-1, 4).reshape(-1)
    vid = torch.arange(256, device=device) // 4
    cid = torch.arange(256, device=device) % 4
    out = {"read_logits_once_ms": _timer(lambda: s.sum(), repeats, device)}
    exact = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits").to(device)

    def exact_update():
        if len(exact.scores) > 64:
            exact.reset()
        exact.update(s, tv, vid, cid)

    out["suite_exact_update_ms"] = _timer(exact_update, repeats, device)
    hist = vm.VideoClassificationMetrics(c, top_k=(1, 5), bins=1000).to(device)
    out["suite_bins1000_eager_update_ms"] = _timer(lambda: hist.update(s, t), repeats, device)
    for mode in compile_modes:
        try:
            t0 = time.perf_counter()
            comp = vm.VideoClassificationMetrics(c, top_k=(1, 5), bins=1000, compile_update=mode).to(device)
            comp.update(s, t)
            out[f"suite_bins1000_compiled_{mode}_first_call_s"] = time.perf_counter() - t0
            out[f"suite_bins1000_compiled_{mode}_update_ms"] = _timer(lambda: comp.update(s, t), repeats, device)
            ref = vm.VideoClassificationMetrics(c, top_k=(1, 5), bins=1000).to(device)
            comp.reset()
            for step in range(3):
                ref.update(s, t)
                comp.update(s, t)
            a, b = ref.compute(), comp.compute()
            out[f"suite_bins1000_compiled_{mode}_max_abs_diff"] = max(abs(float(a[k]) - float(b[k])) for k in a)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
                try:
                    comp.update(s, t)
                    out[f"suite_bins1000_compiled_{mode}_sync"] = "ok: no host sync"
                except RuntimeError as e:
                    out[f"suite_bins1000_compiled_{mode}_sync"] = f"SYNC: {str(e).splitlines()[0]}"
                finally:
                    torch.cuda.set_sync_debug_mode(0)
        except Exception as e:  # noqa: BLE001 - report, do not abort the other measurements
            out[f"suite_bins1000_compiled_{mode}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    col = _collection(c).to(device)
    p = s.softmax(1)

    def col_update():
        if col["auroc"].preds and len(col["auroc"].preds) > 64:
            col.reset()
        col.update(p, t)

    out["torchmetrics_collection_update_ms"] = _timer(col_update, repeats, device)
    result["suite_update_256x400"] = out


def time_compute(device, repeats, result, n=20000):
    import torchmetrics.classification as tmc

    out = {}
    s, t = _batch(n, 400, device, seed=1)
    ours, tm = vm.AUROC(400).to(device), tmc.MulticlassAUROC(400, thresholds=None).to(device)
    ours.update(s, t)
    tm.update(s.softmax(1), t)

    def c_ours(m=ours):
        m._computed = None
        return m.compute()

    def c_tm(m=tm):
        m._computed = None
        return m.compute()

    out["auroc_20kx400_ours_ms"] = _timer(c_ours, repeats, device)
    out["auroc_20kx400_torchmetrics_ms"] = _timer(c_tm, max(3, repeats // 4), device)
    out["auroc_20kx400_values"] = [float(c_ours()), float(c_tm())]
    s, t = _batch(n, 157, device, task="multilabel", seed=2)
    ours, tm = vm.MeanAveragePrecision(157).to(device), tmc.MultilabelAveragePrecision(157, thresholds=None).to(device)
    ours.update(s, t)
    tm.update(s, t)
    out["map_20kx157_ours_ms"] = _timer(lambda: c_ours(ours), repeats, device)
    out["map_20kx157_torchmetrics_ms"] = _timer(lambda: c_tm(tm), max(3, repeats // 4), device)
    out["map_20kx157_values"] = [float(c_ours(ours)), float(c_tm(tm))]
    result["exact_compute"] = out


def time_scale(device, result, n=600000, c=400, clips=10):
    """The suite's exact compute() at Kinetics-400 size (600k clips x 400 classes, 10 clips per
    video, mean_logits): time (first and min of 3) and the peak memory it allocates on the device
    beyond the state (``torch.cuda.max_memory_allocated``)."""
    g = torch.Generator().manual_seed(3)
    v = n // clips
    target = torch.randint(0, c, (v,), generator=g).repeat_interleave(clips)
    vid, cid = torch.arange(v).repeat_interleave(clips), torch.arange(clips).repeat(v)
    suite = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits").to(device)
    for i in range(0, n, 8192):
        b = min(8192, n - i)
        s = torch.randn(b, c, generator=g) * 2
        s[torch.arange(b), target[i:i + b]] += 2.0
        suite.update(s.to(device), target[i:i + b].to(device), vid[i:i + b].to(device), cid[i:i + b].to(device))
    state = sum(x.numel() * x.element_size() for val in suite.metric_state.values()
                for x in (val if isinstance(val, list) else [val]))
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(3):
        suite._computed = None
        t0 = time.perf_counter()
        out = suite.compute()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) if cuda else None
    result[f"scale_{n // 1000}kx{c}"] = {
        "clips": n, "classes": c, "state_mb": round(state / 1e6, 1), "compute_s_first": round(times[0], 3),
        "compute_s_min": round(min(times), 3), "peak_extra_mb": round(peak / 1e6, 1) if peak is not None else None,
        "peak_extra_over_state": round(peak / state, 2) if peak is not None else None,
        "video_top1": float(out["video/top1"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_result.json")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--cpu-smoke", action="store_true", help="run every code path on CPU (small, no GPU needed)")
    ap.add_argument("--compile-modes", nargs="*", default=["reduce-overhead"],
                    help="torch.compile modes for the suite's histogram update (empty: skip)")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        device, c, repeats = torch.device("cpu"), 40, 3
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device (use --cpu-smoke to exercise the code on CPU)", file=sys.stderr)
            return 2
        device, c, repeats = torch.device("cuda"), 400, args.repeats
    t0 = time.perf_counter()
    result = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "classes": c}
    steps = [("sync check", lambda: check_no_sync(device, c, result)),
             ("suite update", lambda: time_suite(device, c, repeats, result,
                                                 [] if args.cpu_smoke else args.compile_modes)),
             ("exact compute", lambda: time_compute(device, repeats, result, n=2000 if args.cpu_smoke else 20000)),
             ("scale compute", lambda: time_scale(device, result, n=4000 if args.cpu_smoke else 600000,
                                                  c=40 if args.cpu_smoke else 400))]
    for name, fn in steps:
        try:
            fn()
        except Exception:  # noqa: BLE001 - keep the other sections
            result[f"{name} error"] = traceback.format_exc().splitlines()[-1]
    result["seconds"] = time.perf_counter() - t0
    bad = [k for k, v in result.get("ours_update_sync_check", {}).items() if not v.startswith("ok")]
    result["all_updates_sync_free"] = not bad
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0 if not bad and not any(k.endswith(" error") for k in result) else 1


if __name__ == "__main__":
    sys.exit(main())
