"""Explanation quality on trained video transformers: attention rollout and Grad-CAM / Grad-CAM++
(through ``TokenGrid``) against the true boxes of the generated moving-object clips, next to a
random-map baseline, plus a temporal check on clips where the object is visible in some frames
only.

A tiny VideoMAE (joint space-time attention, mean pooling) and a tiny TimeSformer (divided
attention, CLS token) — Hugging Face ``transformers`` configs, hidden size 64, 4 heads, 4 x 4
patches of 32 x 32 frames — are trained from scratch on ``moving_object_clips`` for a fixed number
of steps (batches of 32, AdamW 1e-3; capped by a time budget) on the CPU, then evaluated on
held-out clips:

* pointing game (tolerance 4 px) and energy pointing game over the frames that show the object;
* the same for the untrained model (same architecture and seed, at initialisation): the object
  is the only high-contrast thing in these clips, so a map can point at it without the model
  having learned anything — the trained model must beat its own initialisation, not only random
  maps;
* temporal share: on clips where the object is hidden in some frames (occluded, late, leaving),
  the share of the map's mass in the frames that show it, against the share of such frames
  (what a map blind to time would get).

    .venv/bin/python benchmarks/explain_quality.py                 # VideoMAE, 900 steps (~2 min)
    .venv/bin/python benchmarks/explain_quality.py --arch both --steps 900 --out r.json

Not run by the tests (``--smoke`` is: a few steps, to keep the script working).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Dict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from video_metrics.data import moving_object_clips  # noqa: E402
from video_metrics.explain import (  # noqa: E402
    AttentionRollout,
    GradCAM,
    GradCAMPlusPlus,
    TokenGrid,
    energy_pointing_game,
    pointing_game,
)

FRAMES, SIZE, PATCH, TOL = 8, 32, 4, 4


def make_model(arch: str, layers: int, seed: int):
    import transformers as tr

    torch.manual_seed(seed)
    common = dict(image_size=SIZE, patch_size=PATCH, num_frames=FRAMES, hidden_size=64, num_hidden_layers=layers,
                  num_attention_heads=4, intermediate_size=128, num_labels=12, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    if arch == "videomae":
        return tr.VideoMAEForVideoClassification(tr.VideoMAEConfig(tubelet_size=2, **common))
    return tr.TimesformerForVideoClassification(tr.TimesformerConfig(**common))


def _pixels(clips) -> torch.Tensor:
    return clips.float_clips().permute(0, 2, 1, 3, 4).contiguous()  # (N, T, 3, H, W), the HF layout


def train(model, seconds: float, max_steps: int, seed: int) -> Dict[str, float]:
    data = moving_object_clips(3000, 1, FRAMES, SIZE, seed=seed + 1)
    x, y = _pixels(data), data.target
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds and step < max_steps:
        idx = torch.randint(0, len(y), (32,), generator=g)
        loss = F.cross_entropy(model(pixel_values=x[idx]).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    model.eval()
    return {"train_steps": step, "train_seconds": round(time.perf_counter() - t0, 1), "last_loss": round(float(loss.detach()), 4)}


def explainers(model, arch: str):
    fwd = lambda px: model(pixel_values=px).logits  # noqa: E731
    if arch == "videomae":
        layer, grid = model.videomae.encoder.layer[-1], TokenGrid(FRAMES // 2, SIZE // PATCH, SIZE // PATCH)
    else:  # the last block's patch tokens get no gradient (the head reads CLS): the one before
        layer = model.timesformer.encoder.layer[-2]
        grid = TokenGrid(FRAMES, SIZE // PATCH, SIZE // PATCH, cls_token=True, order="hwt")
    return {
        "rollout (mean heads)": AttentionRollout(model),
        "rollout (max heads, discard 0.9)": AttentionRollout(model, head_fusion="max", discard_ratio=0.9),
        "Grad-CAM (token grid)": GradCAM(model, layer, layout="NTCHW", reshape=grid, forward_fn=fwd, weights="frame"),
        "Grad-CAM++ (token grid)": GradCAMPlusPlus(model, layer, layout="NTCHW", reshape=grid, forward_fn=fwd,
                                                   weights="frame"),
    }


def _maps(fn, x: torch.Tensor, batch: int = 50) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def temporal_share(maps: torch.Tensor, visible: torch.Tensor):
    """Mean share of each clip's map mass in the frames showing the object, and the share of such frames."""
    mass = maps.clamp_min(0).sum((2, 3))  # (N, T)
    share = (mass * visible).sum(1) / mass.sum(1).clamp_min(1e-30)
    return float(share.mean()), float(visible.float().mean(1).mean())


