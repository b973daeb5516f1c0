"""Scale: the suite's compute() at Kinetics-like sizes, one process (run by ``run.py --scale``).

For each size (clips x 400 classes, 10 clips per video, exact mode, ``video_reduction="mean_logits"``):
the state size, the peak extra memory during ``compute()`` (peak RSS of the process during
compute minus the RSS before it, sampled every 5 ms in a thread), the compute time and its
ratio to one values-only sort of the N x C clip scores measured in the same run. Each size
runs in a fresh subprocess so that peaks do not carry over.

    python benchmarks/scale.py                 # 20k, 80k, 320k
    python benchmarks/scale.py --sizes 20000   # one size
    git worktree add /tmp/vm_before <commit>   # then "before" rows measured with that commit's code:
    python benchmarks/scale.py --before /tmp/vm_before
    python benchmarks/scale.py --ddp 1 2 3 --sizes 240000   # gloo processes: full gather vs class shards
    python benchmarks/scale.py --task multilabel --classes 157 --sizes 100000    # Charades x 10
    python benchmarks/scale.py --task multilabel --classes 3862 --sizes 50000    # YouTube-8M's classes

``--ddp``: the same rows split over gloo processes (4096-row chunks dealt round-robin, so the data
do not depend on the world size); per rank: peak extra memory of its first ``compute()``, the
bytes it receives (all-gather outputs, all-to-all receive buffers, all-reduce tensors) and the
compute time (min of 3), with ``shard_classes=False`` (every rank gathers every row) and
``shard_classes=True``; the values are compared with the one-process run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    def __init__(self) -> None:
        self.peak = self.base = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __enter__(self):
        self.base = self.peak = _rss()
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())


def one(n: int, c: int, threads: int, task: str = "multiclass") -> dict:
    import numpy as np
    import torch

    import video_metrics as vm

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    clips = 10
    v = n // clips
    if task == "multiclass":
        target = torch.randint(0, c, (v,), generator=g).repeat_interleave(clips)
        suite = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits")
    else:  # Charades-like: about 3 labels a video (at least one), max over its clips
        vt = torch.rand(v, c, generator=g) < 3.0 / c
        vt[torch.arange(v), torch.randint(0, c, (v,), generator=g)] = True
        target = vt.repeat_interleave(clips, 0)
        suite = vm.VideoClassificationMetrics(c, task="multilabel", video_reduction="max")
    vid = torch.arange(v).repeat_interleave(clips)
    cid = torch.arange(clips).repeat(v)
    for i in range(0, n, 4096):
        s = torch.randn(min(4096, n - i), c, generator=g) * 2
        t = target[i:i + 4096]
        if task == "multiclass":
            s[torch.arange(s.shape[0]), t] += 2.0
        else:
            s += 2.0 * t
        suite.update(s, t, vid[i:i + 4096], cid[i:i + 4096])
    state = sum(x.numel() * x.element_size() for val in suite.metric_state.values()
                for x in (val if isinstance(val, list) else [val]))
    import gc

    gc.collect()
    # peak memory of the first compute() in this fresh process (before any other big allocation,
    # so that no freed-but-kept heap hides part of the peak), then the time: min of 5
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = suite.compute()
        times = [time.perf_counter() - t0]
    # one values-only sort of the N x C clip scores (each class's column), same process: NumPy's
    # single-threaded sort and video_metrics' row sort split over torch's threads; compute and the
    # sorts alternate, 5 rounds, so that a slow phase of a shared machine hits both sides
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads)

    def _sort_rows(a):  # the same rows split over the threads (NumPy releases the GIL), in place
        cuts = [round(i * a.shape[0] / threads) for i in range(threads + 1)]
        for j in [pool.submit(np.ndarray.sort, a[lo:hi], -1) for lo, hi in zip(cuts[:-1], cuts[1:])]:
            j.result()

    # the sorts run in place on a fresh copy made (and its pages touched) outside the timing, so
    # that they time the sort itself, not the allocation of its output
    scores_t = torch.cat(suite.scores).T.contiguous()
    sort_np, sort_ours = [], []
    for r in range(5):
        if r:
            suite._computed = None
            t0 = time.perf_counter()
            suite.compute()
            times.append(time.perf_counter() - t0)
        a = scores_t.numpy().copy()
        t0 = time.perf_counter()
        a.sort(axis=1)
        sort_np.append(time.perf_counter() - t0)
        a[...] = scores_t.numpy()
        t0 = time.perf_counter()
        _sort_rows(a)
        sort_ours.append(time.perf_counter() - t0)
        del a
    t0 = time.perf_counter()
    torch.sort(scores_t, dim=1)
    sort_torch = time.perf_counter() - t0
    compute_s = min(times)
    return {"clips": n, "classes": c, "state_mb": state / 1e6, "compute_s": compute_s,
            "compute_median_s": float(np.median(times)), "sort_s": min(sort_np), "sort_threads_s": min(sort_ours), "sort_torch_s": sort_torch,
            "ratio_to_sort": compute_s / min(sort_np), "ratio_to_threaded_sort": compute_s / min(sort_ours),
            "peak_extra_mb": (mem.peak - mem.base) / 1e6, "peak_extra_over_state": (mem.peak - mem.base) / state,
            "video_value": float(out["video/top1" if task == "multiclass" else "video/mAP_micro"])}


def _chunk(i: int, n: int, c: int, clips: int = 10):
    """Rows ``[4096 i, 4096 (i + 1))`` of the data set (seeded by the chunk: any split gives the same rows)."""
    import torch

    g = torch.Generator().manual_seed(1000 + i)
    lo, hi = 4096 * i, min(n, 4096 * (i + 1))
    rows = torch.arange(lo, hi)
    vid = rows // clips
    tg = torch.Generator().manual_seed(7)
    video_target = torch.randint(0, c, (n // clips + 1,), generator=tg)
    t = video_target[vid]
    s = torch.randn(hi - lo, c, generator=g) * 2
    s[torch.arange(hi - lo), t] += 2.0
    return s, t, vid, rows % clips


def _ddp_worker(rank: int, world: int, port: int, n: int, c: int, shard: bool, q) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    import video_metrics as vm

    received = {"bytes": 0}
    orig = {k: getattr(dist, k) for k in ("all_gather", "all_gather_single", "all_to_all_single", "all_reduce")}

    def all_gather(out, x, *a, **k):
        received["bytes"] += sum(t.numel() * t.element_size() for t in out)
        return orig["all_gather"](out, x, *a, **k)

    def all_gather_single(out, x, *a, **k):
        received["bytes"] += out.numel() * out.element_size()
        return orig["all_gather_single"](out, x, *a, **k)

    def all_to_all_single(out, x, *a, **k):
        received["bytes"] += out.numel() * out.element_size()
        return orig["all_to_all_single"](out, x, *a, **k)

    def all_reduce(x, *a, **k):
        received["bytes"] += x.numel() * x.element_size()
        return orig["all_reduce"](x, *a, **k)

    dist.all_gather, dist.all_gather_single = all_gather, all_gather_single
    dist.all_to_all_single, dist.all_reduce = all_to_all_single, all_reduce
    suite = vm.VideoClassificationMetrics(c, top_k=(1, 5), video_reduction="mean_logits", shard_classes=shard)
    for i in range(rank, -(-n // 4096), world):
        suite.update(*_chunk(i, n, c))
    import gc

    gc.collect()
    dist.barrier()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = suite.compute()
        times = [time.perf_counter() - t0]
    got = received["bytes"]
    for _ in range(2):
        suite._computed = None
        dist.barrier()
        t0 = time.perf_counter()
        suite.compute()
        times.append(time.perf_counter() - t0)
    dist.destroy_process_group()
    q.put((rank, {"peak_extra_mb": (mem.peak - mem.base) / 1e6, "received_mb": got / 1e6, "compute_s": min(times),
                  "values": {k: float(v) for k, v in out.items()}}))


def ddp(n: int, c: int, worlds) -> None:
    import socket

    import torch.multiprocessing as mp

    print(f"# class-sharded compute(): {n} clips x {c} classes (state {n * c * 4 / 1e6:.0f} MB of scores), mean_logits, "
          "gloo, 1 torch thread per process, 2 cores")
    print(f"{'processes':>9}{'mode':>14}{'peak extra MB per rank':>26}{'received MB per rank':>24}"
          f"{'compute s (max rank)':>22}{'max |diff| vs 1 process':>26}")
    ref = None
    for world in worlds:
        for shard in ([False] if world == 1 else [False, True]):
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            with socket.socket() as sk:
                sk.bind(("127.0.0.1", 0))
                port = sk.getsockname()[1]
            # a fixed mmap threshold: freed large buffers go back to the OS, so RSS follows the live
            # memory (glibc's dynamic threshold keeps freed blocks of up to 32 MB in the heap)
            os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
            procs = [ctx.Process(target=_ddp_worker, args=(r, world, port, n, c, shard, q)) for r in range(world)]
            for p in procs:
                p.start()
            res = dict(q.get() for _ in procs)
            for p in procs:
                p.join()
            if ref is None:
                ref = res[0]["values"]
            diff = max(abs(res[r]["values"][k] - ref[k]) for r in res for k in ref)
            peaks = " / ".join(f"{res[r]['peak_extra_mb']:.0f}" for r in sorted(res))
            recv = " / ".join(f"{res[r]['received_mb']:.0f}" for r in sorted(res))
            mode = "one process" if world == 1 else ("class shards" if shard else "full gather")
            print(f"{world:>9}{mode:>14}{peaks:>26}{recv:>24}{max(res[r]['compute_s'] for r in res):>22.2f}"
                  f"{diff:>26.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 80000, 320000])
    ap.add_argument("--classes", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--before", default=None, help="a checkout of earlier code: measure it too, size by size")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ddp", type=int, nargs="+", default=None, help="world sizes: gloo processes instead")
    ap.add_argument("--task", choices=["multiclass", "multilabel"], default="multiclass",
                    help="multilabel: about 3 labels a video, video_reduction='max' (Charades-like); one process only")
    args = ap.parse_args()
    if args.ddp:
        for n in args.sizes:
            ddp(n, args.classes, args.ddp)
        return
    if args.one is not None:
        print(json.dumps(one(args.one, args.classes, args.threads, args.task)))
        return
    mode = "multiclass, mean_logits" if args.task == "multiclass" else "multilabel (about 3 labels a video), max"
    print(f"# suite compute() at scale: exact mode, {mode}, 10 clips per video, {args.classes} classes, "
          f"one process, {args.threads} threads")
    print("compute: min (median) of 5; sort of the (C, N) scores: NumPy one thread / split over the threads "
          "(min of 5, alternating with compute) / torch.sort (once); peak extra: RSS during the first compute() "
          "minus RSS before it")
    print(f"{'':<7}{'clips':>8}{'state MB':>10}{'compute s':>18}{'sort s (np / threads / torch)':>31}"
          f"{'compute/sort':>20}{'peak extra MB':>15}{'/state':>8}")
    runs = [("after", None)] + ([("before", os.path.abspath(args.before))] if args.before else [])
    for n in args.sizes:
        for label, code in runs:
            env = dict(os.environ)
            if code is not None:
                env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
            res = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", str(n), "--classes", str(args.classes),
                                  "--threads", str(args.threads), "--task", args.task], capture_output=True, text=True,
                                 check=True, env=env,
                                 cwd=code or os.getcwd())
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{label:<7}", end="")
            ratios = f" {r['ratio_to_sort']:.2f} / {r['ratio_to_threaded_sort']:.2f} / {r['compute_s'] / r['sort_torch_s']:.2f}"
            print(f"{r['clips']:>8}{r['state_mb']:>10.0f}{r['compute_s']:>9.2f} ({r['compute_median_s']:5.2f})"
                  f"{r['sort_s']:>13.2f} / {r['sort_threads_s']:.2f} / {r['sort_torch_s']:.2f}{ratios:>22}"
                  f"{r['peak_extra_mb']:>15.0f}{r['peak_extra_over_state']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
