"""How good is an explanation? Pointing game, energy pointing game, deletion AUC and the
model-parameter randomisation check (Adebayo et al. 2018)."""
from __future__ import annotations

import copy
from typing import Callable, Optional

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn

__all__ = ["pointing_game", "energy_pointing_game", "deletion_auc", "spearman", "randomize_parameters",
           "randomization_check"]


def _box_masks(gt_boxes: Tensor, shape, tolerance_px: int = 0) -> Tensor:
    """(N, T, H, W) bool: inside any of the (N, [K,] T, 4) boxes grown by ``tolerance_px``."""
    n, t, h, w = shape
    b = gt_boxes.long()
    if b.dim() == 3:
        b = b[:, None]
    if b.shape[0] != n or b.shape[2] != t or b.shape[3] != 4:
        raise ValueError(f"`gt_boxes` must be (N, T, 4) or (N, K, T, 4) with N={n}, T={t}, got {tuple(gt_boxes.shape)}")
    ys = torch.arange(h)[None, None, None, :, None]
    xs = torch.arange(w)[None, None, None, None, :]
    x0, y0, x1, y1 = (b[..., i, None, None] for i in range(4))
    tol = int(tolerance_px)
    inside = (xs >= x0 - tol) & (xs < x1 + tol) & (ys >= y0 - tol) & (ys < y1 + tol)
    inside &= (x1 > x0) & (y1 > y0)  # an empty box (a hidden object) stays empty under the tolerance
    return inside.any(1)


def pointing_game(heatmaps: Tensor, gt_boxes: Tensor, tolerance_px: int = 0, reduction: str = "mean"):
    """Per frame, a hit when the heatmap's maximum lies in a true box grown by ``tolerance_px``
    pixels (Zhang et al. 2016; their tolerance is 15 px at 224 px). Frames with a flat (e.g.
    all-zero) map count as misses; frames whose boxes are all empty (no object to point at) are
    not scored. ``"mean"``: hit rate over the scored frames (NaN if none); ``"none"``: (N, T)
    bool (False where not scored).

    >>> import torch
    >>> from video_metrics.explain import pointing_game
    >>> maps = torch.zeros(1, 1, 8, 8)
    >>> maps[0, 0, 2, 5] = 1.0  # the peak at x = 5, y = 2
    >>> pointing_game(maps, torch.tensor([[[4, 0, 8, 4]]]))  # box (x0, y0, x1, y1)
    1.0
    """
    hm = heatmaps.detach().float().cpu()
    n, t, h, w = hm.shape
    inside = _box_masks(gt_boxes.cpu(), hm.shape, tolerance_px)
    flat = hm.reshape(n, t, -1)
    at = flat.argmax(-1)
    hit = inside.reshape(n, t, -1).gather(2, at[..., None])[..., 0]
    flat_map = flat.amax(-1) <= flat.amin(-1)
    hit = hit & ~flat_map
    if reduction != "mean":
        return hit
    scored = inside.flatten(2).any(-1)
    return hit[scored].float().mean().item() if scored.any() else float("nan")


def energy_pointing_game(heatmaps: Tensor, gt_boxes: Tensor, reduction: str = "mean"):
    """Per frame, the share of the (non-negative) heatmap's mass inside the true boxes (Wang et
    al. 2020, Score-CAM); 0 for frames with no mass. Random maps score the boxes' area share.
    Frames without an object (empty boxes) are left out of the mean (NaN if none).

    >>> import torch
    >>> from video_metrics.explain import energy_pointing_game
    >>> maps = torch.zeros(1, 1, 8, 8)
    >>> maps[0, 0, 2, 5], maps[0, 0, 7, 0] = 3.0, 1.0
    >>> energy_pointing_game(maps, torch.tensor([[[4, 0, 8, 4]]]))  # 3 of the 4 units of energy in the box
    0.75
    """
    hm = heatmaps.detach().float().cpu().clamp_min(0)
    inside = _box_masks(gt_boxes.cpu(), hm.shape, 0)
    total = hm.sum((2, 3))
    share = torch.where(total > 0, (hm * inside).sum((2, 3)) / total.clamp_min(1e-30), torch.zeros_like(total))
    if reduction != "mean":
        return share
    scored = inside.flatten(2).any(-1)
    return share[scored].mean().item() if scored.any() else float("nan")


