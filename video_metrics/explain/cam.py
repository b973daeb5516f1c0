"""Grad-CAM and Grad-CAM++ for video models: per-frame heatmaps ``(N, T, H, W)`` in [0, 1].

One engine (:func:`layer_gradients`) owns the hooks and the gradient; each method only supplies
its channel weights (as pytorch-grad-cam does), and :func:`frames_map` places every map step over
the frames it was computed from and normalises per clip.

* The layer's output is read as ``(N, K, t, h, w)`` grids through its
  :class:`~video_metrics.explain.structure.Reading` (channels first or last, frames first, frames
  folded into the batch, token sequences with CLS/register tokens, tuple outputs such as MViT's
  ``(x, thw)``, lists of pathway maps such as SlowFast's); a hook hands the rest of the model the
  original structure rebuilt from the grid, so later in-place operations never touch what is read.
* Gradients come from ``torch.autograd.grad`` with respect to those grids (several layers in one
  backward): parameters' ``.grad`` are never touched, hooks are removed and the model's train/eval
  mode is restored afterwards, even on error; works under ``torch.no_grad()`` and
  ``torch.inference_mode()`` (Lightning validation): grad is re-enabled locally and the clips are
  cloned first.
* ``weights="clip"`` Grad-CAM is Captum's ``LayerGradCam(relu_attributions=True)`` on the grids;
  ``weights="frame"`` and Grad-CAM++ are computed here (Captum has neither).
* The clips: a tensor in ``layout`` ``"NCTHW"`` (torchvision, pytorchvideo) or ``"NTCHW"``
  (Hugging Face; ``None`` guesses from the colour channels and refuses when both dimensions could
  hold them), or a list of pathway tensors (SlowFast). Maps follow the pathway with the most frames.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .structure import Clips, LayerMap, Reading, get_item, parse_clips, place_on_frames, replace_items
from .trace import Trace, find_layer, model_logits, run_model, trace_model

__all__ = ["GradCAM", "GradCAMPlusPlus", "TokenGrid", "normalize_per_clip", "layer_gradients", "frames_map",
           "gradcam_weights", "gradcam_plus_plus_weights", "cam_from", "targets_for", "fresh_clips"]


class TokenGrid:
    """Token sequence ``(N, L, D)`` <-> grid ``(N, D, t, h, w)``, for a layer whose token layout is
    known to the caller (``explain()`` finds it by itself).

    ``order="thw"``: tokens time-major (VideoMAE: ``t`` = frames / tubelet size); ``"hwt"``:
    space-major, time-minor (TimeSformer). ``cls_token=True`` skips (and restores) a leading
    CLS token.

    >>> import torch
    >>> from video_metrics.explain import TokenGrid
    >>> grid = TokenGrid(t=2, h=2, w=2, cls_token=True)
    >>> grid.num_tokens, tuple(grid.to_grid(torch.zeros(3, 9, 16)).shape)
    (9, (3, 16, 2, 2, 2))
    """

    def __init__(self, t: int, h: int, w: int, cls_token: bool = False, order: str = "thw") -> None:
        if order not in ("thw", "hwt"):
            raise ValueError(f"`order` must be 'thw' or 'hwt', got {order!r}")
        self.t, self.h, self.w, self.cls_token, self.order = int(t), int(h), int(w), bool(cls_token), order

    @property
    def num_tokens(self) -> int:
        """Tokens per clip: ``t * h * w`` plus the class token if there is one."""
        return self.t * self.h * self.w + int(self.cls_token)

    def reading(self, item: Tuple[int, ...] = (), channels: int = 0) -> Reading:
        """The :class:`~video_metrics.explain.structure.Reading` of these tokens (``item``: where they sit in the layer's output)."""
        return Reading("tokens", item, self.t, self.h, self.w, channels, prefix=int(self.cls_token), order=self.order)

    def to_grid(self, tokens: Tensor) -> Tensor:
        """``(N, L, D)`` tokens as a ``(N, D, t, h, w)`` grid (the class token dropped); a wrong token count raises."""
        n, length, d = tokens.shape
        if length != self.num_tokens:
            raise ValueError(f"TokenGrid({self.t}, {self.h}, {self.w}, cls_token={self.cls_token}) expects "
                             f"{self.num_tokens} tokens, the layer gave {length}")
        return self.reading(channels=d).to_grid(tokens, n)

    def to_tokens(self, grid: Tensor, like: Tensor) -> Tensor:
        """A ``(N, D, t, h, w)`` grid back to tokens shaped as ``like`` (the class token's slot from ``like``)."""
        return self.reading(channels=grid.shape[1]).from_grid(grid, like)


def normalize_per_clip(cam: Tensor) -> Tensor:
    """Min-max normalise each clip's map over all of (T, H, W) (frames stay comparable);
    a constant map becomes 0.

    >>> import torch
    >>> from video_metrics.explain import normalize_per_clip
    >>> normalize_per_clip(torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])).flatten().tolist()
    [0.0, 1.0, 0.0, 0.0]
    """
    flat = cam.reshape(cam.shape[0], -1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    rng = hi - lo
    out = torch.where(rng > 0, (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(flat))
    return out.reshape(cam.shape)


def fresh_clips(clips: Clips) -> Clips:
    """Clones of the clips that autograd can use (inference tensors are not) and that ask for a
    gradient, so that a model with frozen parameters still has a graph to differentiate."""
    out = []
    for x in clips.pathways:
        y = x.detach().clone()
        if y.is_floating_point():
            y.requires_grad_(True)
        out.append(y)
    return clips.with_pathways(out)


def targets_for(logits: Tensor, target) -> Tensor:
    """``target`` (None: the predicted class; an int; or one class per clip) as an (N,) int64 tensor."""
    n = logits.shape[0]
    if target is None:
        return logits.argmax(1)
    if isinstance(target, int) and not isinstance(target, bool):
        t = torch.full((n,), target, dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(target, device=logits.device).long().reshape(-1).clone()  # not an inference tensor
        if t.numel() != n:
            raise ValueError(f"`target` must hold one class per clip ({n}), got {t.numel()}")
    c = logits.shape[1]
    if bool(((t < 0) | (t >= c)).any()):
        raise ValueError(f"`target` must be class indices in [0, {c}), got {t.tolist()}")
    return t


# ---------------------------------------------------------------------------------------- the engine
def _hook_grids(layers: Sequence[LayerMap], n: int, store: Dict[int, List[Tensor]], wrap=None):
    """Forward hooks that replace each layer's map tensors by grids (kept in ``store``) and hand
    the model the original structure rebuilt from them."""
    handles = []
    for i, lm in enumerate(layers):
        count = [0]

        def hook(module, inputs, output, i=i, lm=lm, count=count):
            k = count[0]
            count[0] += 1
            if k != lm.call:
                return None
            likes = [get_item(output, r.item) for r in lm.readings]
            grids = [r.to_grid(like, n) for r, like in zip(lm.readings, likes)]
            if wrap is not None:
                grids = list(wrap(*grids))
            store[i] = grids
            return replace_items(output, [r.item for r in lm.readings],
                                 [r.from_grid(g, like) for r, g, like in zip(lm.readings, grids, likes)])

        handles.append(lm.module.register_forward_hook(hook))
    return handles


def layer_gradients(model: nn.Module, forward_fn: Optional[Callable], clips: Clips, layers: Sequence[LayerMap],
                    target: Tensor) -> List[List[Tuple[Tensor, Tensor]]]:
    """One forward and one backward of the class score ``target``: for each layer, per reading,
    ``(activation, gradient)`` as ``(N, K, t, h, w)`` grids (detached, float32). Call with grad
    enabled and ``clips`` from :func:`fresh_clips`."""
    store: Dict[int, List[Tensor]] = {}
    handles = _hook_grids(layers, clips.n, store)
    try:
        logits = run_model(model, forward_fn, clips)
    finally:
        for h in handles:
            h.remove()
    missing = [layers[i].name for i in range(len(layers)) if i not in store]
    if missing:
        raise RuntimeError(f"layer(s) {missing} were not called in the forward")
    flat = [g for i in range(len(layers)) for g in store[i]]
    score = logits.gather(1, target[:, None]).sum()
    grads = torch.autograd.grad(score, flat, allow_unused=True)
    out, k = [], 0
    for i in range(len(layers)):
        pairs = []
        for g in store[i]:
            gr = grads[k]
            k += 1
            gr = torch.zeros_like(g) if gr is None else gr
            a, gr = g.detach().float(), gr.detach().float()
            if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(gr).all())):
                raise FloatingPointError(f"layer {layers[i].name!r} has non-finite activations or gradients (NaN or inf, "
                                         "e.g. float16 overflow): explain in float32")
            pairs.append((a, gr))
        out.append(pairs)
    return out


class _GridProbe(nn.Module):
    """Identity on the grids: the module Captum's ``LayerGradCam`` is pointed at."""

    def forward(self, *grids: Tensor):
        return grids


def captum_clip_cams(model: nn.Module, forward_fn: Optional[Callable], clips: Clips, layer: LayerMap,
                     target: Tensor) -> List[Tensor]:
    """Clip-weight Grad-CAM per reading, ``(N, t, h, w)``, by Captum's ``LayerGradCam`` on the grids."""
    from captum.attr import LayerGradCam

    probe = _GridProbe()
    handles = _hook_grids([layer], clips.n, {}, wrap=probe)

    def forward(*xs):
        return run_model(model, forward_fn, clips.with_pathways(xs))

    inputs = tuple(clips.pathways) if len(clips.pathways) > 1 else clips.pathways[0]
    try:
        attr = LayerGradCam(forward, probe).attribute(inputs, target=target, relu_attributions=True)
    finally:
        for h in handles:
            h.remove()
    attrs = attr if isinstance(attr, (tuple, list)) else (attr,)
    return [a.detach().float()[:, 0] for a in attrs]


def gradcam_weights(a: Tensor, g: Tensor, weights: str) -> Tensor:
    """Grad-CAM ``relu(sum_k w_k A_k)`` with ``w`` the gradient averaged over (t, h, w) (``"clip"``)
    or over (h, w) per time step (``"frame"``, as PySlowFast and mmaction2): ``(N, t, h, w)``."""
    dims = (2, 3, 4) if weights == "clip" else (3, 4)
    w = g.mean(dim=dims, keepdim=True)
    return F.relu((w * a).sum(1))


def gradcam_plus_plus_weights(a: Tensor, g: Tensor, weights: str) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018) in 3D: per position
    ``alpha = g**2 / (2 g**2 + sum(A) g**3)`` (0 where the denominator is 0), channel weights
    ``w = sum(alpha * relu(g))`` over (t, h, w) (``"clip"``) or (h, w) per step (``"frame"``)."""
    dims = (2, 3, 4) if weights == "clip" else (3, 4)
    g2, g3 = g * g, g * g * g
    sum_a = a.sum(dim=dims, keepdim=True)
    denom = 2 * g2 + sum_a * g3
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    w = (alpha * F.relu(g)).sum(dim=dims, keepdim=True)
    return F.relu((w * a).sum(1))


_METHODS = {"gradcam": gradcam_weights, "gradcam++": gradcam_plus_plus_weights}


def cam_from(method: str, pairs: Sequence[Tuple[Tensor, Tensor]], weights: str) -> List[Tensor]:
    """The maps of ``method`` (``gradcam``, ``gradcam++``) from ``(activation, gradient)`` grid pairs."""
    return [_METHODS[method](a, g, weights) for a, g in pairs]


def frames_map(cams: Sequence[Tensor], clips: Clips, layer_name: str) -> Tensor:
    """The per-reading maps ``(N, t, h, w)`` placed on the reference frames and summed (several
    pathways), ``(N, T, H, W)`` raw (not normalised). Non-finite values are refused."""
    total = None
    for cam in cams:
        placed = place_on_frames(cam.float(), clips.frames, clips.height, clips.width)
        total = placed if total is None else total + placed
    if not bool(torch.isfinite(total).all()):
        raise FloatingPointError(f"the map of layer {layer_name!r} has non-finite values (NaN or inf activations or "
                                 "gradients, e.g. float16 overflow): explain in float32")
    return total.clamp_min(0)


def flat_clips(raw: Tensor) -> List[int]:
    """Clips whose raw map is all zero or constant."""
    flat = raw.reshape(raw.shape[0], -1)
    return [i for i in range(flat.shape[0]) if not bool(flat[i].amax() > flat[i].amin())]


# ---------------------------------------------------------------------------------------- classes
class _LayerCAM:
    """Grad-CAM-style maps at one given layer. Subclasses name their ``method``."""

    method = "gradcam"

    def __init__(self, model: nn.Module, target_layer: Union[nn.Module, str], weights: str = "clip",
                 layout: Optional[str] = None, reshape: Optional[TokenGrid] = None,
                 forward_fn: Optional[Callable] = None) -> None:
        if weights not in ("clip", "frame"):
            raise ValueError(f"`weights` must be 'clip' or 'frame', got {weights!r}")
        if layout not in (None, "NCTHW", "NTCHW"):
            raise ValueError(f"`layout` must be 'NCTHW', 'NTCHW' or None (guess), got {layout!r}")
        if not isinstance(target_layer, (nn.Module, str)):
            raise TypeError("`target_layer` must be an nn.Module of the model (or its dotted name)")
        if reshape is not None and not isinstance(reshape, TokenGrid):
            raise TypeError("`reshape` must be a TokenGrid")
        self.layer_name, self.target_layer = find_layer(model, target_layer)
        self.model, self.weights, self.layout = model, weights, layout
        self.reshape, self.forward_fn = reshape, forward_fn
        self._traces: Dict[tuple, Trace] = {}
        self._traces_reused = False
        #: how the last call read the layer's output
        self.last_reading: Optional[str] = None

    def _trace(self, clips: Clips) -> Trace:
        """The model's structure for clips of this shape (traced once per shape; its logits are
        those of the clips traced first, so :attr:`_traces_reused` says when they are not these)."""
        key = (clips.layout, clips.is_list) + tuple((tuple(p.shape), p.dtype, str(p.device)) for p in clips.pathways)
        self._traces_reused = key in self._traces
        if not self._traces_reused:
            self._traces = {key: trace_model(self.model, clips, self.forward_fn, probe=self.reshape is None)}
        return self._traces[key]

    def layer_map(self, tr: Trace) -> LayerMap:
        rec = tr.by_name(self.layer_name)
        if rec is None:
            raise RuntimeError(f"layer {self.layer_name!r} was not called in the forward")
        if self.reshape is not None:
            item = next((it for it, shape in rec.items if len(shape) == 3), None)
            if item is None:
                raise ValueError(f"reshape=TokenGrid(...) needs a token sequence (N, L, D) from layer {self.layer_name!r}, "
                                 f"which gives {rec.summary}")
            return LayerMap(self.layer_name, self.target_layer, (self.reshape.reading(item),), rec.call)
        if rec.layer_map is None:
            raise ValueError(unreadable(rec, tr))
        return rec.layer_map

    def __call__(self, clips, target: Optional[Union[int, Tensor]] = None) -> Tensor:
        """Heatmaps ``(N, T, H, W)`` in [0, 1] (detached, float32, on the clips' device) for
        ``target`` (int, or (N,) ints; ``None``: the predicted class)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(False):
                c = fresh_clips(parse_clips(clips, self.layout))
                tr = self._trace(c)  # the structure only: it is cached per input shape
                lm = self.layer_map(tr)
                self.last_reading = lm.describe()
                logits = tr.logits
                if self._traces_reused:  # these clips' own scores
                    with torch.no_grad():
                        logits = run_model(self.model, self.forward_fn, c).detach()
                tgt = targets_for(logits, target)
                with torch.enable_grad():
                    if self.method == "gradcam" and self.weights == "clip":
                        cams = captum_clip_cams(self.model, self.forward_fn, c, lm, tgt)
                    else:
                        cams = cam_from(self.method, layer_gradients(self.model, self.forward_fn, c, [lm], tgt)[0],
                                        self.weights)
                raw = frames_map(cams, c, self.layer_name)
        finally:
            self.model.train(was_training)
        flat = flat_clips(raw)
        if flat:
            warnings.warn(f"{type(self).__name__}: the map of layer {self.layer_name!r} is all zero or constant for "
                          f"clip(s) {flat[:8]}: the layer's map gets no gradient from the class score (a head that "
                          "reads only a class token, or a layer after the last map) or every position argues against "
                          "the class; try an earlier block, or explain() to pick one", stacklevel=2)
        return normalize_per_clip(raw)


def unreadable(rec, tr: Trace) -> str:
    """Why a recorded layer's output cannot be read as one map per clip (the error ``explain()`` gives)."""
    why = f" ({rec.note})" if rec.note else ""
    n = tr.clips.n
    return (f"the output of layer {rec.name!r} is {rec.summary}{why}, which cannot be read as one map per clip for "
            f"{n} clip(s) of {tr.clips.frames} x {tr.clips.height} x {tr.clips.width} frames "
            "(a 5-D map, channels first or last; frames in the batch; or tokens of a grid seen earlier): "
            "pick another layer")


class GradCAM(_LayerCAM):
    """Grad-CAM (Selvaraju et al. 2017) for video at ``target_layer``.

    ``weights="clip"``: one weight per channel, the gradient averaged over (T', H', W') — computed
    by Captum's ``LayerGradCam(relu_attributions=True)`` on the layer's grid. ``weights="frame"``:
    one weight per channel per time step, averaged over (H', W') only (as PySlowFast and
    mmaction2 do), so that each frame's map uses that frame's evidence.

    >>> import torch
    >>> from video_metrics.models import TinyVideoNet
    >>> from video_metrics.explain import GradCAM
    >>> _ = torch.manual_seed(0)
    >>> model = TinyVideoNet(num_classes=4).eval()
    >>> maps = GradCAM(model, "block3")(torch.rand(2, 3, 8, 32, 32), target=torch.tensor([0, 3]))
    >>> tuple(maps.shape), float(maps.max())
    ((2, 8, 32, 32), 1.0)
    """

    method = "gradcam"

    def _cam(self, a: Tensor, g: Tensor) -> Tensor:
        return gradcam_weights(a, g, self.weights)


class GradCAMPlusPlus(_LayerCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018) generalised to 3D: per position,
    ``alpha = g**2 / (2 g**2 + sum(A) g**3)`` (0 where the denominator is 0), channel weights
    ``w = sum(alpha * relu(g))``; sums over (T', H', W') for ``"clip"`` weights, over (H', W') per
    time step for ``"frame"`` weights; map ``relu(sum_k w_k A_k)``.

    >>> import torch
    >>> from video_metrics.models import TinyVideoNet
    >>> from video_metrics.explain import GradCAMPlusPlus
    >>> _ = torch.manual_seed(0)
    >>> model = TinyVideoNet(num_classes=4).eval()
    >>> tuple(GradCAMPlusPlus(model, model.block3, weights="clip")(torch.rand(1, 3, 8, 32, 32)).shape)
    (1, 8, 32, 32)
    """

    method = "gradcam++"

    def _cam(self, a: Tensor, g: Tensor) -> Tensor:
        return gradcam_plus_plus_weights(a, g, self.weights)
