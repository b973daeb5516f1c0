"""Tracing a video model: which of its modules give a spatio-temporal map of the clips, and which
one to explain.

:func:`trace_model` runs one forward (no gradient) with a hook on every module and records, in the
order the modules finish, what each output is: a map of the clips (:class:`~.structure.LayerMap`),
an ambiguous tensor, or nothing map-like. Token sequences are read against the grids seen earlier
in the same forward (the patch embedding's ``(N, D, t, h, w)``, MViT's ``thw``); their **order** is
not guessed from shapes: :func:`probe_order` perturbs one grid cell of the input and finds which
token of the first token-producing module changes most (before any attention mixes tokens), which
fixes the order (``thw``, ``hwt``, ...), and for frames folded into the batch, which rows belong to
which clip. A model whose order cannot be established gets no token maps, not a guessed one.

:func:`choose_layer` takes the last map before the resolution collapses (1 x 1) — on a 3D CNN the
last stage, on X3D the head's pre-pool activation, on SlowFast the last stage's two pathways, on
Swin3D the final norm (channels last) — and checks with one backward that its map reaches the class
score; where it does not (a head that reads only the CLS token: TimeSformer, ViViT, MViT), it steps
back to the last block whose map does. :data:`PINNED` holds the architectures where the trace alone
picks a layer that is not the one to explain (X-CLIP: the prompt generator reads the last layer's
patch tokens, but the class score flows mostly through the frame CLS tokens, which read the layer
before it).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .structure import (
    Clips,
    LayerMap,
    Reading,
    all_orders,
    get_item,
    grid_triple,
    read_tensor,
    tensor_items,
)

__all__ = ["Record", "Trace", "trace_model", "probe_order", "choose_layer", "model_logits", "PINNED", "find_layer"]


def model_logits(out: Any) -> Tensor:
    """The logits of a model output: a tensor, a ``ModelOutput`` with ``.logits``, or a tuple/list
    whose first item is the logits; ``(N, C)`` (trailing size-1 dimensions dropped)."""
    if isinstance(out, Tensor):
        logits = out
    elif getattr(out, "logits", None) is not None and isinstance(out.logits, Tensor):
        logits = out.logits
    elif isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        logits = out[0]
    else:
        raise TypeError(f"the model returned {type(out).__name__}, not logits: pass forward_fn= a function of the clips "
                        "that returns the (N, num_classes) scores, e.g. lambda x: model(input_ids=ids, "
                        "pixel_values=x).logits_per_video")
    while logits.dim() > 2 and logits.shape[-1] == 1:
        logits = logits[..., 0]
    if logits.dim() != 2:
        raise ValueError(f"the model's scores have shape {tuple(logits.shape)}; expected (N, num_classes): pass "
                         "forward_fn= a function that returns them")
    return logits


def run_model(model: nn.Module, forward_fn: Optional[Callable], clips: Clips) -> Tensor:
    """The model's logits for the clips (through ``forward_fn`` when given)."""
    x = clips.model_input()
    return model_logits(forward_fn(x) if forward_fn is not None else model(x))


@dataclass
class Record:
    """One module call of the traced forward, in the order the calls finished."""

    index: int
    name: str
    module: nn.Module = field(repr=False)
    call: int
    summary: str
    layer_map: Optional[LayerMap] = None
    note: str = ""
    superseded: bool = False  # an enclosing module returned the same map
    block: bool = False  # an item of a ModuleList / Sequential
    items: Tuple[Tuple[Tuple[int, ...], Tuple[int, ...]], ...] = ()  # (where, shape) of each tensor in the output

    @property
    def collapsed(self) -> bool:
        """Whether the layer's map has no spatial extent (1 x 1): a pooled output, no place to point at."""
        return self.layer_map is not None and all(r.h * r.w == 1 for r in self.layer_map.readings)


