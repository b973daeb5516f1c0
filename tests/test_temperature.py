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


# ------------------------------------------------------------------ the suite's fit_temperature
import video_metrics as vm  # noqa: E402
from video_metrics.bootstrap import mix64 as _mix  # noqa: E402


def _videos(task="multiclass", n_videos=150, clips=4, c=6, scale=3.0, seed=1):
    """An over-confident model: calibrated logits multiplied by ``scale``."""
    g = torch.Generator().manual_seed(seed)
    vid = torch.arange(n_videos).repeat_interleave(clips)
    cid = torch.arange(clips).repeat(n_videos)
    if task == "multiclass":
        tv = torch.randint(0, c, (n_videos,), generator=g)
        t = tv[vid]
        x = torch.randn(n_videos * clips, c, generator=g)
        x[torch.arange(len(t)), t] += 1.0
    else:
        tv = (torch.rand(n_videos, c, generator=g) < 0.3).long()
        t = tv[vid]
        x = torch.randn(n_videos * clips, c, generator=g) + 0.8 * (2 * t - 1)
    return x * scale, t, vid, cid


def _suite(x, t, vid, cid, **kw):
    su = vm.VideoClassificationMetrics(x.shape[1], **kw)
    su.update(x, t, vid, cid)
    return su


def _ece(conf, correct, bins=15):
    """Uniform-bin ECE by hand (i/M < c <= (i+1)/M)."""
    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    idx = np.clip(np.ceil(conf * bins) - 1, 0, bins - 1).astype(int)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(conf) * abs(correct[m].mean() - conf[m].mean())
    return total


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_clip_and_mean_logits_levels_fit_the_exact_minimiser(task):
    x, t, vid, cid = _videos(task)
    su = _suite(x, t, vid, cid, task=task, video_reduction="mean_logits")
    clip = su.fit_temperature("clip")
    assert clip.temperature == pytest.approx(fit_temperature(x, t, task), rel=1e-9)
    assert clip.temperature > 1.5  # over-confident logits are cooled
    assert clip.nll_before == pytest.approx(nll(x.double(), t, task, 1.0), rel=1e-9)
    assert clip.nll_after == pytest.approx(nll(x.double(), t, task, clip.temperature), rel=1e-9)
    assert clip.nll_after < clip.nll_before and clip.ece_after < clip.ece_before
    video = su.fit_temperature("video")
    mean = torch.zeros(150, 6, dtype=torch.float64).index_add_(0, vid, x.double()) / 4
    tv = t[::4]
    assert video.temperature == pytest.approx(fit_temperature(mean, tv, task), rel=1e-9)
    assert video.num_samples == 150 and clip.num_samples == 600


def test_mean_probs_level_minimises_the_nll_of_the_mean_probabilities():
    x, t, vid, cid = _videos()
    su = _suite(x, t, vid, cid, video_reduction="mean_probs")
    fit = su.fit_temperature("video")
    tv = t[::4]

    def video_nll(temp):
        p = torch.softmax(x.double() / temp, 1).view(150, 4, 6).mean(1)
        return float(-p.gather(1, tv[:, None]).log().mean())

    assert fit.nll_after == pytest.approx(video_nll(fit.temperature), rel=1e-9)
    assert fit.nll_before == pytest.approx(video_nll(1.0), rel=1e-9)
    grid = np.exp(np.linspace(np.log(0.5), np.log(8), 2001))
    best = grid[int(np.argmin([video_nll(g) for g in grid]))]
    assert fit.temperature == pytest.approx(best, rel=2e-3)
    assert video_nll(fit.temperature) <= min(video_nll(fit.temperature * 1.001), video_nll(fit.temperature / 1.001))


def test_cross_fitted_ece_fits_one_half_and_measures_the_other():
    x, t, vid, cid = _videos(scale=2.5, seed=3)
    su = _suite(x, t, vid, cid, video_reduction="mean_logits")
    fit = su.fit_temperature("clip")
    half = (_mix(vid) & 1) == 0
    assert 0 < int(half.sum()) < len(half)
    conf, correct, temps = [], [], []
    for fit_on in (half, ~half):
        ta = fit_temperature(x[fit_on], t[fit_on])
        temps.append(ta)
        p = torch.softmax(x[~fit_on].double() / ta, 1)
        c_, pred = p.max(1)
        conf.append(c_.numpy())
        correct.append((pred == t[~fit_on]).numpy())
    assert fit.temperatures_halves == pytest.approx(tuple(temps), rel=1e-9)
    assert fit.ece_cross_fitted == pytest.approx(_ece(np.concatenate(conf), np.concatenate(correct)), abs=1e-9)
    # scaling fitted on the other half still fixes most of the over-confidence
    assert fit.ece_cross_fitted < fit.ece_before / 2
    assert set(fit.to_dict()) >= {"temperature", "ece_before", "ece_after", "ece_cross_fitted"}


@pytest.mark.parametrize("kw,level,msg", [
    (dict(video_reduction="max"), "video", "mean_logits"), (dict(video_reduction="vote"), "video", "mean_logits"),
    (dict(video_reduction="mean_probs", input="probs"), "clip", "input='probs'"), (dict(), "video", "video_reduction"),
    (dict(video_reduction="mean_logits"), "frame", "level"),
])
def test_fit_temperature_refuses_what_has_no_logits_to_scale(kw, level, msg):
    x, t, vid, cid = _videos()
    if kw.get("input") == "probs":
        x = torch.softmax(x, 1)
    su = _suite(x, t, vid, cid, **kw)
    with pytest.raises(ValueError, match=msg):
        su.fit_temperature(level)
    hist = vm.VideoClassificationMetrics(6, bins=20)
    with pytest.raises(ValueError, match="exact mode"):
        hist.fit_temperature("clip")
