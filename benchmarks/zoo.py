"""The compatibility matrix of ``explain(model, clips)`` on the models people train.

Every architecture is built with random weights at a small input size — torchvision
(``weights=None``), pytorchvideo's builders (``pretrained=False``), Hugging Face from small
configs, and a user CNN that takes ``(N, T, C, H, W)`` — and explained with nothing but the model
and the clips (X-CLIP also gets ``forward_fn``, since its scores need text). One row each:

* ``method``: what ``method="auto"`` did, and for transformers also the Grad-CAM row;
* ``layer``: the layer the trace chose (and whether it is the one expected for that architecture);
* ``map``: the map shape, ``flat`` when all zero/constant (random weights can give that);
* ``s/clip``: wall time of ``explain()`` per clip on this machine's CPU;
* ``agree``: Spearman rank correlation (and max abs difference) between ``explain()``'s map and
  an independent Grad-CAM written below for that architecture with its layout known by hand
  (channels last for Swin3D, the CLS token and ``thw`` tuple for MViT, tokens ``hwt`` for
  TimeSformer, frames in the batch for X-CLIP, the slow pathway's frames for SlowFast, ...).

torchvision's wheels on the package index are built against the CUDA torch and do not load against
the CPU torch that ``make`` installs here, so this runs in a side environment::

    python -m venv ../zoo-venv && ../zoo-venv/bin/pip install torch torchvision pytorchvideo transformers
    ../zoo-venv/bin/pip install -e . && ../zoo-venv/bin/python benchmarks/zoo.py --out zoo.json

``--only a,b`` runs some rows (``user_ntchw`` and the Hugging Face rows need no torchvision: the
test suite runs them with ``--smoke``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import reference_timings  # noqa: E402
from video_metrics.explain import explain, normalize_per_clip, spearman  # noqa: E402


# ------------------------------------------------------------------------------------------ the independent Grad-CAM
def reference_map(forward: Callable, layer: nn.Module, clips, grids: Callable, target: torch.Tensor, frames: int,
                  size) -> torch.Tensor:
    """Frame-weight Grad-CAM at ``layer``: ``grids(output)`` returns the layer's maps as a list of
    ``(N, K, t, h, w)`` (layout written by hand per architecture); each step is repeated over the
    ``frames // t`` frames it covers, bilinear to ``size``, pathways summed, normalised per clip."""
    store = {}
    # a copy of a list output: pytorchvideo's SlowFast head writes its pooled features into the list it is given
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("o", list(o) if isinstance(o, list) else o))
    try:
        with torch.enable_grad():
            if isinstance(clips, list):
                xs = [c.clone().requires_grad_(True) for c in clips]
                logits = forward(list(xs))
            else:
                logits = forward(clips.clone().requires_grad_(True))
            logits = logits if isinstance(logits, torch.Tensor) else logits.logits
            out = store["o"]
            raw = out if isinstance(out, (list, tuple)) and all(isinstance(o, torch.Tensor) for o in out) else [out]
            raw = [r[0] if isinstance(r, tuple) else r for r in raw]
            grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), raw)
    finally:
        handle.remove()
    total = 0
    for a, g in zip(grids([r.detach() for r in raw]), grids(list(grads))):
        cam = F.relu((g.mean((3, 4), keepdim=True) * a).sum(1))
        idx = (torch.arange(frames) * cam.shape[1]) // frames
        cam = cam[:, idx]
        total = total + F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    return normalize_per_clip(total.clamp_min(0))


def _tokens(t, h, w, cls: int, order: str):
    """Tokens (N, cls + t·h·w, D) in ``order`` -> (N, D, t, h, w)."""
    sizes = {"t": t, "h": h, "w": w}

    def f(outs):
        x = outs[0][:, cls:]
        g = x.reshape(x.shape[0], *(sizes[a] for a in order), x.shape[-1])
        return [g.permute(0, 4, *(1 + order.index(a) for a in "thw"))]
    return f


def _frames_in_batch(n, t, h, w):
    def f(outs):
        x = outs[0][:, 1:]
        return [x.reshape(n, t, h, w, -1).permute(0, 4, 1, 2, 3)]
    return f


def _as_is(outs):
    return list(outs)


def _channels_last(outs):
    return [outs[0].permute(0, 4, 1, 2, 3)]