@dataclass
class Trace:
    """One traced forward of the model on the clips: their logits and every module call
    (:class:`Record`, in the order the calls finished) with how its output reads as a map.
    """
    clips: Clips
    logits: Tensor
    records: List[Record]
    token_order: Optional[str] = None
    note: str = ""

    def maps(self) -> List[Record]:
        """Records that are maps of the clips (outermost name per output, resolution above 1 x 1)."""
        return [r for r in self.records if r.layer_map is not None and not r.superseded and not r.collapsed]

    def by_name(self, name: str) -> Optional[Record]:
        """The last call of the module called ``name`` that holds a map (else its last call; None if never called)."""
        hits = [r for r in self.records if r.name == name]
        if not hits:
            return None
        with_map = [r for r in hits if r.layer_map is not None]
        return with_map[-1] if with_map else hits[-1]


def _summary(out: Any, depth: int = 0) -> str:
    if isinstance(out, Tensor):
        return str(tuple(out.shape))
    if isinstance(out, (list, tuple)) and depth < 2:
        inner = ", ".join(_summary(v, depth + 1) for v in out[:6])
        return ("[" if isinstance(out, list) else "(") + inner + ("]" if isinstance(out, list) else ")")
    if isinstance(out, dict) or hasattr(out, "keys"):
        return type(out).__name__
    return type(out).__name__ if not isinstance(out, (int, float)) else repr(out)


_CHANNELS_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                   nn.GroupNorm, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                   nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd, nn.Upsample)


def _by_module(module: nn.Module, x: Tensor, found: List[Reading]) -> List[Reading]:
    """Readings consistent with what the module computes: convolutions, batch norms and pools
    give channels first; a linear layer or layer norm over the last dimension, channels last."""
    if isinstance(module, _CHANNELS_FIRST):
        return [r for r in found if r.kind in ("cthw", "fold-chw")]
    last = int(x.shape[-1])
    if (isinstance(module, nn.Linear) and module.out_features == last) or (
            isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == (last,)):
        return [r for r in found if r.kind in ("thwc", "fold-hwc", "tokens", "fold-tokens")]
    return found


