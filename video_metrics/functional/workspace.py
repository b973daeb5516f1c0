"""Memory lent from one finished computation to the next.

``compute()`` evaluates the clip level, then the video level. With only scalars wanted, the clip
level's ``(C, N)`` ranking matrix is dead once its class pass is done; the video level's
``(videos, C)`` aggregated scores and its own ``(C, videos)`` ranking matrix are carved from it
instead of being fresh allocations. Peak memory stays at one ranking matrix, and on CPU no fresh
pages are faulted in (a large fresh allocation is zeroed page by page by the kernel, which costs
as much as the arithmetic on it).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["Workspace"]

_ALIGN = 64


class Workspace:
    """A bump allocator over one tensor's memory: :meth:`empty` returns disjoint views of it while
    they fit, fresh tensors after that (or always, with no buffer or on another device). The
    views alias the lent tensor, which its owner must no longer read."""

    def __init__(self, buffer: Optional[Tensor] = None) -> None:
        self._bytes = buffer.reshape(-1).view(torch.uint8) if buffer is not None and buffer.is_contiguous() else None
        self._off = 0

    @property
    def free_bytes(self) -> int:
        """Bytes left in the buffer after the tensors carved so far."""
        return 0 if self._bytes is None else max(0, self._bytes.numel() - self._aligned())

    def _aligned(self) -> int:
        return -(-self._off // _ALIGN) * _ALIGN

    def empty(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An uninitialised tensor carved from the buffer when it fits (a fresh one otherwise)."""
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        b = self._bytes
        start = self._aligned()
        if b is None or b.device != torch.device(device) or start + size > b.numel() or size == 0:
            return torch.empty(tuple(shape), dtype=dtype, device=device)
        self._off = start + size
        return b[start:start + size].view(dtype).view(tuple(shape))

    def zeros(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """A zero tensor carved from the buffer when it fits."""
        return self.empty(shape, dtype, device).zero_()

    def full(self, shape: Sequence[int], value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
        """A tensor filled with ``value``, carved from the buffer when it fits."""
        return self.empty(shape, dtype, device).fill_(value)