def evaluate(model, arch: str, n_test: int, seed: int, untrained=None) -> Dict[str, object]:
    test = moving_object_clips(n_test, 1, FRAMES, SIZE, seed=seed + 9)
    x = _pixels(test)
    with torch.no_grad():
        acc = float((model(pixel_values=x).logits.argmax(1) == test.target).float().mean())
    # clips whose object is hidden in some frames but not all
    part = moving_object_clips(2 * n_test, 1, FRAMES, SIZE, seed=seed + 10, missing_evidence=1.0)
    vis = part.visible[:, 0]
    some = vis.any(1) & ~vis.all(1)
    xp = _pixels(part)[some]
    out: Dict[str, object] = {"top1": round(acc, 4), "test_clips": n_test, "partial_clips": int(some.sum())}
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand(n_test, FRAMES, SIZE, SIZE, generator=g)
    rows = {"random maps": (rand, torch.rand(int(some.sum()), FRAMES, SIZE, SIZE, generator=g))}
    for name, fn in explainers(model, arch).items():
        rows[name] = (_maps(fn, x), _maps(fn, xp))
    if untrained is not None:  # the same architecture at initialisation: what the data alone gives
        for name, fn in explainers(untrained, arch).items():
            if name.startswith("rollout (mean") or name.startswith("Grad-CAM ("):
                rows[f"untrained: {name}"] = (_maps(fn, x), _maps(fn, xp))
    for name, (maps, pmaps) in rows.items():
        share, base = temporal_share(pmaps, vis[some])
        out[name] = {"pointing_game": round(pointing_game(maps, test.boxes, TOL), 4),
                     "energy_pointing_game": round(energy_pointing_game(maps, test.boxes), 4),
                     "temporal_share": round(share, 4), "visible_frames_share": round(base, 4)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=["videomae", "timesformer", "both"], default="videomae")
    p.add_argument("--steps", type=int, default=900, help="training steps per model (batches of 32)")
    p.add_argument("--max-seconds", type=float, default=150.0, help="training time cap per model")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--test", type=int, default=200, help="held-out clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file for the figures")
    p.add_argument("--smoke", action="store_true", help="a few steps on a few clips, both models (keeps the script "
                                                       "working)")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    archs = ["videomae", "timesformer"] if a.arch == "both" or a.smoke else [a.arch]
    result: Dict[str, object] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for arch in archs:
        model = make_model(arch, 2 if a.smoke else a.layers, a.seed)
        init = copy.deepcopy(model).eval()
        info = train(model, a.max_seconds, 3 if a.smoke else a.steps, a.seed)
        info.update(evaluate(model, arch, 6 if a.smoke else a.test, a.seed, untrained=init))
        result[arch] = info
        print(f"\n{arch}: top-1 {info['top1']:.3f} after {info['train_steps']} steps ({info['train_seconds']} s)")
        print(f"{'method':<45}{'pointing':>10}{'energy':>10}{'temporal':>10}{'frames':>8}")
        for name, r in info.items():
            if isinstance(r, dict):
                print(f"{name:<45}{r['pointing_game']:>10.3f}{r['energy_pointing_game']:>10.3f}"
                      f"{r['temporal_share']:>10.3f}{r['visible_frames_share']:>8.3f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
