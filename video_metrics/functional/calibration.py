"""Calibration: ECE / RMS / MCE and reliability-diagram data (Guo et al., 2017).

Uniform binning uses Guo et al.'s intervals ``I_m = ((m-1)/M, m/M]`` with a confidence of 0 in
the first bin and a confidence of exactly 1.0 in the **last** bin (torchmetrics #3510 puts it in
a phantom extra bin). Membership is decided on the real numbers (see :func:`bin_index`): a
confidence exactly on an edge ``m/M`` lands in bin ``m``, whatever the dtype. Because the bins are fixed, uniform binning keeps O(bins) sum states.
Quantile (equal-mass) binning sorts all confidences at compute time: sample ``i`` of ``n`` in
increasing confidence goes to bin ``floor(i * M / n)``.

* ``l1`` (ECE): ``sum_m |B_m|/n * |acc(B_m) - conf(B_m)|``
* ``l2`` (RMS calibration error): ``sqrt(sum_m |B_m|/n * (acc - conf)**2)``
* ``max`` (MCE): ``max_m |acc(B_m) - conf(B_m)|`` over non-empty bins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from .checks import Layout, check_choice
from .classification import argmax_lowest, probabilities, valid_rows


def uniform_edges(n_bins: int, device=None) -> Tensor:
    """The ``n_bins + 1`` edges ``i / n_bins`` in float64 (each the nearest double to the real edge)."""
    return torch.arange(n_bins + 1, dtype=torch.float64, device=device) / n_bins


_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitter for float64


def bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """Bin of each confidence under Guo's intervals, decided on the real numbers: ``c`` is in
    bin ``i`` iff ``i/M < c <= (i+1)/M`` (``M = n_bins``), ``c = 0`` in bin 0, values outside
    [0, 1] clamped to the end bins.

    The confidence is taken as given (fp16/bf16/fp32 are widened to float64 exactly; float64
    stays float64), and ``ceil(c * M) - 1`` is evaluated on the *exact* product: ``p = c * M``
    rounded, plus its rounding error from Dekker's two-product (Veltkamp split of ``c``; ``M <
    2**26`` is exact in 26 bits), so no edge ``i/M`` is rounded onto the wrong side. A float32
    linspace of edges (or an fp32 ``c * M``) puts 0.33 and 0.34 into one bin at ``M = 100``.
    No host sync."""
    if not 1 <= n_bins < 2**26:
        raise ValueError(f"`n_bins` must be in [1, 2**26), got {n_bins}")
    c = confidence.double()
    p = c * n_bins
    t = c * _SPLIT
    hi = t - (t - c)
    lo = c - hi
    err = (hi * n_bins - p) + lo * n_bins  # c * M == p + err exactly
    up = torch.ceil(p)
    # ceil(p + err): p is the double nearest the exact product, so only an integer p can move
    b = torch.where((up == p) & (err > 0), up + 1, up) - 1
    return b.clamp_(0, n_bins - 1).long()


#: values binned at a time by :func:`bin_update` (bounds its float64 temporaries to a few MB)
BIN_CHUNK = 1 << 18


def bin_update(confidence: Tensor, correct: Tensor, weight: Tensor, n_bins: int) -> Tensor:
    """(3, n_bins) float64 sums per bin: count, confidence, correctness (no host sync). The values
    are binned :data:`BIN_CHUNK` at a time, in order: the same sums as one pass (each bin adds its
    values in the same order), with temporaries of a chunk (a multilabel block's every (row, class)
    pair would otherwise take ~50 bytes a pair)."""
    conf, corr, wt = confidence.reshape(-1), correct.reshape(-1), weight.reshape(-1)
    out = torch.zeros(3, n_bins, dtype=torch.float64, device=confidence.device)
    for lo in range(0, conf.numel(), BIN_CHUNK):
        part = slice(lo, lo + BIN_CHUNK)
        b = bin_index(conf[part], n_bins)
        w = wt[part].double()
        vals = torch.stack([w, conf[part].double() * w, corr[part].double() * w])
        out.scatter_add_(1, b[None, :].expand(3, -1), vals)
    return out


def quantile_bins(confidence: Tensor, correct: Tensor, n_bins: int):
    """Equal-mass bins at compute time. Returns ``(sums (3, n_bins), edges (n_bins + 1,))``."""
    n = confidence.numel()
    order = torch.argsort(confidence.double(), stable=True)
    conf = confidence.double()[order]
    corr = correct.double()[order]
    b = (torch.arange(n, device=confidence.device) * n_bins) // max(n, 1)
    sums = torch.zeros(3, n_bins, dtype=torch.float64, device=confidence.device)
    sums.scatter_add_(1, b[None, :].expand(3, -1), torch.stack([torch.ones_like(conf), conf, corr]))
    edges = torch.zeros(n_bins + 1, dtype=torch.float64, device=confidence.device)
    if n:
        first = torch.searchsorted(b, torch.arange(n_bins, device=b.device))
        edges[:-1] = conf[first.clamp_max(n - 1)]
        edges[-1] = conf[-1]
    return sums, edges


@dataclass
class ReliabilityData:
    """Per-bin data of a reliability diagram.

    ``confidence[m]`` and ``accuracy[m]`` are the mean confidence and the accuracy (fraction
    correct; for multilabel, the fraction of positive labels) of bin ``m``, NaN for empty bins;
    ``count[m]`` the number of samples (sample-label pairs for multilabel); ``edges`` the
    ``n_bins + 1`` bin edges.

    >>> import torch
    >>> from video_metrics.functional import reliability
    >>> rel = reliability(torch.tensor([0.9, 0.8, 0.3, 0.6]), torch.tensor([1, 1, 0, 0]), task="binary", n_bins=2,
    ...                   input="probs")
    >>> rel.count.tolist(), [round(a, 4) for a in rel.accuracy.tolist()]
    ([1, 3], [0.0, 0.6667])
    """

    confidence: Tensor
    accuracy: Tensor
    count: Tensor
    edges: Tensor
    ece: Tensor
    mce: Tensor


def binned_reliability(sums: Tensor, edges: Tensor) -> ReliabilityData:
    """Reliability-diagram data from ``(3, M)`` bin sums and the ``M + 1`` edges."""
    count = sums[0]
    nonempty = count > 0
    den = count.clamp_min(1e-300)
    conf = torch.where(nonempty, sums[1] / den, torch.full_like(count, float("nan")))
    acc = torch.where(nonempty, sums[2] / den, torch.full_like(count, float("nan")))
    return ReliabilityData(
        confidence=conf, accuracy=acc, count=count.round().long(), edges=edges.double(),
        ece=binned_calibration_error(sums, "l1"), mce=binned_calibration_error(sums, "max"),
    )


def binned_calibration_error(sums: Tensor, norm: str = "l1") -> Tensor:
    """ECE (``l1``), RMS calibration error (``l2``) or MCE (``max``) from ``(3, M)`` bin sums
    (count, confidence sum, accuracy sum); leading dimensions (bootstrap replicates) are kept.
    NaN when no sample was binned."""
    count, conf_sum, acc_sum = sums[..., 0, :], sums[..., 1, :], sums[..., 2, :]
    total = count.sum(-1, keepdim=True)
    nonempty = count > 0
    gap = torch.where(nonempty, (acc_sum - conf_sum).abs() / count.clamp_min(1e-300), torch.zeros_like(count))
    frac = count / total.clamp_min(1e-300)
    if norm == "l1":
        out = (frac * gap).sum(-1)
    elif norm == "l2":
        out = (frac * gap * gap).sum(-1).sqrt()
    elif norm == "max":
        out = gap.max(-1).values
    else:
        raise ValueError(f"`norm` must be one of ('l1', 'l2', 'max'), got {norm!r}")
    return torch.where(total[..., 0] > 0, out, torch.full_like(out, float("nan")))


def _temperature_derivatives(x: Tensor, target: Tensor, task: str, beta: float):
    """Mean NLL at inverse temperature ``beta`` and its first two derivatives in ``beta``
    (float64). Multiclass: ``f = mean[lse(beta x) - beta x_t]``, ``f' = mean[E_p x - x_t]``,
    ``f'' = mean[Var_p x] >= 0``. Multilabel/binary (one T for every label): ``f = mean[softplus(beta
    x) - y beta x]``, ``f' = mean[(sigmoid(beta x) - y) x]``, ``f'' = mean[s (1 - s) x^2] >= 0``."""
    z = beta * x
    if task == "multiclass":
        logp = z.log_softmax(1)
        p = logp.exp()
        ex = (p * x).sum(1)
        xt = x.gather(1, target[:, None]).squeeze(1)
        f = -(logp.gather(1, target[:, None]).squeeze(1)).mean()
        d1 = (ex - xt).mean()
        d2 = ((p * x * x).sum(1) - ex * ex).clamp_min(0).mean()
    else:
        y = target.double()
        s = z.sigmoid()
        f = (torch.nn.functional.softplus(z) - y * z).mean()
        d1 = ((s - y) * x).mean()
        d2 = (s * (1 - s) * x * x).mean()
    return float(f), float(d1), float(d2)


