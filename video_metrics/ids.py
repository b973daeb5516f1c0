"""String video ids (YouTube ids, file names) as stable int64 ids, and back."""
from __future__ import annotations

import hashlib
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = ["stable_id", "IdRegistry", "id_tensor"]


def stable_id(name: Union[str, Sequence[str]], device=None) -> Union[int, Tensor]:
    """A 63-bit non-negative int id for a string: the first 8 bytes of BLAKE2b(name, UTF-8),
    big-endian, with the top bit cleared. The same on every machine, process and Python version
    (unlike ``hash()``). Two distinct strings collide with probability ~ n**2 / 2**64; register
    names in an :class:`IdRegistry` to have collisions detected.

    A list (or tuple) of strings gives an int64 tensor of their ids (on ``device``), ready to pass
    as ``video_ids``.

    >>> from video_metrics import stable_id
    >>> stable_id("kitchen_01") == stable_id("kitchen_01"), stable_id(["a", "b"]).dtype
    (True, torch.int64)
    """
    if isinstance(name, (list, tuple)):
        bad = next((x for x in name if not isinstance(x, str)), None)
        if bad is not None:
            raise TypeError(f"`name` must be a str or a list of str, got an element of type {type(bad).__name__}")
        return torch.tensor([stable_id(x) for x in name], dtype=torch.long, device=device)
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str or a list of str, got {type(name).__name__}")
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


class IdRegistry:
    """Maps names to :func:`stable_id` ids and back, and detects collisions.

    ``ids(names)`` returns an int64 tensor to pass as ``video_ids``; ``name(id)`` and
    ``names(ids)`` map ids back for reports; ``check()`` raises if two names share an id (the
    suites call it at ``compute()`` when given a registry).

    >>> from video_metrics import IdRegistry
    >>> registry = IdRegistry()
    >>> ids = registry.ids(["kitchen_01", "garden_07", "kitchen_01"])
    >>> bool(ids[0] == ids[2]), registry.names(ids)
    (True, ['kitchen_01', 'garden_07', 'kitchen_01'])
    """

    def __init__(self, names: Optional[Iterable[str]] = None) -> None:
        self._names: Dict[int, str] = {}
        self._collisions: List[tuple] = []
        if names is not None:
            self.ids(names)

    def add(self, name: str) -> int:
        """The int64 id of ``name`` (remembered, collisions recorded for :meth:`check`)."""
        i = stable_id(name)
        known = self._names.setdefault(i, name)
        if known != name:
            self._collisions.append((known, name, i))
        return i

    def ids(self, names: Iterable[str], device=None) -> Tensor:
        """The ids of ``names`` as an int64 tensor."""
        return torch.tensor([self.add(n) for n in names], dtype=torch.long, device=device)

    def name(self, i: int) -> str:
        """The name of an id (its number as text if the registry never saw it)."""
        return self._names.get(int(i), str(int(i)))

    def names(self, ids) -> List[str]:
        """The names of several ids."""
        return [self.name(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]

    def check(self) -> None:
        """Raise if two names mapped to one id (the suite calls this at ``compute()``)."""
        if self._collisions:
            a, b, i = self._collisions[0]
            raise ValueError(f"video id collision: {a!r} and {b!r} both map to {i} ({len(self._collisions)} collision(s))")

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, i) -> bool:
        return int(i) in self._names


def id_tensor(ids, name: str) -> Optional[Tensor]:
    """Ids as given, or a clear error for string ids (which need :func:`stable_id`)."""
    if isinstance(ids, (list, tuple)) and ids and all(isinstance(x, str) for x in ids):
        raise TypeError(
            f"`{name}` are strings; video_metrics needs int64 ids on the scores' device. Map them with an "
            f"IdRegistry (registry = video_metrics.IdRegistry(); {name} = registry.ids(names, device=scores.device), "
            f"then pass id_registry=registry to get names back in reports) or with video_metrics.stable_id(names)"
        )
    return ids
