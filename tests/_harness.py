"""One test harness for every metric class and its functional twin (as torchmetrics'
``MetricTester``): a :class:`Case` names the class, the function, the options and an independent
reference (scikit-learn or a NumPy hand computation); :func:`run_class`, :func:`run_functional`
and :func:`ddp_worker` give the three values the tests compare with it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

N = 150
C = 6
BATCH = 37  # several batches, the last one short


def data(task: str, seed: int = 0, n: int = N, c: int = C):
    """Logits with ties: multilabel and binary values rounded to 0.5, multiclass rows 10-19 equal
    to rows 0-9 (ties in every class's ranking, whatever the arithmetic of the softmax); a class
    that is never a target (multiclass) and a label that is never positive (multilabel)."""
    rng = np.random.default_rng(seed)
    if task == "binary":
        s = np.round(rng.normal(size=n) * 4) / 2
        return torch.tensor(s, dtype=torch.float32), torch.tensor(rng.random(n) < 0.4, dtype=torch.long)
    if task == "multiclass":
        s = rng.normal(size=(n, c)) * 2
        s[10:20] = s[:10]
        t = rng.integers(0, c - 1, size=n)  # class c-1 has no sample
        t[10:20] = t[:10]
        return torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.long)
    s = torch.tensor(np.round(rng.normal(size=(n, c)) * 4) / 2, dtype=torch.float32)
    y = rng.random((n, c)) < 0.35
    y[:, -1] = False
    return s, torch.tensor(y, dtype=torch.long)


@dataclass
class Case:
    """A metric class and its function with the same options, and the reference value."""

    name: str
    cls: Callable
    fn: Callable
    options: Dict[str, Any]
    task: str
    reference: Callable[[np.ndarray, np.ndarray], Any]
    probs: bool = False  # feed probabilities (input="probs")
    ignore: bool = False  # some targets equal ignore_index (multiclass)
    tolerance: float = 1e-12
    extra: Dict[str, Any] = field(default_factory=dict)

    def inputs(self, seed: int = 0):
        s, t = data(self.task, seed)
        if self.probs:
            s = s.sigmoid() if self.task != "multiclass" else s.softmax(1)
        if self.ignore:
            t = t.clone()
            t[::7] = -1
        return s, t

    def kwargs(self) -> Dict[str, Any]:
        out = dict(self.options)
        if self.task != "binary":
            out.setdefault("num_classes", C)
        out["task"] = self.task
        if self.probs:
            out["input"] = "probs"
        if self.ignore:
            out["ignore_index"] = -1
        return out


def plain(x) -> Any:
    """A result as NumPy: tensors, dicts of tensors, PR curves (lists of per-class arrays)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.double().numpy()
    if hasattr(x, "precision"):
        return {"precision": [plain(p) for p in x.precision], "recall": [plain(r) for r in x.recall],
                "thresholds": [plain(t) for t in x.thresholds]}
    return x


def run_class(case: Case, s: torch.Tensor, t: torch.Tensor, lo: int = 0, hi: Optional[int] = None):
    m = case.cls(**case.kwargs())
    hi = s.shape[0] if hi is None else hi
    for i in range(lo, hi, BATCH):
        m.update(s[i:min(i + BATCH, hi)], t[i:min(i + BATCH, hi)])
    return m


def run_functional(case: Case, s: torch.Tensor, t: torch.Tensor):
    return case.fn(s, t, **case.kwargs())


def shard(rank: int, n: int):
    """Rank 0 takes 60% of the rows, rank 1 the rest: uneven shards."""
    cut = (n * 3) // 5
    return (0, cut) if rank == 0 else (cut, n)


def padded_shard(case: Case, s: torch.Tensor, t: torch.Tensor, rank: int):
    """The rank's rows, the shorter rank padded to the longer one's length as a sampler pads:
    with rows whose target is ``ignore_index`` where the metric takes one (multiclass), so that
    the padding counts nowhere."""
    lo, hi = shard(rank, s.shape[0])
    s_r, t_r = s[lo:hi], t[lo:hi]
    longest = max(hi_ - lo_ for lo_, hi_ in (shard(r, s.shape[0]) for r in range(2)))
    if case.ignore and s_r.shape[0] < longest:
        k = longest - s_r.shape[0]
        s_r = torch.cat([s_r, s[:k]])
        t_r = torch.cat([t_r, torch.full((k,), -1, dtype=t.dtype)])
    return s_r, t_r


def ddp_worker(rank: int, world: int, cases):
    out = {}
    for case in cases:
        s, t = case.inputs()
        s_r, t_r = padded_shard(case, s, t, rank)
        m = case.cls(**case.kwargs())
        for i in range(0, s_r.shape[0], BATCH):
            m.update(s_r[i:i + BATCH], t_r[i:i + BATCH])
        out[case.name] = plain(m.compute())
    return out


def assert_close(got, want, tol: float, what: str) -> None:
    if isinstance(want, dict):
        assert set(got) >= set(want), (what, sorted(got), sorted(want))
        for k in want:
            assert_close(got[k], want[k], tol, f"{what}[{k}]")
        return
    if isinstance(want, list):
        assert len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, tol, f"{what}[{i}]")
        return
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=0,
                               atol=tol, equal_nan=True, err_msg=what)
