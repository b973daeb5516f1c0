"""Random and adversarial data sets shared by the tests (numpy in, torch out)."""
from __future__ import annotations

import numpy as np
import torch

KINDS = ("random", "ties", "no_positives", "never_predicted", "single", "all_correct", "all_wrong")


def multiclass(kind: str, n: int, c: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "single":
        n = 1
    s = rng.normal(size=(n, c)).astype(np.float32) * 2
    t = rng.integers(0, c, size=n)
    if kind == "ties":
        s = rng.integers(0, 3, size=(n, c)).astype(np.float32)
    elif kind == "no_positives":
        t = rng.integers(0, max(c // 2, 1), size=n)  # upper half of the classes never a target
    elif kind == "never_predicted":
        s[:, c - 1] = -1e4  # last class never predicted
    elif kind == "all_correct":
        t = s.argmax(1)
    elif kind == "all_wrong":
        t = (s.argmax(1) + 1) % c
    return torch.from_numpy(s), torch.from_numpy(t).long()


def multilabel(kind: str, n: int, c: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "single":
        n = 1
    s = rng.normal(size=(n, c)).astype(np.float32) * 2
    y = (rng.random((n, c)) < 0.3).astype(np.int64)
    if kind == "ties":
        s = rng.integers(-1, 2, size=(n, c)).astype(np.float32)
    elif kind == "no_positives":
        y[:, c // 2:] = 0
    elif kind == "never_predicted":
        s[:, c - 1] = -50.0
    elif kind == "all_correct":
        y = (s > 0).astype(np.int64)
    elif kind == "all_wrong":
        y = (s <= 0).astype(np.int64)
    return torch.from_numpy(s), torch.from_numpy(y)


def softmax_np(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def sigmoid_np(s: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-s))


def batches(x, size: int):
    return [x[i:i + size] for i in range(0, len(x), size)] or [x[:0]]


def binary(kind: str, n: int, c: int, seed: int):
    """(N,) scores of the positive class and (N,) 0/1 targets (``c`` is ignored)."""
    s, y = multilabel(kind, n, 1, seed)
    return s[:, 0].contiguous(), y[:, 0].contiguous()


def for_task(task: str, kind: str, n: int, c: int, seed: int):
    return {"multiclass": multiclass, "multilabel": multilabel, "binary": binary}[task](kind, n, c, seed)
