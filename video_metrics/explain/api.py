"""``explain(model, clips)``: any video classifier explained in one call, the map right or refused.

The model is traced once (:mod:`.trace`): every module's output is read as a map of the clips or
not, token orders are fixed by perturbation, and the layer to explain is the last map before the
resolution collapses whose map reaches the class score (see :func:`~.trace.choose_layer`). The
map is computed at that layer by Grad-CAM / Grad-CAM++ (:mod:`.cam`) or, for the transformers it
supports, by attention rollout (:mod:`.rollout`). Refused: a layout that two dimensions fit, a
layer whose output is not one map per clip, non-finite values. Warned: all-zero or constant maps,
with the likely cause and a better layer.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .cam import (
    captum_clip_cams,
    cam_from,
    flat_clips,
    frames_map,
    fresh_clips,
    layer_gradients,
    normalize_per_clip,
    targets_for,
    unreadable,
)
from .rollout import AttentionRollout, rollout_arch
from .structure import Clips, LayerMap, parse_clips
from .trace import Record, Trace, choose_layer, find_layer, run_model, trace_model

__all__ = ["explain", "Explanation", "guess_clips"]

METHODS = ("auto", "gradcam", "gradcam++", "rollout")


@dataclass(frozen=True)
class Explanation:
    """The result of :func:`explain`.

    ``maps``: ``(N, T, H, W)`` in [0, 1], normalised per clip, aligned with the input frames (of
    the pathway with the most frames); ``method``: ``"gradcam"``, ``"gradcam++"`` or
    ``"rollout"``; ``layer``: dotted module name (None for rollout); ``layout``: the clips' layout;
    ``weights``: ``"frame"``/``"clip"`` (None for rollout); ``predicted``, ``target``: ``(N,)``
    (the class explained); ``probs``: ``(N,)`` softmax probability of that class; ``confidence``:
    ``(N,)`` softmax probability of the predicted class; ``reading``: how
    the layer's output was read; ``grids``: the layer's (t, h, w) per pathway; ``reason``: why that
    layer; ``flat``: clips whose map is all zero or constant (warned).

    >>> import torch
    >>> from video_metrics.models import TinyVideoNet
    >>> from video_metrics.explain import explain
    >>> torch.manual_seed(0) and None
    >>> e = explain(TinyVideoNet(4).eval(), torch.rand(2, 3, 6, 16, 16))
    >>> e.maps.shape, e.method, e.layer, e.layout
    (torch.Size([2, 6, 16, 16]), 'gradcam', 'block3', 'NCTHW')
    """

    maps: Tensor
    method: str
    layer: Optional[str]
    layout: str
    weights: Optional[str]
    predicted: Tensor
    target: Tensor
    probs: Tensor
    confidence: Tensor
    reading: str = ""
    grids: Tuple[Tuple[int, int, int], ...] = ()
    reason: str = ""
    flat: Tuple[int, ...] = field(default=())

    def __repr__(self) -> str:
        return (f"Explanation(maps={tuple(self.maps.shape)}, method={self.method!r}, layer={self.layer!r}, "
                f"layout={self.layout!r}, weights={self.weights!r}, grids={self.grids})")

    def summary(self) -> Dict[str, Any]:
        """Plain values for logs and tables."""
        return {"method": self.method, "layer": self.layer, "layout": self.layout, "weights": self.weights,
                "reading": self.reading, "grids": [list(g) for g in self.grids], "reason": self.reason,
                "flat_clips": list(self.flat)}


def _first_conv_channels(model: nn.Module) -> Optional[int]:
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return int(m.in_channels)
    return None


def guess_clips(model: nn.Module, clips: Any, layout: Optional[str] = None) -> Clips:
    """:func:`~.structure.parse_clips`, falling back on the model's first convolution's input
    channels when neither dimension has 3."""
    try:
        return parse_clips(clips, layout)
    except ValueError as err:
        channels = _first_conv_channels(model)
        if layout is not None or "neither" not in str(err) or channels in (None, 3):
            raise
        return parse_clips(clips, None, channels)


def _better_layer(tr: Trace, chosen: str) -> Optional[str]:
    maps = tr.maps()
    names = [r.name for r in maps]
    if chosen not in names:
        return names[-1] if names else None
    i = names.index(chosen)
    blocks = [r.name for r in maps[:i] if r.block]
    return blocks[-1] if blocks else (names[i - 1] if i > 0 else None)


def _warn_flat(flat: List[int], n: int, layer: str, grad_zero: bool, better: Optional[str], method: str) -> None:
    if not flat:
        return
    which = "every clip" if len(flat) == n else f"clip(s) {flat[:8]}"
    if grad_zero:
        cause = (f"layer {layer!r} gets no gradient from the class score (its map is read only through a class token, "
                 "or it sits after the last map)")
    else:
        cause = (f"at layer {layer!r} every position's weighted activation is negative or zero after the ReLU (common "
                 "in untrained or random-weight models and in layers right before the head)")
    hint = f"; try layer={better!r}" if better else ""
    warnings.warn(f"explain(): the {method} map is all zero or constant for {which}: {cause}{hint}", stacklevel=3)


def _resolve_given(tr: Trace, model: nn.Module, layer: Any) -> Record:
    name, module = find_layer(model, layer)
    rec = tr.by_name(name)
    if rec is None:
        raise ValueError(f"layer {name!r} was not called in the model's forward")
    if rec.layer_map is None:
        raise ValueError(unreadable(rec, tr))
    return rec


def _gradcam(model: nn.Module, clips: Clips, tr: Trace, method: str, layer: Any, weights: str,
             forward_fn: Optional[Callable], tgt: Tensor) -> Tuple[Record, str, Tensor, bool]:
    """The chosen record, why, the raw map ``(N, T, H, W)`` and whether its gradient was all zero."""
    found: Dict[str, List[Tuple[Tensor, Tensor]]] = {}

    def check(layer_maps: List[LayerMap]) -> List[bool]:
        grads = layer_gradients(model, forward_fn, clips, layer_maps, tgt)
        for lm, pairs in zip(layer_maps, grads):
            found[lm.name] = pairs
        return [any(bool(g.ne(0).any()) for _, g in pairs) for pairs in grads]

    with torch.enable_grad():
        if layer is None:
            rec, reason = choose_layer(tr, model, check)
        else:
            rec, reason = _resolve_given(tr, model, layer), "given"
        lm = rec.layer_map
        if method == "gradcam" and weights == "clip":
            cams = captum_clip_cams(model, forward_fn, clips, lm, tgt)
            pairs = found.get(lm.name)
        else:
            pairs = found.get(lm.name) or layer_gradients(model, forward_fn, clips, [lm], tgt)[0]
            cams = cam_from(method, pairs, weights)
    grad_zero = pairs is not None and all(not bool(g.ne(0).any()) for _, g in pairs)
    return rec, reason, frames_map(cams, clips, rec.name), grad_zero


def explain(model: nn.Module, clips: Union[Tensor, Sequence[Tensor]], method: str = "auto", target=None,
            layer: Optional[Union[nn.Module, str]] = None, layout: Optional[str] = None, weights: str = "frame",
            forward_fn: Optional[Callable] = None, head_fusion: str = "mean", discard_ratio: float = 0.0) -> Explanation:
    """Explain a video classifier's decision on ``clips``: per-frame heatmaps and what they are.

    ``clips``: what the model takes — ``(N, C, T, H, W)`` or ``(N, T, C, H, W)`` (``layout=None``
    guesses from the colour channels and refuses when both dimensions could hold them), a list of
    pathway tensors (SlowFast), or Hugging Face ``pixel_values``. The model's output may be a
    tensor, a ``ModelOutput`` with ``.logits`` or a tuple whose first item is the logits; models
    that need more inputs (X-CLIP's text) take ``forward_fn(clips) -> logits``.

    ``method``: ``"auto"`` (attention rollout for Hugging Face VideoMAE, TimeSformer, ViViT and
    X-CLIP; Grad-CAM otherwise), ``"gradcam"``, ``"gradcam++"`` or ``"rollout"``. ``target``: the
    class to explain (None: the predicted class; an int; or one per clip). ``layer``: a module or
    dotted name (default: chosen by tracing the model, see :func:`~video_metrics.explain.trace.choose_layer`).
    ``weights``: ``"frame"`` (Grad-CAM weights per time step, as PySlowFast and mmaction2) or
    ``"clip"``. ``head_fusion``, ``discard_ratio``: rollout options.

    The model's train/eval mode, its parameters' ``.grad`` and its hooks are left as they were;
    works under ``torch.no_grad()`` and ``torch.inference_mode()``.

    >>> import torch
    >>> from video_metrics.models import TinyVideoNet
    >>> from video_metrics.explain import explain
    >>> _ = torch.manual_seed(0)
    >>> e = explain(TinyVideoNet(num_classes=4).eval(), torch.rand(2, 3, 8, 32, 32))
    >>> e.method, e.layer, tuple(e.maps.shape)
    ('gradcam', 'block3', (2, 8, 32, 32))
    >>> e.reading
    '(N, C, T, H, W) -> grid t=8, h=8, w=8'
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}")
    if weights not in ("frame", "clip"):
        raise ValueError(f"`weights` must be 'frame' or 'clip', got {weights!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    if method == "auto":
        method = "rollout" if (layer is None and rollout_arch(model) is not None) else "gradcam"
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False):
            c = fresh_clips(guess_clips(model, clips, layout))
            if method == "rollout":
                return _rollout(model, c, target, forward_fn, head_fusion, discard_ratio)
            tr = trace_model(model, c, forward_fn)
            tgt = targets_for(tr.logits, target)
            rec, reason, raw, grad_zero = _gradcam(model, c, tr, method, layer, weights, forward_fn, tgt)
    finally:
        model.train(was_training)
    flat = flat_clips(raw)
    _warn_flat(flat, c.n, rec.name, grad_zero, _better_layer(tr, rec.name), method)
    probs = tr.logits.float().softmax(1)
    return Explanation(normalize_per_clip(raw), method, rec.name, c.layout, weights, tr.logits.argmax(1), tgt,
                       probs.gather(1, tgt[:, None])[:, 0], probs.amax(1), rec.layer_map.describe(),
                       rec.layer_map.grids, reason, tuple(flat))


