"""Small local modules with the structures of the video zoo (no torchvision needed), and an
independent Grad-CAM written with each layout known by hand, for the explanation tests.

* ``ChannelsLastNet``: a stage that outputs ``(N, T, H, W, C)`` (Swin3D);
* ``TupleTokensNet``: blocks that return ``(tokens, [t, h, w])`` with a CLS token read alone by
  the head (MViT), and a pooling conv that folds heads into the batch;
* ``TwoPathwayNet``: a list of two pathways in, a stage that returns a list of two maps (SlowFast);
* ``FramesInBatchTokensNet``: ``(N, T, C, H, W)`` in, frames folded into the batch as tokens with
  a CLS token per frame, the head reading the frame CLS tokens only (X-CLIP's vision tower);
* ``HeadConvNet``: a 1x1x1 conv after the last map, pooled to 1x1x1, then another 1x1x1 conv (X3D);
* ``TimeFirstNet``: a user CNN that takes ``(N, T, C, H, W)``;
* ``StridedTimeNet``: temporal stride 4, evidence in known frames.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsLastStage(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):  # (N, t, h, w, C)
        return x + F.gelu(self.fc(self.norm(x)))


class ChannelsLastNet(nn.Module):
    def __init__(self, classes: int = 4, dim: int = 12) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, dim, (2, 4, 4), stride=(2, 4, 4))
        self.stage = ChannelsLastStage(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).permute(0, 2, 3, 4, 1)  # (N, t, h, w, C)
        return self.head(self.stage(x).mean((1, 2, 3)))


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Linear(dim, dim)

    def mix(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, -1)
        a = (q @ k.transpose(-1, -2) / math.sqrt(x.shape[-1])).softmax(-1)
        x = x + self.proj(a @ v)
        return x + torch.tanh(self.mlp(x))


class TupleBlock(Attention):
    def forward(self, x, thw):
        return self.mix(x), list(thw)


class HeadPool(nn.Module):
    """A pooling conv over the tokens with the heads folded into the batch (as MViT's pool_q)."""

    def __init__(self, heads: int, dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.pool = nn.Conv3d(dim // heads, dim // heads, 1)

    def forward(self, x, thw):
        n, length, d = x.shape
        t, h, w = thw
        grid = x[:, 1:].reshape(n, t, h, w, self.heads, d // self.heads).permute(0, 4, 5, 1, 2, 3)
        pooled = self.pool(grid.reshape(n * self.heads, d // self.heads, t, h, w))  # (N·heads, d/heads, t, h, w)
        back = pooled.reshape(n, self.heads, d // self.heads, t, h, w).permute(0, 3, 4, 5, 1, 2).reshape(n, -1, d)
        return torch.cat([x[:, :1], back], 1)


class TupleTokensNet(nn.Module):
    """Patch embedding (2, 4, 4), CLS token, blocks returning (x, thw), head on CLS only."""

    def __init__(self, classes: int = 4, dim: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, dim, (2, 4, 4), stride=(2, 4, 4))
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 1 + 64, dim) * 0.1)
        self.pool = HeadPool(4, dim)
        self.blocks = nn.ModuleList(TupleBlock(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        g = self.embed(x)
        thw = list(g.shape[2:])
        tokens = g.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], 1) + self.pos[:, :1 + tokens.shape[1]]
        x = self.pool(x, thw)
        for blk in self.blocks:
            x, thw = blk(x, thw)
        return self.head(self.norm(x)[:, 0])


class PathwayStage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.slow = nn.Conv3d(3, 8, (1, 4, 4), stride=(1, 4, 4))
        self.fast = nn.Conv3d(3, 4, (1, 4, 4), stride=(1, 4, 4))

    def forward(self, xs):
        return [F.relu(self.slow(xs[0])), F.relu(self.fast(xs[1]))]


class TwoPathwayNet(nn.Module):
    """SlowFast-like: input [slow (N, 3, T/4, H, W), fast (N, 3, T, H, W)]."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stage = PathwayStage()
        self.head = nn.Linear(12, classes)

    def forward(self, xs):
        s, f = self.stage(xs)
        xs[0] = None  # pytorchvideo writes into the list it is given: the caller must pass a fresh one
        return self.head(torch.cat([s.mean((2, 3, 4)), f.mean((2, 3, 4))], 1))


class FrameBlock(Attention):
    def forward(self, x):  # (N·T, 1 + h·w, D)
        return self.mix(x)


class FramesInBatchTokensNet(nn.Module):
    """(N, T, 3, H, W) -> frames in the batch -> patch tokens + a CLS per frame -> blocks ->
    each frame's CLS -> mean over frames -> head (X-CLIP's vision tower and video head)."""

    def __init__(self, classes: int = 4, dim: int = 16, depth: int = 2, frames: int = 4) -> None:
        super().__init__()
        self.frames = frames
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.blocks = nn.ModuleList(FrameBlock(dim) for _ in range(depth))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        n, t, c, h, w = x.shape
        p = self.patch(x.reshape(n * t, c, h, w)).flatten(2).transpose(1, 2)  # (N·T, h·w, D)
        z = torch.cat([self.cls.expand(n * t, -1, -1), p], 1)
        for blk in self.blocks:
            z = blk(z)
        return self.head(z[:, 0].reshape(n, t, -1).mean(1))


class HeadConvNet(nn.Module):
    """X3D-like head: a 1x1x1 conv on the last map, pooled to 1x1x1, then another 1x1x1 conv."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 3, stride=(1, 2, 2), padding=1),
                                  nn.ReLU())
        self.pre_conv = nn.Conv3d(8, 16, 1)
        self.pre_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.post_conv = nn.Conv3d(16, 16, 1)
        self.post_act = nn.ReLU()
        self.proj = nn.Linear(16, classes)

    def forward(self, x):
        x = self.post_act(self.post_conv(self.pool(self.pre_act(self.pre_conv(self.body(x))))))
        return self.proj(x.flatten(1))


class TimeFirstNet(nn.Module):
    """A user CNN that takes (N, T, C, H, W)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv3d(8, 8, 3, stride=(1, 2, 2), padding=1), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        x = self.block(F.relu(self.conv(x.permute(0, 2, 1, 3, 4))))
        return self.head(x.mean((2, 3, 4)))


class StridedTimeNet(nn.Module):
    """Temporal stride 4 (kernel 4): map step k covers frames 4k..4k+3. Class 0 = red evidence."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv3d(3, 2, (4, 2, 2), stride=(4, 2, 2), bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0
            self.features.weight[1, 1] = 1.0

    def forward(self, x):
        a = F.relu(self.features(x))
        return torch.stack([a[:, 0].sum((1, 2, 3)), a[:, 1].sum((1, 2, 3))], 1)


# ------------------------------------------------------------------------------------------ reference
def reference_gradcam(forward, layer: nn.Module, inputs, to_grid, target, frames: int, size, weights: str = "frame",
                      item=None):
    """Grad-CAM written out for one layer whose layout the caller knows: ``to_grid`` turns the
    hooked tensor (``item`` of a tuple/list output, or each item of a list for pathways) into
    ``(N, K, t, h, w)``; every step is repeated over the ``frames // t`` frames it covers, then
    bilinear to ``size``; summed over pathways; normalised per clip."""
    store = {}

    def hook(m, i, o):
        store["o"] = o

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            if isinstance(inputs, (list, tuple)):
                xs = [x.clone().requires_grad_(True) for x in inputs]
                logits = forward(list(xs))
            else:
                logits = forward(inputs.clone().requires_grad_(True))
            o = store["o"]
            tensors = list(o) if item == "all" else [o[item] if item is not None else o]
            grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), tensors)
    finally:
        handle.remove()
    total = 0
    for a, g in zip(tensors, grads):
        A, G = to_grid(a.detach()), to_grid(g)
        dims = (3, 4) if weights == "frame" else (2, 3, 4)
        cam = F.relu((G.mean(dims, keepdim=True) * A).sum(1))  # (N, t, h, w)
        cam = cam.repeat_interleave(frames // cam.shape[1], dim=1)
        total = total + F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    flat = total.reshape(total.shape[0], -1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo)).reshape(total.shape)
