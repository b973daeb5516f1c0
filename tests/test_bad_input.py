"""Bad input: shape/dtype errors raise at once naming the argument and leave the state as it
was; value errors are counted on the device and raised at compute() with a clear message."""
import math

import pytest
import torch

import video_metrics as vm
from _factories import all_metrics

METRICS = all_metrics(5)


def snapshot(m):
    return {k: (v.clone() if isinstance(v, torch.Tensor) else [x.clone() for x in v]) for k, v in m.metric_state.items()}


def same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert len(a[k]) == len(b[k]) and all(torch.equal(x, y) for x, y in zip(a[k], b[k])), k


def good(m, n=8):
    if m.task == "binary":
        return torch.randn(n), torch.randint(0, 2, (n,))
    s = torch.randn(n, 5)
    t = torch.randint(0, 5, (n,)) if m.task == "multiclass" else torch.randint(0, 2, (n, 5))
    return s, t


@pytest.mark.parametrize("name", sorted(METRICS))
def test_shape_and_dtype_errors_leave_state_untouched(name):
    m = METRICS[name]()
    s, t = good(m)
    m.update(s, t)
    before, count = snapshot(m), m.update_count
    cases = [
        ((torch.randn(8, 4), t), ValueError, "scores"),
        ((torch.randn(8) if m.task != "binary" else torch.randn(8, 1), t), ValueError, "scores"),
        ((s.long(), t), TypeError, "scores"),
        (([[0.1] * 5] * 8, t), TypeError, "scores"),
        ((s, t[:5]), ValueError, "target"),
    ]
    if m.task in ("multiclass", "binary"):
        cases.append(((s, t.float()), TypeError, "target"))
    for args, exc, word in cases:
        with pytest.raises(exc, match=f"`{word}`"):
            m.update(*args)
        same(before, snapshot(m))
        assert m.update_count == count


@pytest.mark.parametrize("name", sorted(METRICS))
def test_value_errors_raised_at_compute_and_rows_masked(name):
    m = METRICS[name]()
    s, t = good(m, 20)
    s_bad = s.clone()
    s_bad[3, ...].view(-1)[-1] = float("nan")
    s_bad[4, ...].view(-1)[0] = float("inf")
    t_bad = t.clone()
    t_bad[7] = 5 if m.task == "multiclass" else 3
    m.update(s_bad, t_bad)
    with pytest.raises(ValueError) as err:
        m.compute()
    msg = str(err.value)
    assert "1 row(s) with a `target` outside" in msg and "2 row(s) with invalid `scores`" in msg
    assert "17 valid row(s) kept" in msg
    # nothing invalid leaked in, nothing valid lost: equal to the metric fed the good rows only
    keep = torch.ones(20, dtype=torch.bool)
    keep[[3, 4, 7]] = False
    ref = METRICS[name]()
    ref.update(s[keep], t[keep])
    m._check_rows = lambda: None  # compute past the error: the kept rows must equal the good ones
    m._computed = None
    a, b = m.compute(), ref.compute()
    if isinstance(a, dict):
        a, b = torch.stack(list(a.values())), torch.stack(list(b.values()))
    if hasattr(a, "precision") and isinstance(a.precision, list):
        a, b = torch.cat(a.precision), torch.cat(b.precision)
    assert torch.allclose(a.double(), b.double(), equal_nan=True)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_no_data_raises(name):
    m = METRICS[name]()
    with pytest.raises(ValueError, match="no valid data"):
        m.compute()


def test_probability_inputs_outside_unit_interval_are_bad():
    m = vm.CalibrationError(3, input="probs")
    m.update(torch.tensor([[0.2, 0.3, 0.5], [1.5, -0.5, 0.0]]), torch.tensor([2, 0]))
    with pytest.raises(ValueError, match=r"probability outside \[0, 1\]"):
        m.compute()


def test_constructor_errors_name_the_argument():
    for make, word in [
        (lambda: vm.TopKAccuracy(1), "num_classes"),
        (lambda: vm.TopKAccuracy(5, k=0), "k"),
        (lambda: vm.TopKAccuracy(5, average="weighted"), "average"),
        (lambda: vm.AUROC(5, task="regression"), "task"),
        (lambda: vm.AUROC(5, task="binary"), "num_classes"),
        (lambda: vm.AUROC(5, input="auto"), "input"),
        (lambda: vm.MeanAveragePrecision(5, empty_class="drop"), "empty_class"),
        (lambda: vm.MeanAveragePrecision(5, ap_mode="voc07"), "ap_mode"),
        (lambda: vm.CalibrationError(5, n_bins=0), "n_bins"),
        (lambda: vm.CalibrationError(5, norm="l3"), "norm"),
        (lambda: vm.PrecisionRecallF1(5, threshold=2.0), "threshold"),
        (lambda: vm.ConfusionMatrix(5, normalize="rows"), "normalize"),
    ]:
        with pytest.raises(ValueError, match=f"`{word}`"):
            make()


def test_state_dict_round_trip_mid_epoch():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(60, 5, generator=g), torch.randint(0, 5, (60,), generator=g)
    for name, make in METRICS.items():
        if make().task != "multiclass":
            continue
        a = make()
        a.persistent(True)
        a.update(s[:30], t[:30])
        b = make()
        b.persistent(True)
        b.load_state_dict(a.state_dict())
        b.update(s[30:], t[30:])
        ref = make()
        ref.update(s, t)
        x, y = b.compute(), ref.compute()
        if isinstance(x, dict):
            x, y = torch.stack(list(x.values())), torch.stack(list(y.values()))
        if hasattr(x, "precision"):
            x, y = torch.cat(x.precision), torch.cat(y.precision)
        assert torch.allclose(x.double(), y.double(), equal_nan=True), name


def test_nan_is_not_silently_a_number():
    m = vm.MeanAveragePrecision(3, empty_class="nan")
    m.update(torch.randn(4, 3), torch.tensor([[1, 0, 0]] * 4))
    assert math.isnan(m.compute().item())