def fit_temperature(logits: Tensor, target: Tensor, task: str = "multiclass", bounds=(1e-2, 1e2),
                    rtol: float = 1e-10, max_iter: int = 100) -> float:
    """The temperature ``T > 0`` that minimises the mean negative log-likelihood of
    ``softmax(logits / T)`` (``task="multilabel"`` or ``"binary"``: of ``sigmoid(logits / T)``, one
    ``T`` for every label) — temperature scaling, Guo et al. 2017.

    In ``beta = 1 / T`` the NLL is convex (its second derivative is a variance), so Newton's
    method on the closed-form derivatives, kept inside a bracket where the derivative changes sign
    (bisection when a Newton step leaves it), converges to the exact minimiser; everything is in
    float64 and needs no autograd, so it runs under ``torch.inference_mode``. ``T`` is searched in
    ``bounds``; when the minimiser lies beyond (e.g. perfectly separated data, where the NLL keeps
    falling as ``T -> 0``), the nearest bound is returned. ``logits``: ``(N, C)`` (binary:
    ``(N,)``), finite; ``target``: class indices ``(N,)``, or 0/1 ``(N, C)`` (binary ``(N,)``).

    >>> import torch
    >>> from video_metrics.functional import fit_temperature
    >>> g = torch.Generator().manual_seed(0)
    >>> target = torch.randint(0, 5, (400,), generator=g)
    >>> logits = 3.0 * torch.randn(400, 5, generator=g) + 6.0 * torch.nn.functional.one_hot(target, 5)
    >>> round(fit_temperature(logits, target), 3)  # over-confident logits: T > 1
    1.703
    """
    if task not in ("multiclass", "multilabel", "binary"):
        raise ValueError(f"`task` must be one of ('multiclass', 'multilabel', 'binary'), got {task!r}")
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2 and 0 < bounds[0] < bounds[1]):
        raise ValueError(f"`bounds` must be (low, high) with 0 < low < high, got {bounds!r}")
    x = logits.detach().double()
    if task == "binary":
        x, target = x.reshape(-1, 1), target.reshape(-1, 1)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"`logits` must be a non-empty (N, C) tensor (binary: (N,)), got {tuple(logits.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("`logits` must be finite (no NaN or inf)")
    t = target.detach().to(x.device).long()
    if task == "multiclass":
        if t.shape != (x.shape[0],) or bool(((t < 0) | (t >= x.shape[1])).any()):
            raise ValueError(f"`target` must be (N,) class indices in [0, {x.shape[1]}), got shape {tuple(t.shape)}")
    elif t.shape != x.shape or bool(((t != 0) & (t != 1)).any()):
        raise ValueError(f"`target` must be 0/1 of shape {tuple(x.shape)}, got shape {tuple(t.shape)}")
    kernel = "multiclass" if task == "multiclass" else "multilabel"
    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]  # the bracket in beta = 1 / T
    if _temperature_derivatives(x, t, kernel, lo)[1] >= 0:
        return float(bounds[1])
    if _temperature_derivatives(x, t, kernel, hi)[1] <= 0:
        return float(bounds[0])
    beta = 1.0 if lo < 1.0 < hi else (lo + hi) / 2
    for _ in range(max_iter):
        _, d1, d2 = _temperature_derivatives(x, t, kernel, beta)
        if d1 > 0:
            hi = beta
        else:
            lo = beta
        step = d1 / d2 if d2 > 0 else math.inf
        nxt = beta - step
        if not (lo < nxt < hi):
            nxt = (lo + hi) / 2
        if abs(nxt - beta) <= rtol * beta or hi - lo <= rtol * beta:
            beta = nxt
            break
        beta = nxt
    return 1.0 / beta


