"""Grad-CAM and Grad-CAM++ for video models: per-frame heatmaps ``(N, T, H, W)`` in [0, 1].

One base class (:class:`_LayerCAM`) owns the hooks, the gradient, the upsampling and the
normalisation; each method only supplies its channel weights (as pytorch-grad-cam does).

* Gradients come from ``torch.autograd.grad`` with respect to the target layer's activations:
  parameters' ``.grad`` are never touched, hooks are removed and the model's train/eval mode is
  restored afterwards, even on error.
* Works when called under ``torch.no_grad()`` or ``torch.inference_mode()`` (Lightning
  validation): grad is re-enabled locally and inference tensors are cloned first.
* Layouts: ``layout`` is the layout of the clips the model takes, ``"NCTHW"`` (torchvision-style
  3D CNNs) or ``"NTCHW"`` (Hugging Face VideoMAE/TimeSformer); heatmaps are always ``(N, T, H, W)``.
* Transformers: pass ``reshape=TokenGrid(...)``; the block's token output is reshaped to a
  ``(N, D, t, h, w)`` grid through a temporary probe module, then back, so that Grad-CAM sees a
  grid. For models with a CLS head (TimeSformer) the last block's patch tokens get no gradient:
  target a block before the last (e.g. ``model.timesformer.encoder.layer[-2]``). VideoMAE's
  mean-pooling head gives every token of the last block a gradient.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GradCAM", "GradCAMPlusPlus", "TokenGrid", "normalize_per_clip"]


class TokenGrid:
    """Token sequence ``(N, L, D)`` <-> grid ``(N, D, t, h, w)``.

    ``order="thw"``: tokens time-major (VideoMAE: ``t`` = frames / tubelet size); ``"hwt"``:
    space-major, time-minor (TimeSformer). ``cls_token=True`` skips (and restores) a leading
    CLS token.
    """

    def __init__(self, t: int, h: int, w: int, cls_token: bool = False, order: str = "thw") -> None:
        if order not in ("thw", "hwt"):
            raise ValueError(f"`order` must be 'thw' or 'hwt', got {order!r}")
        self.t, self.h, self.w, self.cls_token, self.order = int(t), int(h), int(w), bool(cls_token), order

    @property
    def num_tokens(self) -> int:
        return self.t * self.h * self.w + int(self.cls_token)

    def to_grid(self, tokens: Tensor) -> Tensor:
        n, length, d = tokens.shape
        if length != self.num_tokens:
            raise ValueError(f"TokenGrid({self.t}, {self.h}, {self.w}, cls_token={self.cls_token}) expects "
                             f"{self.num_tokens} tokens, the layer gave {length}")
        x = tokens[:, 1:] if self.cls_token else tokens
        if self.order == "thw":
            return x.reshape(n, self.t, self.h, self.w, d).permute(0, 4, 1, 2, 3)
        return x.reshape(n, self.h, self.w, self.t, d).permute(0, 4, 3, 1, 2)

    def to_tokens(self, grid: Tensor, like: Tensor) -> Tensor:
        n, d = grid.shape[:2]
        if self.order == "thw":
            x = grid.permute(0, 2, 3, 4, 1).reshape(n, -1, d)
        else:
            x = grid.permute(0, 3, 4, 2, 1).reshape(n, -1, d)
        return torch.cat([like[:, :1], x], 1) if self.cls_token else x


def normalize_per_clip(cam: Tensor) -> Tensor:
    """Min-max normalise each clip's map over all of (T, H, W) (frames stay comparable);
    a constant map becomes 0."""
    flat = cam.reshape(cam.shape[0], -1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    rng = hi - lo
    out = torch.where(rng > 0, (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(flat))
    return out.reshape(cam.shape)


class _Probe(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class _LayerCAM:
    """Hooks, gradients, upsampling and normalisation; subclasses give ``_cam(A, g)``."""

    def __init__(self, model: nn.Module, target_layer: nn.Module, weights: str = "clip", layout: str = "NCTHW",
                 reshape: Optional[TokenGrid] = None, forward_fn: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        if weights not in ("clip", "frame"):
            raise ValueError(f"`weights` must be 'clip' or 'frame', got {weights!r}")
        if layout not in ("NCTHW", "NTCHW"):
            raise ValueError(f"`layout` must be 'NCTHW' or 'NTCHW', got {layout!r}")
        if not isinstance(target_layer, nn.Module):
            raise TypeError("`target_layer` must be an nn.Module of the model")
        self.model, self.target_layer, self.weights, self.layout = model, target_layer, weights, layout
        self.reshape, self.forward_fn = reshape, forward_fn

    # -- the model's logits
    def _logits(self, x: Tensor) -> Tensor:
        out = self.forward_fn(x) if self.forward_fn is not None else self.model(x)
        if not isinstance(out, Tensor):
            out = getattr(out, "logits", None)
            if out is None:
                raise TypeError("the model returned no tensor; pass forward_fn=lambda x: model(x).logits (or similar)")
        return out

    def _clip_shape(self, clips: Tensor) -> Tuple[int, int, int]:
        if clips.dim() != 5:
            raise ValueError(f"`clips` must be 5-D ({self.layout}), got shape {tuple(clips.shape)}")
        return (clips.shape[2], clips.shape[3], clips.shape[4]) if self.layout == "NCTHW" else \
            (clips.shape[1], clips.shape[3], clips.shape[4])

    def __call__(self, clips: Tensor, target: Optional[Union[int, Tensor]] = None) -> Tensor:
        """Heatmaps ``(N, T, H, W)`` in [0, 1] (detached, float32, on the clips' device) for
        ``target`` (int, or (N,) ints; ``None``: the predicted class)."""
        t, h, w = self._clip_shape(clips)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(False), torch.enable_grad():
                x = clips.clone()  # a normal tensor even when clips is an inference tensor
                cam = self._raw_cam(x, target)
            cam = cam.detach().float()
        finally:
            self.model.train(was_training)
        cam = F.interpolate(cam[:, None], size=(t, h, w), mode="trilinear", align_corners=False)[:, 0]
        return normalize_per_clip(cam.clamp_min(0))

    def _targets(self, logits: Tensor, target) -> Tensor:
        if target is None:
            return logits.argmax(1)
        if isinstance(target, int):
            return torch.full((logits.shape[0],), target, dtype=torch.long, device=logits.device)
        target = torch.as_tensor(target, device=logits.device).long().reshape(-1).clone()  # not an inference tensor
        if target.numel() != logits.shape[0]:
            raise ValueError(f"`target` must hold one class per clip ({logits.shape[0]}), got {target.numel()}")
        return target

    def _hooked(self, fn):
        """Run ``fn(layer_to_read)`` with the target layer (or a probe on its reshaped output)."""
        if self.reshape is None:
            return fn(self.target_layer)
        probe, grid = _Probe(), self.reshape

        def hook(module, inputs, output):
            tokens = output[0] if isinstance(output, tuple) else output
            new = grid.to_tokens(probe(grid.to_grid(tokens)), tokens)
            return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

        handle = self.target_layer.register_forward_hook(hook)
        try:
            return fn(probe)
        finally:
            handle.remove()

    def _activations_and_grads(self, x: Tensor, target) -> Tuple[Tensor, Tensor]:
        store = {}

        def run(layer):
            def keep(module, inputs, output):
                store["a"] = output[0] if isinstance(output, tuple) else output

            handle = layer.register_forward_hook(keep)
            try:
                logits = self._logits(x)
            finally:
                handle.remove()
            tgt = self._targets(logits, target)
            a = store["a"]
            if a.dim() != 5:
                raise ValueError(f"the target layer's output has shape {tuple(a.shape)}; Grad-CAM needs (N, C, T, H, W) "
                                 "activations: pick a 3D conv block, or pass reshape=TokenGrid(...) for tokens")
            score = logits.gather(1, tgt[:, None]).sum()
            (g,) = torch.autograd.grad(score, a)
            return a.detach(), g.detach()

        return self._hooked(run)

    def _raw_cam(self, x: Tensor, target) -> Tensor:
        a, g = self._activations_and_grads(x, target)
        return self._cam(a, g)

    def _cam(self, a: Tensor, g: Tensor) -> Tensor:  # (N, K, T', H', W') -> (N, T', H', W')
        raise NotImplementedError


class GradCAM(_LayerCAM):
    """Grad-CAM (Selvaraju et al. 2017) for video.

    ``weights="clip"``: one weight per channel, the gradient averaged over (T', H', W') — computed
    by Captum's ``LayerGradCam(relu_attributions=True)``. ``weights="frame"``: one weight per
    channel per time step, averaged over (H', W') only (as PySlowFast and mmaction2 do), so that
    each frame's map uses that frame's evidence."""

    def _raw_cam(self, x: Tensor, target) -> Tensor:
        if self.weights == "frame":
            return super()._raw_cam(x, target)
        from captum.attr import LayerGradCam

        with torch.no_grad():
            logits = self._logits(x)
        tgt = self._targets(logits, target)

        def run(layer):
            return LayerGradCam(self._logits, layer).attribute(x, target=tgt, relu_attributions=True)

        attr = self._hooked(run)
        if attr.dim() != 5:
            raise ValueError(f"the target layer gives attributions of shape {tuple(attr.shape)}; Grad-CAM needs "
                             "(N, C, T, H, W) activations: pick a 3D conv block, or pass reshape=TokenGrid(...)")
        return attr.detach()[:, 0]

    def _cam(self, a: Tensor, g: Tensor) -> Tensor:
        w = g.mean(dim=(3, 4), keepdim=True)  # frame weights (N, K, T', 1, 1)
        return F.relu((w * a).sum(1))


class GradCAMPlusPlus(_LayerCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018) generalised to 3D: per position,
    ``alpha = g**2 / (2 g**2 + sum(A) g**3)`` (0 where the denominator is 0), channel weights
    ``w = sum(alpha * relu(g))``; sums over (T', H', W') for ``"clip"`` weights, over (H', W') per
    time step for ``"frame"`` weights; map ``relu(sum_k w_k A_k)``."""

    def _cam(self, a: Tensor, g: Tensor) -> Tensor:
        dims = (2, 3, 4) if self.weights == "clip" else (3, 4)
        g2, g3 = g * g, g * g * g
        sum_a = a.sum(dim=dims, keepdim=True)
        denom = 2 * g2 + sum_a * g3
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
        w = (alpha * F.relu(g)).sum(dim=dims, keepdim=True)
        return F.relu((w * a).sum(1))
