"""The machine's reference timings, printed beside every CPU table: these VMs differ (NumPy's sort
by ~2.5x between them), so a table's seconds are read against a sort timed on the same machine in
the same run."""
from __future__ import annotations

import time

import numpy as np


def reference_timings(repeats: int = 3) -> str:
    """One line: NumPy's and torch's sort of 2^24 float32 values (min of ``repeats``, in place
    on a fresh copy), and torch's thread count."""
    import torch

    x = np.random.default_rng(0).random(1 << 24, dtype=np.float32)
    t_np, t_torch = [], []
    for _ in range(repeats):
        a = x.copy()
        t0 = time.perf_counter()
        a.sort()
        t_np.append(time.perf_counter() - t0)
        b = torch.from_numpy(x.copy())
        t0 = time.perf_counter()
        torch.sort(b)
        t_torch.append(time.perf_counter() - t0)
    return (f"machine reference: sort of 2^24 float32, NumPy {min(t_np):.3f} s, torch {min(t_torch):.3f} s "
            f"({torch.get_num_threads()} torch threads), min of {repeats}")


if __name__ == "__main__":
    print(reference_timings())