# ------------------------------------------------- the calibration metric and its functional API
def calibration_layout(num_classes, task, n_bins, norm, binning, input, ignore_index) -> Layout:
    """The options of :class:`~video_metrics.metrics.CalibrationError` and :func:`calibration_error`."""
    layout = Layout.of(num_classes, task, input, ignore_index)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive int, got {n_bins!r}")
    check_choice("norm", norm, ("l1", "l2", "max"))
    check_choice("binning", binning, ("uniform", "quantile"))
    return layout


def confidence_and_correct(s: Tensor, t: Tensor, task: str, input: str, raw: Optional[Tensor] = None,
                           valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Multiclass: top-label confidence and whether the top-1 prediction is right. Multilabel:
    the probability of every (sample, label) pair and whether the label is positive.

    ``raw``: the scores as given; when they are float64 the confidences are computed from them
    in float64 (``s`` is the fp32 copy, which decides the prediction), so that a probability
    given in float64 is binned as given."""
    if raw is not None and raw.dtype == torch.float64:
        keep = valid[:, None] if valid is not None else torch.ones((), dtype=torch.bool, device=raw.device)
        p = probabilities(torch.where(keep, raw, torch.zeros((), dtype=raw.dtype, device=raw.device)), task, input)
    else:
        p = probabilities(s, task, input)
    if task == "multiclass":
        pred = argmax_lowest(s)
        return p.gather(1, pred[:, None]).squeeze(1), pred == t
    return p, t.bool()


def calibration_rows(layout: Layout, scores: Tensor, s: Tensor, t: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(confidence, correct, weight)`` of a checked batch (``scores`` as given, ``s, t, valid``
    from :func:`~video_metrics.functional.classification.prepare_rows`): what the bins count."""
    raw = scores[:, None] if layout.task == "binary" else scores
    conf, correct = confidence_and_correct(s, t, layout.rows_task, layout.input, raw=raw, valid=valid)
    return conf, correct, (valid if layout.rows_task == "multiclass" else valid[:, None].expand_as(conf))


def _binned(scores: Tensor, target: Tensor, num_classes, task, n_bins, norm, binning, input, ignore_index, owner):
    layout = calibration_layout(num_classes, task, n_bins, norm, binning, input, ignore_index)
    s, t, valid = valid_rows(layout, scores, target, owner, count_prob_like=True)
    conf, correct, w = calibration_rows(layout, scores, s, t, valid)
    if binning == "uniform":
        return bin_update(conf, correct, w, n_bins), uniform_edges(n_bins, conf.device)
    return quantile_bins(conf[w.bool()].reshape(-1), correct[w.bool()].reshape(-1), n_bins)


def calibration_error(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, task: str = "multiclass",
                      n_bins: int = 15, norm: str = "l1", binning: str = "uniform", input: str = "logits",
                      ignore_index: Optional[int] = None) -> Tensor:
    """ECE (``norm="l1"``), RMS (``"l2"``) or MCE (``"max"``) of all rows, the twin of
    :class:`~video_metrics.metrics.CalibrationError` (a confidence exactly on an edge ``m/M``
    falls in bin ``m``; ``binning="quantile"``: equal-mass bins).

    >>> p = torch.tensor([0.9, 0.8, 0.3, 0.6])  # bins (0, 0.5] and (0.5, 1]: gaps 0.3 and 0.1
    >>> calibration_error(p, torch.tensor([1, 1, 0, 0]), task="binary", n_bins=2, input="probs")
    tensor(0.1500, dtype=torch.float64)
    """
    sums, _ = _binned(scores, target, num_classes, task, n_bins, norm, binning, input, ignore_index, "calibration_error")
    return binned_calibration_error(sums, norm)


def reliability(scores: Tensor, target: Tensor, num_classes: Optional[int] = None, task: str = "multiclass",
                n_bins: int = 15, binning: str = "uniform", input: str = "logits",
                ignore_index: Optional[int] = None) -> ReliabilityData:
    """Reliability-diagram data of all rows (per-bin confidence, accuracy, count, edges, ECE,
    MCE), the twin of :meth:`~video_metrics.metrics.CalibrationError.reliability`.

    >>> rel = reliability(torch.tensor([0.9, 0.8, 0.3, 0.6]), torch.tensor([1, 1, 0, 0]), task="binary",
    ...                   n_bins=2, input="probs")
    >>> rel.count.tolist(), [round(x, 3) for x in rel.confidence.tolist()]
    ([1, 3], [0.3, 0.767])
    """
    return binned_reliability(*_binned(scores, target, num_classes, task, n_bins, "l1", binning, input, ignore_index,
                                       "reliability"))