# ------------------------------------------------------------------------------------------ the zoo
class UserNTCHW(nn.Module):
    """A user's CNN that takes (N, T, C, H, W)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 16, 3, padding=1), nn.BatchNorm3d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv3d(16, 32, 3, stride=(2, 2, 2), padding=1), nn.BatchNorm3d(32), nn.ReLU())
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.block(self.stem(x.permute(0, 2, 1, 3, 4)))
        return self.head(x.mean((2, 3, 4)))


def _hf_small(name: str, size: int, frames: int):
    import transformers as tr

    common = dict(image_size=size, num_frames=frames, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=128, num_labels=10)
    if name == "videomae":
        return tr.VideoMAEForVideoClassification(tr.VideoMAEConfig(tubelet_size=2, patch_size=16, **common))
    if name == "timesformer":
        return tr.TimesformerForVideoClassification(tr.TimesformerConfig(patch_size=16, **common))
    if name == "vivit":
        return tr.VivitForVideoClassification(tr.VivitConfig(tubelet_size=[2, 16, 16], **common))
    cfg = tr.XCLIPConfig(
        text_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                         vocab_size=200, max_position_embeddings=16),
        vision_config=dict(image_size=size, patch_size=16, num_frames=frames, hidden_size=64, num_hidden_layers=3,
                           num_attention_heads=4, intermediate_size=128, mit_hidden_size=32, mit_intermediate_size=64,
                           mit_num_hidden_layers=1, mit_num_attention_heads=2),
        projection_dim=32, prompt_layers=1, prompt_num_attention_heads=2)
    return tr.XCLIPModel(cfg)


def zoo(smoke: bool = False) -> List[Dict]:
    """Each entry: name, family, build(), clips, forward_fn, expected layer, reference layout."""
    n = 2
    entries: List[Dict] = []

    def add(name, family, build, clips, layer, grids, forward_fn=None, rollout=False):
        entries.append(dict(name=name, family=family, build=build, clips=clips, layer=layer, grids=grids,
                            forward_fn=forward_fn, rollout=rollout))

    def tv(fn, **kw):
        def build():
            import torchvision.models.video as tvm

            return getattr(tvm, fn)(weights=None, num_classes=10, **kw)
        return build

    def pv(fn):
        def build():
            import pytorchvideo.models.hub as hub

            return getattr(hub, fn)(pretrained=False)
        return build

    r = lambda *s: torch.rand(*s, generator=torch.Generator().manual_seed(0))  # noqa: E731
    add("r3d_18", "torchvision", tv("r3d_18"), r(n, 3, 16, 112, 112), "layer4", _as_is)
    add("mc3_18", "torchvision", tv("mc3_18"), r(n, 3, 16, 112, 112), "layer4", _as_is)
    add("r2plus1d_18", "torchvision", tv("r2plus1d_18"), r(n, 3, 16, 112, 112), "layer4", _as_is)
    add("s3d", "torchvision", tv("s3d"), r(n, 3, 16, 224, 224), "features", _as_is)
    add("mvit_v1_b", "torchvision", tv("mvit_v1_b"), r(n, 3, 16, 224, 224), "blocks.14", _tokens(8, 7, 7, 1, "thw"))
    add("mvit_v2_s", "torchvision", tv("mvit_v2_s"), r(n, 3, 16, 224, 224), "blocks.14", _tokens(8, 7, 7, 1, "thw"))
    add("swin3d_t", "torchvision", tv("swin3d_t"), r(n, 3, 16, 112, 112), "norm", _channels_last)
    add("x3d_s", "pytorchvideo", pv("x3d_s"), r(n, 3, 13, 160, 160), "blocks.5.pool.pre_act", _as_is)
    add("slow_r50", "pytorchvideo", pv("slow_r50"), r(n, 3, 8, 224, 224), "blocks.4", _as_is)
    add("slowfast_r50", "pytorchvideo", pv("slowfast_r50"), [r(n, 3, 8, 224, 224), r(n, 3, 32, 224, 224)], "blocks.4",
        _as_is)
    size, frames = (32, 4) if smoke else (64, 8)
    hf_clips = r(n, frames, 3, size, size)
    g = size // 16
    for name, layer, grids in (
            ("videomae", "videomae.encoder.layer.2", _tokens(frames // 2, g, g, 0, "thw")),
            ("timesformer", "timesformer.encoder.layer.1", _tokens(frames, g, g, 1, "hwt")),
            ("vivit", "vivit.layers.1", _tokens(frames // 2, g, g, 1, "thw"))):
        add(name, "transformers", lambda name=name: _hf_small(name, size, frames), hf_clips, layer, grids, rollout=True)
    ids = torch.randint(0, 200, (10, 6), generator=torch.Generator().manual_seed(0))
    holder = {}

    def build_xclip():
        holder["m"] = _hf_small("xclip", size, frames)
        return holder["m"]

    add("xclip", "transformers", build_xclip, hf_clips, "vision_model.encoder.layers.1", _frames_in_batch(n, frames, g, g),
        forward_fn=lambda x: holder["m"](input_ids=ids, pixel_values=x).logits_per_video, rollout=True)
    add("user_ntchw", "user", UserNTCHW, r(n, 8, 3, 64, 64), "block", _as_is)
    return entries


def _frames_and_size(clips, layout: str):
    ref = max(clips, key=lambda c: c.shape[2]) if isinstance(clips, list) else clips
    frames = ref.shape[2] if layout == "NCTHW" else ref.shape[1]
    return frames, (ref.shape[3], ref.shape[4])


def run_entry(e: Dict, methods) -> List[Dict]:
    torch.manual_seed(0)
    model = e["build"]().eval()
    clips, fwd = e["clips"], e["forward_fn"]
    n = (clips[0] if isinstance(clips, list) else clips).shape[0]
    rows = []
    for method in methods:
        if method == "rollout" and not e["rollout"]:
            continue
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ex = explain(model, clips, method="auto" if method == "rollout" else "gradcam", forward_fn=fwd)
            except Exception as err:  # a row that fails is a result too
                rows.append(dict(name=e["name"], family=e["family"], method=method, error=f"{type(err).__name__}: {err}"))
                continue
        sec = (time.perf_counter() - t0) / n
        row = dict(name=e["name"], family=e["family"], method=ex.method, layer=ex.layer, expected=e["layer"],
                   map=list(ex.maps.shape), grids=[list(gr) for gr in ex.grids], flat=list(ex.flat),
                   reading=ex.reading, seconds_per_clip=round(sec, 3), layout=ex.layout,
                   warnings=[str(w.message)[:160] for w in caught if "explain" in str(w.message)])
        if ex.method != "rollout":
            frames, size = _frames_and_size(clips, ex.layout)
            forward = fwd if fwd is not None else model
            layer = model.get_submodule(e["layer"])
            ref = reference_map(forward, layer, clips, e["grids"], ex.target, frames, size)
            row["max_abs_diff"] = float((ref - ex.maps).abs().max())
            row["spearman"] = float(spearman(ex.maps, ref).mean()) if not ex.flat else None
        rows.append(row)
    return rows


def _fmt(row: Dict) -> str:
    if "error" in row:
        return f"{row['name']:<13} {row['method']:<9} ERROR {row['error'][:120]}"
    layer = row["layer"] if row["layer"] is not None else "-"
    mark = "" if row["layer"] is None or row["layer"] == row["expected"] else f" (expected {row['expected']})"
    agree = "-"
    if "max_abs_diff" in row:
        rho = "flat" if row["spearman"] is None else f"{row['spearman']:.3f}"
        agree = f"{rho} / {row['max_abs_diff']:.1e}"
    flat = "flat" if row["flat"] else "ok"
    return (f"{row['name']:<13} {row['family']:<13} {row['method']:<9} {layer + mark:<34} {str(tuple(row['map'])):<20} "
            f"{flat:<5} {row['seconds_per_clip']:>7.3f} {agree}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated row names (default: all)")
    ap.add_argument("--smoke", action="store_true", help="smaller Hugging Face configs (for the tests)")
    ap.add_argument("--out", default=None, help="write the rows as JSON")
    args = ap.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; random weights; N=2 clips per model")
    print(reference_timings())
    print(f"{'model':<13} {'family':<13} {'method':<9} {'layer chosen':<34} {'map (N,T,H,W)':<20} {'map':<5} "
          f"{'s/clip':>7} agree (Spearman / max|diff|) with a hand-written Grad-CAM at that layer")
    rows = []
    for e in zoo(args.smoke):
        if only and e["name"] not in only:
            continue
        for row in run_entry(e, ("rollout", "gradcam")):
            rows.append(row)
            print(_fmt(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    bad = [r for r in rows if "error" in r or (r.get("layer") is not None and r["layer"] != r["expected"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
