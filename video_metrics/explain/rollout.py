"""Attention rollout (Abnar & Zuidema 2020) for video transformers, as ``(N, T, H, W)`` maps.

Per layer: heads fused (``mean``/``max``/``min``), optionally the lowest ``discard_ratio`` of each
attention matrix zeroed, then ``Ã = 0.5·A + 0.5·I`` with rows renormalised; the rollout
``R = Ã_L ··· Ã_1`` is never formed: a row vector is propagated, ``r ← r·Ã_l`` for
``l = L … 1`` (memory O(tokens) per clip instead of O(tokens²) per product).

* VideoMAE (joint space-time attention, no CLS token, mean-pooling head): ``r`` starts uniform;
  tokens are time-major over tubelets of ``tubelet_size`` frames.
* TimeSformer (divided space-time): per block, temporal attention over each patch's frames,
  then spatial attention per frame over ``[CLS_t, patches_t]`` with the CLS outputs averaged
  over frames, so ``Ã_block = Ã_spatial · Ã_temporal`` over ``[CLS] + (patch, frame)`` tokens;
  ``r`` starts at the CLS token. Hugging Face returns only the spatial attention, so both are
  read by hooks on the attention-dropout modules.
* ViViT (joint space-time attention over ``[CLS] + (t, h, w)`` tubelet tokens, CLS head): ``r``
  starts at the CLS token.
* X-CLIP's vision tower (frames in the batch; each layer attends within a frame over
  ``[CLS] + (h, w)`` plus one cross-frame message token): a per-frame spatial rollout from each
  frame's CLS token; the message token's row and column are dropped and the rows renormalised, so
  the map says where each frame's CLS token reads, not how frames exchange information.
* MViT is refused: its pooling attention attends from pooled queries to pooled keys, so the
  attention matrices of successive layers are over different token grids and do not chain; use
  Grad-CAM (``explain(model, clips)`` picks it).
* Hugging Face's default SDPA attention returns no weights: the model is switched to eager
  attention for the call and back; a model that still returns no attention raises.

Rollout is class-agnostic (where the model attends, not why it chose a class); ``target`` is
accepted for a uniform call signature and does not change the map. Every map step is placed over
the frames its tokens cover (a tubelet of 2 frames covers 2 frames).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cam import normalize_per_clip
from .structure import place_on_frames

__all__ = ["AttentionRollout", "fuse_heads", "rollout_rows", "timesformer_rollout_rows", "rollout_arch", "ROLLOUT_ARCHS"]


def fuse_heads(attn: Tensor, head_fusion: str = "mean", discard_ratio: float = 0.0, protect_first: bool = False) -> Tensor:
    """``(B, heads, L, L)`` -> ``(B, L, L)`` rows of ``0.5·A + 0.5·I`` renormalised. With
    ``discard_ratio``, the lowest entries of each fused matrix are zeroed first (the first
    column is kept when ``protect_first``, e.g. a CLS token).

    >>> import torch
    >>> from video_metrics.explain import fuse_heads
    >>> fuse_heads(torch.full((1, 2, 3, 3), 1 / 3))[0, 0].tolist()  # (mean over heads + identity) / 2, rows sum to 1
    [0.6666666865348816, 0.1666666716337204, 0.1666666716337204]
    """
    if head_fusion == "mean":
        a = attn.mean(1)
    elif head_fusion == "max":
        a = attn.amax(1)
    elif head_fusion == "min":
        a = attn.amin(1)
    else:
        raise ValueError(f"`head_fusion` must be 'mean', 'max' or 'min', got {head_fusion!r}")
    a = a.float()
    if discard_ratio > 0:
        b, length, _ = a.shape
        flat = a.reshape(b, -1)
        k = int(flat.shape[1] * discard_ratio)
        if k > 0:
            idx = flat.topk(k, dim=1, largest=False).indices
            keep = torch.ones_like(flat, dtype=torch.bool).scatter_(1, idx, False)
            if protect_first:
                keep.view(b, length, length)[:, :, 0] = True
            a = (flat * keep).reshape(b, length, length)
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    a = 0.5 * a + 0.5 * eye
    return a / a.sum(-1, keepdim=True)


def rollout_rows(attentions: List[Tensor], start: Tensor, head_fusion: str = "mean", discard_ratio: float = 0.0,
                 protect_first: bool = False) -> Tensor:
    """Row-vector rollout: ``start (B, L) · Ã_L · … · Ã_1`` for per-layer ``(B, heads, L, L)``.

    >>> import torch
    >>> from video_metrics.explain import rollout_rows
    >>> uniform = torch.full((1, 2, 3, 3), 1 / 3)
    >>> rollout_rows([uniform, uniform], start=torch.tensor([[1.0, 0.0, 0.0]]))
    tensor([[0.5000, 0.2500, 0.2500]])
    """
    r = start.float()
    for attn in reversed(attentions):
        a = fuse_heads(attn, head_fusion, discard_ratio, protect_first)
        r = torch.bmm(r[:, None, :], a)[:, 0]
    return r


def timesformer_rollout_rows(spatial: List[Tensor], temporal: List[Tensor], batch: int, frames: int,
                             head_fusion: str = "mean", discard_ratio: float = 0.0) -> Tensor:
    """Divided space-time rollout from the CLS token. ``spatial[l]``: ``(B·T, heads, 1+N, 1+N)``
    (frame-major: row ``b·T + t``); ``temporal[l]``: ``(B·N, heads, T, T)`` (row ``b·N + p``).
    Returns ``(B, 1 + N·T)`` over ``[CLS] + (patch, frame)`` tokens in (p, t) order.

    >>> import torch
    >>> from video_metrics.explain import timesformer_rollout_rows
    >>> spatial = [torch.full((1 * 2, 1, 1 + 4, 1 + 4), 1 / 5)]  # 1 clip, 2 frames, 4 patches, one head
    >>> temporal = [torch.full((1 * 4, 1, 2, 2), 1 / 2)]
    >>> r = timesformer_rollout_rows(spatial, temporal, batch=1, frames=2)
    >>> tuple(r.shape), round(float(r.sum()), 4)  # [CLS] + 4 patches x 2 frames; the rollout keeps the mass
    ((1, 9), 1.0)
    """
    t = frames
    n = spatial[0].shape[-1] - 1
    r_cls = torch.ones(batch, device=spatial[0].device)
    r_pt = torch.zeros(batch, n, t, device=spatial[0].device)
    for s_attn, t_attn in zip(reversed(spatial), reversed(temporal)):
        s = fuse_heads(s_attn, head_fusion, discard_ratio, protect_first=True).view(batch, t, n + 1, n + 1)
        tm = fuse_heads(t_attn, head_fusion, discard_ratio).view(batch, n, t, t)
        # r · S: the spatial step (per frame, CLS shared and averaged over frames)
        # S[cls, cls] = mean_t s_t[0, 0]; S[cls, (q,t)] = s_t[0, 1+q] / T
        # S[(p,t), cls] = s_t[1+p, 0];    S[(p,t), (q,t)] = s_t[1+p, 1+q]
        new_cls = r_cls * s[:, :, 0, 0].mean(1) + torch.einsum("bpt,btp->b", r_pt, s[:, :, 1:, 0])
        new_pt = (r_cls[:, None, None] * s[:, :, 0, 1:].transpose(1, 2) / t
                  + torch.einsum("bpt,btpq->bqt", r_pt, s[:, :, 1:, 1:]))
        # r · Tm: the temporal step (CLS untouched)
        r_pt = torch.einsum("bqt,bqts->bqs", new_pt, tm)
        r_cls = new_cls
    return torch.cat([r_cls[:, None], r_pt.reshape(batch, n * t)], 1)


ROLLOUT_ARCHS = ("videomae", "timesformer", "vivit", "xclip")


def _hf_model(model: nn.Module) -> Tuple[Optional[nn.Module], Optional[str]]:
    """The Hugging Face video transformer in ``model`` (itself or a submodule) and its ``model_type``."""
    for mod in model.modules():
        kind = getattr(getattr(mod, "config", None), "model_type", None)
        if kind in ROLLOUT_ARCHS:
            return mod, kind
    return None, None


def _is_mvit(model: nn.Module) -> bool:
    return any(type(m).__name__ in ("MViT", "MultiscaleVisionTransformers") for m in model.modules())


def rollout_arch(model: nn.Module) -> Optional[str]:
    """The rollout this library can do on ``model`` (``"videomae"``, ``"timesformer"``,
    ``"vivit"``, ``"xclip"``), or None.

    >>> import torch
    >>> from video_metrics.explain import rollout_arch
    >>> rollout_arch(torch.nn.Conv3d(3, 8, 3)) is None  # not a Hugging Face video transformer
    True
    """
    return _hf_model(model)[1]


class AttentionRollout:
    """Attention rollout maps ``(N, T, H, W)`` in [0, 1] for Hugging Face ``VideoMAE``,
    ``TimeSformer``, ``ViViT`` and ``X-CLIP`` video models (input ``pixel_values``
    ``(N, T, 3, H, W)``), or a module that holds one (a LightningModule, a wrapper).

    ``arch="auto"`` reads ``config.model_type``. Rollout is class-agnostic (where the model attends,
    not why it chose a class); Grad-CAM (``explain(..., method="gradcam")``) is class-specific.

    >>> import torch
    >>> from video_metrics.explain import AttentionRollout
    >>> AttentionRollout(torch.nn.Linear(2, 2))
    Traceback (most recent call last):
    ...
    ValueError: `arch` must be one of ('videomae', 'timesformer', 'vivit', 'xclip') (or 'auto' on a Hugging Face VideoMAE, TimeSformer, ViViT or X-CLIP model), got None; other models: use Grad-CAM
    """

    def __init__(self, model: nn.Module, arch: str = "auto", head_fusion: str = "mean", discard_ratio: float = 0.0) -> None:
        hf, kind = _hf_model(model)
        if arch == "auto":
            arch = kind
        if arch not in ROLLOUT_ARCHS or hf is None:
            if _is_mvit(model):
                raise ValueError("attention rollout does not apply to MViT: its pooling attention attends from pooled "
                                 "queries to pooled keys, so the attention matrices of successive layers are over "
                                 "different token grids and do not chain into a rollout; use Grad-CAM "
                                 "(explain(model, clips, method='gradcam'))")
            raise ValueError(f"`arch` must be one of {ROLLOUT_ARCHS} (or 'auto' on a Hugging Face VideoMAE, TimeSformer, "
                             f"ViViT or X-CLIP model), got {arch!r}; other models: use Grad-CAM")
        if head_fusion not in ("mean", "max", "min"):
            raise ValueError(f"`head_fusion` must be 'mean', 'max' or 'min', got {head_fusion!r}")
        if not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"`discard_ratio` must be in [0, 1), got {discard_ratio!r}")
        self.model, self.hf, self.arch = model, hf, arch
        self.head_fusion, self.discard_ratio = head_fusion, discard_ratio

    def __call__(self, clips: Tensor, target=None) -> Tensor:
        """Maps for ``clips`` ``(N, T, 3, H, W)``; ``target`` is ignored (rollout is class-agnostic)."""
        if not isinstance(clips, Tensor) or clips.dim() != 5:
            raise ValueError(f"`clips` must be (N, T, 3, H, W), got {getattr(clips, 'shape', type(clips).__name__)}")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                rows = getattr(self, "_" + self.arch)(clips)
        finally:
            self.model.train(was_training)
        n, t, _, h, w = clips.shape
        cam = place_on_frames(rows.float().clamp_min(0), t, h, w)
        return normalize_per_clip(cam)

    # ------------------------------------------------------------------ reading attention
    def _attentions(self, run, select) -> List[Tensor]:
        """Run ``run()`` with eager attention, collecting ``output[1]`` of the modules ``select`` picks."""
        found: List[Tensor] = []
        mods = [m for name, m in self.hf.named_modules() if select(name, m)]
        handles = [m.register_forward_hook(lambda mod, i, o: found.append(o[1].detach()) if isinstance(o, tuple)
                                           and len(o) > 1 and isinstance(o[1], Tensor) else None) for m in mods]
        impl = getattr(self.hf.config, "_attn_implementation", None)
        switch = impl not in (None, "eager") and hasattr(self.hf, "set_attn_implementation")
        if switch:
            self.hf.set_attn_implementation("eager")
        try:
            run()
        finally:
            if switch:
                self.hf.set_attn_implementation(impl)
            for hd in handles:
                hd.remove()
        if len(found) != len(mods) or not found:
            raise RuntimeError("the model returned no attention weights (SDPA/flash attention keeps none); load it with "
                               "attn_implementation='eager'")
        return found

    def _videomae(self, clips: Tensor) -> Tensor:
        cfg = self.hf.config
        attns = self._attentions(lambda: self.hf(pixel_values=clips),
                                 lambda name, m: type(m).__name__ == "VideoMAESelfAttention")
        n, t = clips.shape[0], clips.shape[1]
        length = attns[0].shape[-1]
        start = torch.full((n, length), 1.0 / length, device=clips.device)
        r = rollout_rows(attns, start, self.head_fusion, self.discard_ratio)
        tub, p = cfg.tubelet_size, cfg.patch_size
        return r.reshape(n, t // tub, clips.shape[3] // p, clips.shape[4] // p)

    def _vivit(self, clips: Tensor) -> Tensor:
        cfg = self.hf.config
        attns = self._attentions(lambda: self.hf(pixel_values=clips), lambda name, m: type(m).__name__ == "VivitAttention")
        n, length = clips.shape[0], attns[0].shape[-1]
        start = torch.zeros(n, length, device=clips.device)
        start[:, 0] = 1.0
        r = rollout_rows(attns, start, self.head_fusion, self.discard_ratio, protect_first=True)
        tt, th, tw = cfg.tubelet_size
        grid = (clips.shape[1] // tt, clips.shape[3] // th, clips.shape[4] // tw)
        return r[:, 1:].reshape(n, *grid)  # tubelet tokens in (t, h, w) order, after CLS

    def _xclip(self, clips: Tensor) -> Tensor:
        vision = getattr(self.hf, "vision_model", self.hf)
        n, t, c, h, w = clips.shape
        pixels = clips.reshape(n * t, c, h, w)
        attns = self._attentions(lambda: vision(pixel_values=pixels),
                                 lambda name, m: name.endswith("self_attn") and ".layers." in name
                                 and name.startswith("vision_model" if vision is not self.hf else ""))
        cfg = getattr(self.hf.config, "vision_config", self.hf.config)
        g = h // cfg.patch_size, w // cfg.patch_size
        keep = 1 + g[0] * g[1]  # [CLS] + patches; the message token (last) is dropped
        within = []
        for a in attns:
            a = a[..., :keep, :keep].float()
            within.append(a / a.sum(-1, keepdim=True).clamp_min(1e-12))
        start = torch.zeros(n * t, keep, device=clips.device)
        start[:, 0] = 1.0
        r = rollout_rows(within, start, self.head_fusion, self.discard_ratio, protect_first=True)
        return r[:, 1:].reshape(n, t, *g)  # frames were folded clip-major: row n·T + t

    def _timesformer(self, clips: Tensor) -> Tensor:
        cfg = self.hf.config
        if getattr(cfg, "attention_type", "divided_space_time") != "divided_space_time":
            raise ValueError("AttentionRollout supports TimeSformer with attention_type='divided_space_time'")
        layers = self.hf.timesformer.encoder.layer if hasattr(self.hf, "timesformer") else self.hf.encoder.layer
        spatial: List[Tensor] = []
        temporal: List[Tensor] = []
        handles = []
        for layer in layers:
            handles.append(layer.temporal_attention.attention.attn_drop
                           .register_forward_hook(lambda m, i, o: temporal.append(o.detach())))
            handles.append(layer.attention.attention.attn_drop
                           .register_forward_hook(lambda m, i, o: spatial.append(o.detach())))
        try:
            self.hf(pixel_values=clips)
        finally:
            for hd in handles:
                hd.remove()
        if len(spatial) != len(layers) or len(temporal) != len(layers):
            raise RuntimeError("could not read the spatial and temporal attention of every TimeSformer block")
        n, t = clips.shape[0], clips.shape[1]
        rows = timesformer_rollout_rows(spatial, temporal, n, t, self.head_fusion, self.discard_ratio)
        gh = clips.shape[3] // cfg.patch_size
        gw = clips.shape[4] // cfg.patch_size
        # tokens (patch, frame) with patch = h * W + w: (N, h, w, T) -> (N, T, h, w)
        return rows[:, 1:].reshape(n, gh, gw, t).permute(0, 3, 1, 2)
