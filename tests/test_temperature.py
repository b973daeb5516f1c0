"""fit_temperature: the exact minimiser of the NLL of softmax(logits / T), checked against
scipy's bounded scalar minimiser; no autograd (runs under inference_mode)."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from video_metrics.functional import fit_temperature


def nll(x, t, task, temp):
    z = torch.as_tensor(x, dtype=torch.float64) / temp
    if task == "multiclass":
        return float(-z.log_softmax(1).gather(1, t[:, None]).mean())
    y = t.double().reshape(z.shape)
    return float((torch.nn.functional.softplus(z) - y * z).mean())


def data(task, scale, seed=0, n=400, c=7):
    g = torch.Generator().manual_seed(seed)
    if task == "multiclass":
        t = torch.randint(0, c, (n,), generator=g)
        x = torch.randn(n, c, generator=g)
        x[torch.arange(n), t] += 1.0
    elif task == "multilabel":
        t = (torch.rand(n, c, generator=g) < 0.3).long()
        x = torch.randn(n, c, generator=g) + 1.2 * (2 * t - 1)
    else:
        t = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, generator=g) + 1.2 * (2 * t - 1)
    return x * scale, t


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "binary"])
@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0])
def test_matches_scipy_minimiser(task, scale):
    x, t = data(task, scale)
    got = fit_temperature(x, t, task=task)
    ref = minimize_scalar(lambda temp: nll(x, t, task, temp), bounds=(1e-2, 1e2), method="bounded",
                          options={"xatol": 1e-12}).x
    assert got == pytest.approx(ref, rel=1e-4)
    assert nll(x, t, task, got) <= nll(x, t, task, 1.0) + 1e-12
    # over-confident logits (scale 4) need T > 1, under-confident (0.3) T < 1
    if scale == 4.0:
        assert got > 1.5
    if scale == 0.3:
        assert got < 0.7


def test_works_under_inference_mode_and_in_fp16():
    x, t = data("multiclass", 3.0)
    with torch.inference_mode():
        a = fit_temperature(x.half(), t)
    b = fit_temperature(x.half().float(), t)
    assert a == pytest.approx(b, rel=1e-12)


def test_separable_data_returns_the_bound_and_bad_input_is_refused():
    x = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    t = torch.tensor([0, 1])
    assert fit_temperature(x, t, bounds=(0.05, 20.0)) == 0.05
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="target"):
        fit_temperature(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="task"):
        fit_temperature(torch.zeros(3, 2), torch.tensor([0, 1, 1]), task="regression")
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(torch.zeros(3, 2), torch.tensor([0, 1, 1]), bounds=(2.0, 1.0))