class _Tracer:
    """The hook state of one traced forward."""

    def __init__(self, model: nn.Module, clips: Clips) -> None:
        self.model, self.clips = model, clips
        self.records: List[Record] = []
        self.calls: Dict[int, int] = {}
        self.grids: List[Tuple[int, int, int]] = []
        self.fold_grids: List[Tuple[int, int, int]] = []
        self.last_maps: Tuple[Any, ...] = ()
        parents = {}
        for name, mod in model.named_modules():
            for child_name, child in mod.named_children():
                parents[id(child)] = mod
        self.parents = parents
        self.last_map_record: Optional[Record] = None
        # readings of recent outputs (and of the clips), so that a module that keeps its input's shape
        # (activations, norms, residual blocks) keeps its input's reading when the shape alone is ambiguous
        self.known: Dict[int, Tuple[Any, Reading]] = {}
        self.by_shape: Dict[Tuple[int, ...], Reading] = {}  # the latest resolved reading of each shape
        for i, x in enumerate(clips.pathways):
            kind = "cthw" if clips.layout == "NCTHW" else "tchw"
            t = clips.frames_of(i)
            ch = int(x.shape[1] if clips.layout == "NCTHW" else x.shape[2])
            self._remember(x, Reading(kind, (), t, int(x.shape[3]), int(x.shape[4]), ch))

    def _remember(self, x: Tensor, reading: Reading) -> None:
        self.by_shape[tuple(x.shape)] = reading
        try:
            self.known[id(x)] = (weakref.ref(x), reading)
        except TypeError:
            pass

    def _recall(self, x: Any) -> Optional[Reading]:
        if not isinstance(x, Tensor):
            return None
        hit = self.known.get(id(x))
        if hit is None or hit[0]() is not x:
            return None
        return hit[1]

    def _resolve(self, module: nn.Module, inputs: Any, v: Tensor, found: List[Reading]) -> List[Reading]:
        """Narrow several readings of one tensor: by the module's kind, then by its input's reading."""
        narrowed = _by_module(module, v, found)
        if len(narrowed) == 1:
            return narrowed
        first = next((x for x in (inputs if isinstance(inputs, (tuple, list)) else (inputs,)) if isinstance(x, Tensor)),
                     None)
        before = self._recall(first)
        if before is None or tuple(first.shape) != tuple(v.shape):
            before = self.by_shape.get(tuple(v.shape))  # shape-preserving steps keep the layout of the last such tensor
        if before is not None:
            same = [r for r in found if r.kind == before.kind and r.grid == before.grid]
            if len(same) == 1:
                return same
        return found

    def _learn_grids(self, items) -> Optional[Tuple[int, int, int]]:
        c = self.clips
        thw = None
        for _, v in items:
            g = grid_triple(v)
            if g is not None:
                thw = g
                if g not in self.grids:
                    self.grids.append(g)
            elif isinstance(v, Tensor) and v.dim() in (4, 5) and v.shape[0] > 0:
                # any batch: MViT's pooling convs run over (N·heads) and still show the grid
                for r in read_tensor(v, int(v.shape[0]), c.frames, c.height, c.width):
                    if r.kind in ("cthw", "tchw", "thwc") and r.grid not in self.grids:
                        self.grids.append(r.grid)
                if v.dim() == 4 and v.shape[0] % c.n == 0:
                    for r in read_tensor(v, c.n, c.frames, c.height, c.width):
                        if r.grid not in self.fold_grids:
                            self.fold_grids.append(r.grid)
        return thw

    def hook(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        call = self.calls.get(id(module), 0)
        self.calls[id(module)] = call + 1
        rec = Record(len(self.records), name, module, call, _summary(output),
                     block=isinstance(self.parents.get(id(module)), (nn.ModuleList, nn.Sequential)))
        self.records.append(rec)
        if isinstance(output, dict) or (not isinstance(output, (Tensor, list, tuple)) and hasattr(output, "keys")):
            rec.note = "a mapping (model output), not read"
            return
        items = tensor_items(output)
        rec.items = tuple((item, tuple(v.shape)) for item, v in items if isinstance(v, Tensor))
        thw = self._learn_grids(items)
        c = self.clips
        readings: List[Reading] = []
        ambiguous = []
        per_pathway = len(c.pathways) > 1 and sum(isinstance(v, Tensor) for _, v in items) == len(c.pathways)
        for k, (item, v) in enumerate(items):
            if not isinstance(v, Tensor) or not v.is_floating_point():
                continue
            grids = [thw] if (thw is not None and v.dim() == 3) else self.grids + self.fold_grids
            found = read_tensor(v, c.n, c.frames, c.height, c.width, item, grids, self.fold_grids)
            if per_pathway:  # one map per pathway: none has more steps than its pathway has frames
                found = [r for r in found if r.t <= c.frames_of(k)]
            if len(found) > 1:
                found = self._resolve(module, inputs, v, found)
            if len(found) == 1:
                self._remember(v, found[0])
                readings.append(found[0])
            elif len(found) > 1:
                ambiguous.append((item, v, found))
        if ambiguous and not readings:
            item, v, found = ambiguous[0]
            rec.note = (f"ambiguous: {tuple(v.shape)} reads as " + " or as ".join(r.describe() for r in found))
            return
        if not readings:
            return
        if len(c.pathways) > 1 and len(readings) == len(c.pathways):
            chosen = tuple(readings)
        else:
            chosen = (readings[0],)
        rec.layer_map = LayerMap(name, module, chosen, call)
        maps = tuple(get_item(output, r.item) for r in chosen)
        prev = self.last_map_record
        if prev is not None and len(maps) == len(self.last_maps) and all(a is b for a, b in zip(maps, self.last_maps)):
            prev.superseded = True  # an enclosing module (or an in-place op) returned the same map: keep the outer name
        self.last_maps, self.last_map_record = maps, rec


def trace_model(model: nn.Module, clips: Clips, forward_fn: Optional[Callable] = None, probe: bool = True) -> Trace:
    """One forward without gradient, recording every module call's output structure (see the
    module docstring); with ``probe``, the token order is then fixed by :func:`probe_order`."""
    tracer = _Tracer(model, clips)
    handles = []
    for name, mod in model.named_modules():
        if not name:
            continue
        handles.append(mod.register_forward_hook(lambda m, i, o, name=name: tracer.hook(name, m, i, o)))
    try:
        with torch.no_grad():
            logits = run_model(model, forward_fn, clips)
    finally:
        for h in handles:
            h.remove()
    if not bool(torch.isfinite(logits).all()):
        raise FloatingPointError("the model's scores for these clips are not finite (NaN or inf): nothing to explain")
    tr = Trace(clips, logits.detach(), tracer.records)
    if probe:
        _fix_orders(tr, model, forward_fn)
    return tr


# ---------------------------------------------------------------------------------------- token order
class _Stop(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__("stop")
        self.value = value


def _output_at(model: nn.Module, forward_fn: Optional[Callable], clips: Clips, record: Record) -> Any:
    """The output of ``record``'s module call for ``clips``; the forward stops there."""
    count = [0]

    def hook(m, i, o):
        k = count[0]
        count[0] += 1
        if k == record.call:
            raise _Stop(o)

    handle = record.module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            run_model(model, forward_fn, clips)
    except _Stop as stop:
        return stop.value
    finally:
        handle.remove()
    raise RuntimeError(f"module {record.name!r} was not called {record.call + 1} time(s) in the forward")


def _perturbed(clips: Clips, cell: Tuple[int, int, int], grid: Tuple[int, int, int]) -> Clips:
    """Clip 0 with one grid cell of every pathway brightened (the frames the cell spans)."""
    ct, ch, cw = cell
    t, h, w = grid
    H, W = clips.height, clips.width
    out = []
    for i, x in enumerate(clips.pathways):
        frames = clips.frames_of(i)
        f0, f1 = ct * frames // t, max((ct + 1) * frames // t, ct * frames // t + 1)
        y0, y1 = ch * H // h, max((ch + 1) * H // h, ch * H // h + 1)
        x0, x1 = cw * W // w, max((cw + 1) * W // w, cw * W // w + 1)
        x = x.detach().clone()
        bump = 4.0 * float(x.float().std()) + 1.0
        if clips.layout == "NCTHW":
            x[0, :, f0:f1, y0:y1, x0:x1] += bump
        else:
            x[0, f0:f1, :, y0:y1, x0:x1] += bump
        out.append(x)
    return clips.with_pathways(out)


def _index(cell: Tuple[int, ...], sizes: Tuple[int, ...], order: str, axes: str) -> int:
    """Flat index of ``cell`` (given in ``axes`` order) in a sequence laid out in ``order``."""
    pos = dict(zip(axes, cell))
    size = dict(zip(axes, sizes))
    idx = 0
    for a in order:
        idx = idx * size[a] + pos[a]
    return idx


def _hypotheses(r: Reading, n: int) -> List[Reading]:
    if r.kind == "tokens":
        return [replace(r, order=o) for o in all_orders("thw")]
    if r.kind == "fold-tokens":
        folds = ["nt", "tn"] if n > 1 and r.t > 1 else ["nt"]
        return [replace(r, order=o, fold=f) for o in all_orders("hw") for f in folds]
    return [replace(r, fold=f) for f in (["nt", "tn"] if n > 1 and r.t > 1 else ["nt"])]


def _predicted(r: Reading, cell: Tuple[int, int, int], n: int) -> Tuple[int, ...]:
    """Where the perturbed cell of clip 0 lands in the tensor under reading ``r``: (row, position)."""
    ct, ch, cw = cell
    row = ct if r.fold == "nt" else ct * n
    if r.kind == "tokens":
        return (0, r.prefix + _index(cell, r.grid, r.order, "thw"))
    if r.kind == "fold-tokens":
        return (row, r.prefix + _index((ch, cw), (r.h, r.w), r.order, "hw"))
    return (row, ch * r.w + cw)


def _observed(r: Reading, base: Tensor, pert: Tensor) -> Tuple[int, ...]:
    """The (row, position) of the largest change between two outputs under reading ``r``'s kind."""
    d = (pert.float() - base.float()).abs()
    if r.kind == "tokens":
        per = d[0].sum(-1)
        span = per[r.prefix:r.prefix + r.t * r.h * r.w]
        return (0, r.prefix + int(span.argmax()))
    if r.kind == "fold-tokens":
        per = d.sum(-1)[:, r.prefix:r.prefix + r.h * r.w]
        flat = int(per.argmax())
        return (flat // per.shape[1], r.prefix + flat % per.shape[1])
    per = d.sum(1) if r.kind == "fold-chw" else d.sum(-1)  # (N·t, h, w)
    flat = int(per.reshape(per.shape[0], -1).argmax())
    hw = per.shape[1] * per.shape[2]
    return (flat // hw, flat % hw)


def _same_layout(a: Reading, b: Reading) -> bool:
    """Two hypotheses that place every cell at the same position (they differ only in size-1 axes)."""
    probe = torch.arange(a.t * a.h * a.w * 1.0)
    if a.kind == "tokens":
        x = probe.reshape(1, 1, a.t, a.h, a.w)
        return torch.equal(a.from_grid(x, torch.zeros(1, a.prefix + a.t * a.h * a.w, 1)),
                           b.from_grid(x, torch.zeros(1, a.prefix + a.t * a.h * a.w, 1)))
    x = probe.reshape(1, 1, a.t, a.h, a.w).expand(2, 1, a.t, a.h, a.w)
    like = torch.zeros(2 * a.t, a.prefix + a.h * a.w, 1) if a.kind == "fold-tokens" else None
    return torch.equal(a.from_grid(x, like), b.from_grid(x, like))


def probe_order(model: nn.Module, forward_fn: Optional[Callable], clips: Clips, record: Record,
                reading: Reading) -> Optional[Reading]:
    """The reading of ``record``'s tensor with its token order (and fold order) fixed by
    perturbation: one grid cell of clip 0 is brightened at a time and the position that changes
    most in the module's output must be where exactly one hypothesis puts that cell. ``None`` when
    no hypothesis (or more than one that differ) explains every probe."""
    n = clips.n
    hyps = _hypotheses(reading, n)
    t, h, w = reading.grid
    cells = [(t - 1, 0, w - 1), (0, h - 1, w // 2), (t // 2, h // 2, 0), (t - 1, h - 1, 0)]
    base = get_item(_output_at(model, forward_fn, clips, record), reading.item)
    for cell in cells:
        if len(hyps) <= 1 or all(_same_layout(hyps[0], o) for o in hyps[1:]):
            break
        pert = get_item(_output_at(model, forward_fn, _perturbed(clips, cell, reading.grid), record), reading.item)
        seen = _observed(reading, base, pert)
        hyps = [o for o in hyps if _predicted(o, cell, n) == seen]
    if not hyps or not all(_same_layout(hyps[0], o) for o in hyps[1:]):
        return None
    return hyps[0]


def _fix_orders(tr: Trace, model: nn.Module, forward_fn: Optional[Callable]) -> None:
    """Probe the first token-like (and the first frames-in-batch) map of the trace and apply its
    order to every reading of that kind; drop those readings when the probe is inconclusive."""
    for kinds in (("tokens",), ("fold-tokens",), ("fold-chw", "fold-hwc")):
        first = next(((rec, r) for rec in tr.records if rec.layer_map is not None
                      for r in rec.layer_map.readings if r.kind in kinds), None)
        if first is None:
            continue
        rec, r = first
        if r.kind in ("fold-chw", "fold-hwc") and (tr.clips.n == 1 or r.t == 1):
            continue  # one clip: no fold order to find
        fixed = probe_order(model, forward_fn, tr.clips, rec, r)
        for other in tr.records:
            lm = other.layer_map
            if lm is None or not any(x.kind in kinds for x in lm.readings):
                continue
            if fixed is None:
                other.layer_map = None
                other.note = (f"{lm.describe()}: the token order could not be established by perturbing the input at "
                              f"{rec.name!r} (tokens mixed before the first token layer?)")
                continue
            new = tuple(replace(x, order=fixed.order, fold=fixed.fold) if x.kind in kinds else x for x in lm.readings)
            other.layer_map = replace(lm, readings=new)
        if kinds == ("tokens",) and fixed is not None:
            tr.token_order = fixed.order


# ---------------------------------------------------------------------------------------- choosing
def _xclip_layer(model: nn.Module) -> Optional[str]:
    for name, mod in model.named_modules():
        if type(mod).__name__ == "XCLIPVisionEncoder" and hasattr(mod, "layers") and len(mod.layers) > 0:
            k = len(mod.layers) - 2 if len(mod.layers) > 1 else 0
            return f"{name}.layers.{k}" if name else f"layers.{k}"
    return None


#: architectures whose layer the trace alone would not pick right: ``(name, finder)``;
#: ``finder(model)`` returns the dotted name of the layer to explain, or None if not this architecture
PINNED: List[Tuple[str, Callable[[nn.Module], Optional[str]]]] = [
    ("X-CLIP (the frame CLS tokens read the patch tokens of the layer before the last)", _xclip_layer),
]


def find_layer(model: nn.Module, layer: Any) -> Tuple[str, nn.Module]:
    """``layer`` (a module of the model, or its dotted name) as ``(name, module)``."""
    if isinstance(layer, str):
        try:
            return layer, model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"`layer`={layer!r} is not a module of the model") from None
    if isinstance(layer, nn.Module):
        for name, mod in model.named_modules():
            if mod is layer:
                return name, mod
        raise ValueError(f"`layer` ({type(layer).__name__}) is not a module of the model")
    raise TypeError(f"`layer` must be a module of the model or its dotted name, got {type(layer).__name__}")


def pinned_layer(model: nn.Module) -> Optional[Tuple[str, str]]:
    """``(layer name, why)`` when the model is one whose layer is fixed by a known architecture, else None."""
    for why, finder in PINNED:
        name = finder(model)
        if name is not None:
            return name, why
    return None


def choose_layer(tr: Trace, model: nn.Module, check: Callable[[List[LayerMap]], List[bool]],
                 max_fallbacks: int = 4) -> Tuple[Record, str]:
    """The record to explain and why. ``check(layer_maps)`` says, for each, whether its map gets
    a gradient from the class score (one backward for all)."""
    maps = tr.maps()
    if not maps:
        notes = [f"{r.name}: {r.note}" for r in tr.records if r.note and "mapping" not in r.note]
        detail = ("; ".join(notes[-3:])) if notes else "no module output is a 5-D map, a frames-in-batch map or a token sequence of the clips"
        raise ValueError(f"no layer of the model gives a spatio-temporal map of clips {tr.clips.describe()}: {detail}. "
                         "Pass layer= (and, for tokens, use GradCAM with reshape=TokenGrid(...))")
    pin = pinned_layer(model)
    if pin is not None:
        rec = tr.by_name(pin[0])
        if rec is not None and rec.layer_map is not None:
            return rec, f"pinned for {pin[1]}"
    last = maps[-1]
    earlier = [r for r in maps[:-1] if r.block][::-1][:max_fallbacks]
    ok = check([last.layer_map] + [r.layer_map for r in earlier])
    if ok[0]:
        return last, "the last map before the resolution collapses"
    for rec, good in zip(earlier, ok[1:]):
        if good:
            return rec, (f"the last block whose map reaches the class score ({last.name!r}, the last map, gets no "
                         "gradient: the head reads it only through a class token)")
    return last, "the last map (no earlier block's map gets a gradient either)"