@torch.no_grad()
def deletion_auc(model: Callable[[Tensor], Tensor], clips: Tensor, heatmaps: Tensor, steps: int = 10,
                 target: Optional[Tensor] = None, layout: str = "NCTHW", baseline: float = 0.0) -> Tensor:
    """Deletion curve AUC (Petsiuk et al. 2018, RISE), per clip: the most salient voxels of the clip
    (ranked over all of T, H, W) are set to ``baseline`` in ``steps`` equal parts, the softmax
    probability of ``target`` (default: the predicted class) is read after each, and the curve
    from 0 to 100% deleted is integrated with the trapezoid rule over [0, 1]. Lower is better.
    ``model`` maps clips to logits (pass ``lambda x: hf(pixel_values=x).logits`` for HF models).

    >>> import torch
    >>> from video_metrics.models import TinyVideoNet
    >>> from video_metrics.explain import deletion_auc, explain
    >>> _ = torch.manual_seed(0)
    >>> model, clips = TinyVideoNet(num_classes=4).eval(), torch.rand(2, 3, 8, 32, 32)
    >>> auc = deletion_auc(model, clips, explain(model, clips).maps, steps=4)
    >>> tuple(auc.shape), bool(((auc >= 0) & (auc <= 1)).all())
    ((2,), True)
    """
    if layout not in ("NCTHW", "NTCHW"):
        raise ValueError(f"`layout` must be 'NCTHW' or 'NTCHW', got {layout!r}")
    x = clips.detach().clone()
    n = x.shape[0]
    hm = heatmaps.detach().to(x.device).float()
    t, h, w = hm.shape[1:]
    order = hm.reshape(n, -1).argsort(1, descending=True)
    total = order.shape[1]
    logits = model(x)
    logits = logits if isinstance(logits, Tensor) else logits.logits
    tgt = logits.argmax(1) if target is None else torch.as_tensor(target, device=x.device).long().reshape(-1)
    probs = [logits.softmax(1).gather(1, tgt[:, None])[:, 0]]
    removed = torch.zeros(n, total, dtype=torch.bool, device=x.device)
    for s in range(1, steps + 1):
        upto = round(total * s / steps)
        removed.scatter_(1, order[:, :upto], True)
        m = removed.reshape(n, t, h, w)
        m = m[:, None] if layout == "NCTHW" else m[:, :, None]
        xs = torch.where(m, torch.full_like(x, baseline), x)
        out = model(xs)
        out = out if isinstance(out, Tensor) else out.logits
        probs.append(out.softmax(1).gather(1, tgt[:, None])[:, 0])
    p = torch.stack(probs, 1).double()
    return ((p[:, 1:] + p[:, :-1]) / 2).sum(1) / steps


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation between two maps of each clip (ties get average ranks): (N,).

    >>> import torch
    >>> from video_metrics.explain import spearman
    >>> spearman(torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([[10.0, 20, 40, 30]]))
    tensor([0.8000], dtype=torch.float64)
    """
    a = a.detach().double().cpu().reshape(a.shape[0], -1).numpy()
    b = b.detach().double().cpu().reshape(b.shape[0], -1).numpy()
    out = []
    for x, y in zip(a, b):
        rx, ry = rankdata(x), rankdata(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
        out.append(float((rx * ry).sum() / den) if den > 0 else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def randomize_parameters(model: nn.Module, num_modules: Optional[int] = None, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose top ``num_modules`` parametrised modules (in registration
    order from the end, i.e. from the logits down: Adebayo et al.'s cascading randomisation;
    ``None``: all) are re-initialised with ``reset_parameters()`` under ``seed``.

    >>> import torch
    >>> from video_metrics.models import TinyVideoNet
    >>> from video_metrics.explain import randomize_parameters
    >>> model = TinyVideoNet(num_classes=4)
    >>> rnd = randomize_parameters(model, num_modules=1, seed=0)
    >>> rnd is model, bool((rnd.head.weight == model.head.weight).all())  # a copy, its last layer redrawn
    (False, False)
    """
    rnd = copy.deepcopy(model)
    mods = [m for m in rnd.modules() if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))]
    chosen = mods if num_modules is None else mods[len(mods) - int(num_modules):]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in chosen:
            m.reset_parameters()
    return rnd


def randomization_check(make_explainer: Callable[[nn.Module], Callable[[Tensor], Tensor]], model: nn.Module,
                        clips: Tensor, target: Optional[Tensor] = None, num_modules: Optional[int] = None,
                        seed: int = 0) -> Tensor:
    """Model-parameter randomisation test: per-clip Spearman correlation between the maps of
    ``model`` and of :func:`randomize_parameters` ``(model)``, both for ``target``. A faithful
    method gives clearly lower correlation than two independently trained models do.
    ``make_explainer(m)`` builds the explainer for a model, e.g.
    ``lambda m: GradCAM(m, m.block3)``.

    >>> import torch
    >>> from video_metrics.models import TinyVideoNet
    >>> from video_metrics.explain import GradCAM, randomization_check
    >>> _ = torch.manual_seed(0)
    >>> corr = randomization_check(lambda m: GradCAM(m, m.block3), TinyVideoNet(num_classes=4).eval(),
    ...                            torch.rand(2, 3, 8, 32, 32))
    >>> tuple(corr.shape), bool(((corr >= -1) & (corr <= 1)).all())
    ((2,), True)
    """
    maps = make_explainer(model)(clips, target)
    rnd = randomize_parameters(model, num_modules, seed)
    return spearman(maps, make_explainer(rnd)(clips, target))
