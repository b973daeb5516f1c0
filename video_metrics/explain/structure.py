"""What a video model takes and what its layers give, read as spatio-temporal maps.

* :class:`Clips`: the model's input as given (one tensor ``(N, C, T, H, W)`` or ``(N, T, C, H, W)``,
  or a list of pathway tensors as SlowFast takes) with its layout, the reference frames (those of
  the pathway with the most frames) and the frame size. :func:`parse_clips` guesses the layout
  from the dimension that holds the colour channels and refuses when both could.
* :class:`Reading`: how one tensor of a layer's output is read as a ``(N, K, t, h, w)`` grid:
  channels first ``(N, K, t, h, w)``, frames first ``(N, t, K, h, w)``, channels last
  ``(N, t, h, w, K)`` (Swin3D), frames folded into the batch ``(N·t, K, h, w)`` /
  ``(N·t, h, w, K)``, a token sequence ``(N, [CLS…] + t·h·w, K)`` in any axis order (VideoMAE,
  ViViT, TimeSformer, MViT), or frames folded into the batch as tokens ``(N·t, [CLS…] + h·w, K)``
  (X-CLIP's vision tower). ``to_grid``/``from_grid`` convert both ways (differentiably), so that a
  hook can hand Grad-CAM a grid and the rest of the model the original structure.
* :class:`LayerMap`: a module (and which call of it) with one reading per map in its output (a
  list of pathway maps gives one per pathway).
* :func:`place_on_frames`: a map step is placed over the frames it was computed from (a layer
  with temporal stride ``s`` covers ``s`` frames; a pathway with fewer frames is spread evenly
  over the reference frames), bilinear in space.

Nothing here guesses silently: a tensor that two readings fit equally is reported ambiguous.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Clips", "parse_clips", "Reading", "LayerMap", "read_tensor", "grid_triple", "place_on_frames",
           "get_item", "replace_items", "MAX_EXTRA_TOKENS"]

#: tokens besides the grid (CLS, distillation, register tokens) that a sequence may carry in front
MAX_EXTRA_TOKENS = 8

_LAYOUTS = ("NCTHW", "NTCHW")


@dataclass(frozen=True)
class Clips:
    """The clips as the model takes them. ``pathways``: the input tensors (one, or one per
    pathway); ``is_list``: the model takes a list; ``layout``: ``"NCTHW"`` or ``"NTCHW"``."""

    pathways: Tuple[Tensor, ...]
    is_list: bool
    layout: str

    @property
    def n(self) -> int:
        """The number of clips."""
        return int(self.pathways[0].shape[0])

    def frames_of(self, i: int) -> int:
        """Frames of pathway ``i``."""
        x = self.pathways[i]
        return int(x.shape[2] if self.layout == "NCTHW" else x.shape[1])

    @property
    def frames(self) -> int:
        """The reference frames: those of the pathway with the most frames."""
        return max(self.frames_of(i) for i in range(len(self.pathways)))

    @property
    def reference(self) -> int:
        """The pathway with the most frames: maps are placed on its frames."""
        return max(range(len(self.pathways)), key=self.frames_of)

    @property
    def height(self) -> int:
        """Frame height of the reference pathway."""
        return int(self.pathways[self.reference].shape[3])

    @property
    def width(self) -> int:
        """Frame width of the reference pathway."""
        return int(self.pathways[self.reference].shape[4])

    @property
    def device(self) -> torch.device:
        """The device of the clips."""
        return self.pathways[0].device

    def model_input(self, pathways: Optional[Sequence[Tensor]] = None) -> Union[Tensor, List[Tensor]]:
        """What to pass to the model: a fresh list each call (some models write into it)."""
        xs = tuple(self.pathways if pathways is None else pathways)
        return list(xs) if self.is_list else xs[0]

    def with_pathways(self, pathways: Sequence[Tensor]) -> "Clips":
        """The same clips with other input tensors (e.g. a perturbed copy)."""
        return replace(self, pathways=tuple(pathways))

    def describe(self) -> str:
        """The input as the errors and notes name it, e.g. ``(2, 3, 8, 32, 32) (NCTHW)``."""
        shapes = ", ".join(str(tuple(p.shape)) for p in self.pathways)
        return f"{'[' + shapes + ']' if self.is_list else shapes} ({self.layout})"


def _channel_dims(x: Tensor, channels: Optional[int]) -> List[str]:
    """Layouts whose channel dimension fits: size 3 (RGB) or the model's first conv's inputs."""
    want = {3} if channels is None else {channels}
    fits = []
    if x.shape[1] in want:
        fits.append("NCTHW")
    if x.shape[2] in want:
        fits.append("NTCHW")
    return fits


def parse_clips(clips: Any, layout: Optional[str] = None, channels: Optional[int] = None) -> Clips:
    """Read what the model takes: a 5-D tensor, or a list/tuple of 5-D tensors (pathways).

    ``layout=None`` guesses from the dimension holding the colour channels (3, or ``channels``
    when given, e.g. the in-channels of the model's first convolution) and raises when both
    dimension 1 and 2 fit, or neither."""
    if isinstance(clips, Tensor):
        pathways, is_list = (clips,), False
    elif isinstance(clips, (list, tuple)) and clips and all(isinstance(p, Tensor) for p in clips):
        pathways, is_list = tuple(clips), True
    else:
        raise TypeError("`clips` must be a tensor (N, C, T, H, W) / (N, T, C, H, W) or a list of such tensors "
                        f"(one per pathway), got {type(clips).__name__}")
    for i, p in enumerate(pathways):
        if p.dim() != 5:
            where = f"pathway {i}" if is_list else "`clips`"
            raise ValueError(f"{where} must be 5-D, (N, C, T, H, W) or (N, T, C, H, W); got shape {tuple(p.shape)}")
        if p.shape[0] != pathways[0].shape[0]:
            raise ValueError(f"every pathway must hold the same clips: batch sizes {[int(q.shape[0]) for q in pathways]}")
    if layout is not None:
        if layout not in _LAYOUTS:
            raise ValueError(f"`layout` must be 'NCTHW' or 'NTCHW' (or None to guess), got {layout!r}")
        return Clips(pathways, is_list, layout)
    fits = set(_channel_dims(pathways[0], channels))
    for p in pathways[1:]:
        fits &= set(_channel_dims(p, channels))
    what = "3 (RGB)" if channels is None else f"{channels} (the first convolution's input channels)"
    shape = tuple(pathways[0].shape)
    if len(fits) == 2:
        raise ValueError(f"cannot tell the layout of clips of shape {shape}: dimensions 1 and 2 both have size {shape[1]}, "
                         "so either could hold the channels; pass layout='NCTHW' (N, C, T, H, W) or 'NTCHW' "
                         "(N, T, C, H, W)")
    if not fits:
        raise ValueError(f"cannot tell the layout of clips of shape {shape}: neither dimension 1 nor 2 has {what} "
                         "channels; pass layout='NCTHW' or 'NTCHW'")
    return Clips(pathways, is_list, fits.pop())


# ---------------------------------------------------------------------------------------- readings
def grid_triple(value: Any) -> Optional[Tuple[int, int, int]]:
    """A (t, h, w) triple of positive ints given as a list/tuple/1-D tensor (MViT's ``thw``), else None."""
    if isinstance(value, Tensor):
        if value.dim() != 1 or value.numel() != 3 or value.dtype.is_floating_point or value.device.type == "meta":
            return None
        value = value.tolist()
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   and v > 0 for v in value):
        return int(value[0]), int(value[1]), int(value[2])
    return None


def _spatial_fits(h: int, w: int, height: int, width: int) -> bool:
    """``(h, w)`` is the frame ``(height, width)`` downsampled by one stride ``s`` in both axes
    (``ceil(H/s)`` with padding, down to a few cells fewer for unpadded kernels)."""
    if not (1 <= h <= height and 1 <= w <= width):
        return False
    for s in range(1, max(height, width) + 1):
        if height // s - 3 <= h <= -(-height // s) and width // s - 3 <= w <= -(-width // s):
            return True
    return False


_DESCRIBE = {
    "cthw": "(N, C, T, H, W)",
    "tchw": "(N, T, C, H, W)",
    "thwc": "(N, T, H, W, C) channels last",
    "fold-chw": "(N·T, C, H, W) frames in the batch",
    "fold-hwc": "(N·T, H, W, C) frames in the batch, channels last",
    "tokens": "tokens (N, L, C)",
    "fold-tokens": "tokens (N·T, L, C) frames in the batch",
}


@dataclass(frozen=True)
class Reading:
    """How one tensor of a layer's output reads as a ``(N, K, t, h, w)`` map.

    ``kind``: see the module docstring; ``item``: where the tensor sits in the output (``()``: the
    output itself, ``(0,)``: its first item); ``t, h, w``: the grid; ``channels``: K; ``prefix``:
    tokens in front of the grid (CLS, registers); ``order``: the token order, the grid's axes from
    slowest to fastest (``"thw"`` time-major as VideoMAE, ``"hwt"`` as TimeSformer; spatial only,
    ``"hw"``, for tokens with the frames in the batch); ``fold``: frames folded into the batch
    clip-major (``"nt"``: row ``n·t + i``) or frame-major (``"tn"``: row ``i·N + n``)."""

    kind: str
    item: Tuple[int, ...]
    t: int
    h: int
    w: int
    channels: int
    prefix: int = 0
    order: str = "thw"
    fold: str = "nt"

    @property
    def grid(self) -> Tuple[int, int, int]:
        """``(t, h, w)`` of the map."""
        return self.t, self.h, self.w

    @property
    def is_tokens(self) -> bool:
        """Whether the tensor is a token sequence."""
        return self.kind in ("tokens", "fold-tokens")

    @property
    def is_folded(self) -> bool:
        """Whether the clips' frames are folded into the batch dimension."""
        return self.kind.startswith("fold")

    def describe(self) -> str:
        """The reading in words (layout, extra tokens, token order, grid)."""
        d = _DESCRIBE[self.kind]
        if self.is_tokens:
            d += f", {self.prefix} extra token{'s' if self.prefix != 1 else ''} in front, order {self.order}"
        return d + f" -> grid t={self.t}, h={self.h}, w={self.w}"

    # -------------------------------------------------------------------------------- conversion
    def _unfold(self, x: Tensor, n: int) -> Tensor:
        """(N·t, ...) -> (N, t, ...)"""
        if self.fold == "nt":
            return x.reshape(n, self.t, *x.shape[1:])
        return x.reshape(self.t, n, *x.shape[1:]).transpose(0, 1)

    def _refold(self, x: Tensor) -> Tensor:
        """(N, t, ...) -> (N·t, ...)"""
        if self.fold == "nt":
            return x.reshape(-1, *x.shape[2:])
        return x.transpose(0, 1).reshape(-1, *x.shape[2:])

    def _token_axes(self) -> Tuple[int, ...]:
        sizes = {"t": self.t, "h": self.h, "w": self.w}
        return tuple(sizes[a] for a in self.order)

    def to_grid(self, x: Tensor, n: int) -> Tensor:
        """The tensor as ``(N, K, t, h, w)`` (a new tensor, never a view of ``x``)."""
        k = self.kind
        if k == "cthw":
            g = x
        elif k == "tchw":
            g = x.permute(0, 2, 1, 3, 4)
        elif k == "thwc":
            g = x.permute(0, 4, 1, 2, 3)
        elif k == "fold-chw":
            g = self._unfold(x, n).permute(0, 2, 1, 3, 4)
        elif k == "fold-hwc":
            g = self._unfold(x, n).permute(0, 4, 1, 2, 3)
        elif k == "tokens":
            grid = x[:, self.prefix:self.prefix + self.t * self.h * self.w]
            g = grid.reshape(n, *self._token_axes(), x.shape[-1])  # (N, a, b, c, K) in token order
            g = g.permute(0, 4, *(1 + self.order.index(a) for a in "thw"))
        else:  # fold-tokens
            grid = x[:, self.prefix:self.prefix + self.h * self.w]
            sizes = {"h": self.h, "w": self.w}
            g = grid.reshape(x.shape[0], *(sizes[a] for a in self.order), x.shape[-1])
            g = self._unfold(g, n)  # (N, t, a, b, K)
            g = g.permute(0, 4, 1, *(2 + self.order.index(a) for a in "hw"))
        return g.clone()

    def from_grid(self, g: Tensor, like: Tensor) -> Tensor:
        """Back to the layer's structure (a new tensor: later in-place operations of the model
        never write into ``g``); ``like`` is the original tensor (for the extra tokens)."""
        k = self.kind
        if k == "cthw":
            return g.clone()
        if k == "tchw":
            return g.permute(0, 2, 1, 3, 4).clone()
        if k == "thwc":
            return g.permute(0, 2, 3, 4, 1).clone()
        if k == "fold-chw":
            return self._refold(g.permute(0, 2, 1, 3, 4)).clone()
        if k == "fold-hwc":
            return self._refold(g.permute(0, 2, 3, 4, 1)).clone()
        if k == "tokens":
            seq = g.permute(0, *(2 + "thw".index(a) for a in self.order), 1).reshape(g.shape[0], -1, g.shape[1])
            end = self.prefix + seq.shape[1]
            return torch.cat([like[:, :self.prefix], seq, like[:, end:]], 1)
        frames = g.permute(0, 2, *(3 + "hw".index(a) for a in self.order), 1)  # (N, t, a, b, K)
        seq = self._refold(frames).reshape(-1, self.h * self.w, g.shape[1])
        end = self.prefix + seq.shape[1]
        return torch.cat([like[:, :self.prefix], seq, like[:, end:]], 1)


def _token_grids(length: int, grids: Sequence[Tuple[int, int, int]], spatial_only: bool) -> List[Tuple[Tuple[int, int, int], int]]:
    out = []
    for grid in grids:
        size = grid[1] * grid[2] if spatial_only else grid[0] * grid[1] * grid[2]
        extra = length - size
        if 0 <= extra <= MAX_EXTRA_TOKENS and (grid, extra) not in out:
            out.append((grid, extra))
    return out


def read_tensor(x: Tensor, n: int, frames: int, height: int, width: int, item: Tuple[int, ...] = (),
                grids: Sequence[Tuple[int, int, int]] = (), fold_grids: Sequence[Tuple[int, int, int]] = (),
                order: str = "thw", fold_order: str = "hw") -> List[Reading]:
    """Every reading of ``x`` as a map of ``n`` clips of ``frames`` x ``height`` x ``width``.

    Token sequences are read only against grids seen earlier in the model (``grids``: (t, h, w)
    of 5-D maps or of an explicit ``thw``; ``fold_grids``: (frames, h, w) of maps with the frames in
    the batch), in the model's token ``order``. More than one reading means ambiguous; none
    means not a map of the clips."""
    shape = tuple(int(s) for s in x.shape)
    out: List[Reading] = []

    def time_ok(t: int) -> bool:
        return 1 <= t <= frames

    if x.dim() == 5 and shape[0] == n:
        _, a, b, c, d = shape
        if time_ok(b) and _spatial_fits(c, d, height, width):
            out.append(Reading("cthw", item, b, c, d, a))
        if time_ok(a) and _spatial_fits(c, d, height, width):
            out.append(Reading("tchw", item, a, c, d, b))
        if time_ok(a) and _spatial_fits(b, c, height, width):
            out.append(Reading("thwc", item, a, b, c, d))
    elif x.dim() == 4 and shape[0] % n == 0 and time_ok(shape[0] // n):
        t = shape[0] // n
        _, a, b, c = shape
        if _spatial_fits(b, c, height, width):
            out.append(Reading("fold-chw", item, t, b, c, a))
        if _spatial_fits(a, b, height, width):
            out.append(Reading("fold-hwc", item, t, a, b, c))
    elif x.dim() == 3 and shape[0] == n:
        for (t, h, w), extra in _token_grids(shape[1], grids, spatial_only=False):
            out.append(Reading("tokens", item, t, h, w, shape[2], prefix=extra, order=order))
    elif x.dim() == 3 and shape[0] % n == 0:
        t = shape[0] // n
        for (ft, h, w), extra in _token_grids(shape[1], [g for g in fold_grids if g[0] == t], spatial_only=True):
            out.append(Reading("fold-tokens", item, ft, h, w, shape[2], prefix=extra, order=fold_order))
    # the same numbers read two ways are one reading only when no axis is moved (all sizes 1)
    if len(out) == 2 and {r.kind for r in out} == {"cthw", "tchw"} and out[0].t == 1 and out[0].channels == 1:
        out = out[:1]
    return out


@dataclass(frozen=True)
class LayerMap:
    """A module of the model (``name``; ``call``: which call of it in one forward) whose output
    holds one map per reading (several: one per pathway)."""

    name: str
    module: nn.Module = field(compare=False, repr=False)
    readings: Tuple[Reading, ...]
    call: int = 0

    def describe(self) -> str:
        """The readings of the layer in words, one per pathway."""
        return "; ".join(r.describe() for r in self.readings)

    @property
    def grids(self) -> Tuple[Tuple[int, int, int], ...]:
        """``(t, h, w)`` of every reading."""
        return tuple(r.grid for r in self.readings)


# ---------------------------------------------------------------------------------------- output items
def get_item(output: Any, item: Tuple[int, ...]) -> Any:
    """The tensor at ``item`` (a path of indices) in a nested output of tuples and lists."""
    for i in item:
        output = output[i]
    return output


def replace_items(output: Any, items: Sequence[Tuple[int, ...]], values: Sequence[Tensor]) -> Any:
    """``output`` with the tensors at ``items`` replaced (tuples and lists rebuilt, never written)."""
    for item, value in zip(items, values):
        output = _replace(output, item, value)
    return output


def _replace(output: Any, item: Tuple[int, ...], value: Tensor) -> Any:
    if not item:
        return value
    head, rest = item[0], item[1:]
    parts = list(output)
    parts[head] = _replace(parts[head], rest, value)
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # namedtuple
        return type(output)(*parts)
    return type(output)(parts) if isinstance(output, (tuple, list)) else parts


def tensor_items(output: Any, prefix: Tuple[int, ...] = (), depth: int = 0) -> List[Tuple[Tuple[int, ...], Any]]:
    """``(item, value)`` for the direct items of a tuple/list output (nested lists of pathways
    one level deep); a tensor output is its own item ``()``."""
    if isinstance(output, Tensor):
        return [(prefix, output)]
    if isinstance(output, (list, tuple)) and depth < 2:
        out = []
        for i, v in enumerate(output):
            if isinstance(v, Tensor):
                out.append((prefix + (i,), v))
            elif isinstance(v, (list, tuple)) and depth < 1 and grid_triple(v) is None:
                out.extend(tensor_items(v, prefix + (i,), depth + 1))
            else:
                out.append((prefix + (i,), v))
        return out
    return []


# ---------------------------------------------------------------------------------------- placement
def place_on_frames(cam: Tensor, frames: int, height: int, width: int) -> Tensor:
    """``(N, t, h, w)`` -> ``(N, frames, height, width)``: step ``k`` of ``t`` covers the frames
    ``[k·frames/t, (k+1)·frames/t)`` (nearest in time: a step is placed over the frames it was
    computed from, never blended with its neighbours), bilinear in space."""
    n, t, h, w = cam.shape
    idx = (torch.arange(frames, device=cam.device) * t) // frames
    on_frames = cam.index_select(1, idx)
    if (h, w) == (height, width):
        return on_frames
    up = F.interpolate(on_frames.reshape(n * frames, 1, h, w), size=(height, width), mode="bilinear",
                       align_corners=False)
    return up.reshape(n, frames, height, width)


def all_orders(axes: str) -> List[str]:
    """Every order of the axis letters, e.g. ``all_orders("th") == ["th", "ht"]``."""
    return ["".join(p) for p in itertools.permutations(axes)]