def _rollout(model: nn.Module, c: Clips, target, forward_fn, head_fusion: str, discard_ratio: float) -> Explanation:
    roll = AttentionRollout(model, head_fusion=head_fusion, discard_ratio=discard_ratio)
    if c.is_list or c.layout != "NTCHW":
        raise ValueError(f"attention rollout reads Hugging Face pixel_values (N, T, C, H, W); got clips {c.describe()}")
    with torch.no_grad():
        logits = run_model(model, forward_fn, c) if (forward_fn is not None or roll.arch != "xclip") else None
    if logits is None:
        raise ValueError("X-CLIP needs forward_fn= (its scores need the text inputs), e.g. "
                         "forward_fn=lambda x: model(input_ids=ids, attention_mask=mask, pixel_values=x).logits_per_video")
    maps = roll(c.pathways[0].detach())
    tgt = targets_for(logits, target)
    flat = flat_clips(maps)
    if flat:
        warnings.warn(f"explain(): the rollout map is constant for clip(s) {flat[:8]} (uniform attention)", stacklevel=3)
    probs = logits.float().softmax(1)
    return Explanation(maps, "rollout", None, c.layout, None, logits.argmax(1), tgt, probs.gather(1, tgt[:, None])[:, 0],
                       probs.amax(1), f"attention rollout ({roll.arch}, heads fused by {head_fusion})", (), "rollout", tuple(flat))
