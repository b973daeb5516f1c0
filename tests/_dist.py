"""Run a function on N gloo processes (CPU) and collect what each rank returns."""
from __future__ import annotations

import os
import pickle
import socket
import tempfile
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp

COUNTED = ("all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "all_gather_single", "barrier", "broadcast",
           "broadcast_object_list", "reduce", "gather", "scatter", "reduce_scatter", "all_to_all", "all_to_all_single")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_counter():
    """Count every torch.distributed collective issued from now on in this process."""
    counts = {"n": 0}
    for name in COUNTED:
        orig = getattr(dist, name, None)
        if orig is None or getattr(orig, "_counted", False):
            continue

        def wrapper(*a, __orig=orig, **k):
            counts["n"] += 1
            return __orig(*a, **k)

        wrapper._counted = True
        setattr(dist, name, wrapper)
    return counts


def _entry(rank, world, port, fn, args, outdir):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        result = fn(rank, world, *args)
    finally:
        dist.destroy_process_group()
    with open(os.path.join(outdir, f"{rank}.pkl"), "wb") as f:
        pickle.dump(result, f)


def run(fn, world: int, *args, start_method: str = "spawn"):
    with tempfile.TemporaryDirectory() as outdir:
        mp.start_processes(_entry, args=(world, free_port(), fn, args, outdir), nprocs=world, join=True,
                           start_method=start_method)
        out = []
        for r in range(world):
            with open(os.path.join(outdir, f"{r}.pkl"), "rb") as f:
                out.append(pickle.load(f))
        return out
