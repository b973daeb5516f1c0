"""Result files of other frameworks, read without running their code.

* mmaction2 ``tools/test.py --dump results.pkl``: a pickled list with one dict per sample (one
  test video: mmaction2 averages the views inside the model), ``pred_score`` ``(C,)`` and
  ``gt_label`` (a label tensor; several labels for multi-label sets) in mmaction2 1.1+, or
  ``pred_scores`` / ``gt_labels`` dicts with an ``item`` tensor in 1.0.
* PySlowFast ``TEST.SAVE_RESULTS_PATH``: a pickled ``[all_preds, all_labels]`` — ``(N, C)``
  scores and ``(N,)`` labels, or ``(N, C)`` multi-hot (Charades).
* EPIC-Kitchens-100 action recognition results (``.pkl`` or ``.pt``, the layouts its
  ``evaluate.py`` reads): a list of ``{"verb_output": (V,), "noun_output": (N,), "narration_id":
  str}`` or one ``{"verb_output": (S, V), "noun_output": (S, N), "narration_id": (S,)}``; labels
  come from the annotations CSV (:mod:`video_metrics.epic`).

**Pickle executes code**: a plain ``pickle.load`` (and ``torch.load(weights_only=False)``) runs
whatever callable the file names. :func:`safe_load` unpickles with a restricted unpickler that
admits only NumPy arrays, dtypes and scalars, torch tensors (their storage read back with
``torch.load(weights_only=True)``) and builtin containers; a file that names any other global is
refused with one line naming it, before anything of it runs. ``.pt`` files (``torch.save``) are
read with ``torch.load(weights_only=True)``, NumPy arrays and dtypes admitted and nothing else.
"""
from __future__ import annotations

import io
import pickle
from typing import Any, List, Optional, Tuple

import numpy as np
import torch

__all__ = ["safe_load", "load_file", "load_result", "UnsafePickleError", "detect", "from_mmaction2", "from_slowfast", "from_epic", "FORMATS"]

FORMATS = ("mmaction2", "slowfast", "epic")


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks for a global outside the allowed ones."""


def _storage_from_bytes(b: bytes):
    # torch.storage._load_from_bytes calls torch.load(weights_only=False): read the bytes with the
    # restricted weights-only unpickler instead
    return torch.load(io.BytesIO(b), weights_only=True)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


def _numpy_global(name: str):
    try:
        from numpy._core import multiarray  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core import multiarray
    return getattr(multiarray, name)


for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _numpy_global("_reconstruct")
    _ALLOWED[(_mod, "scalar")] = _numpy_global("scalar")


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise UnsafePickleError(f"refused to unpickle the global {module}.{name}: only NumPy arrays, torch "
                                    "tensors and builtin containers are read from a result file")
        return obj


def safe_load(path: str) -> Any:
    """Unpickle ``path`` with the restricted unpickler (see the module doc)."""
    with open(path, "rb") as f:
        return _Restricted(f).load()


def _numpy_safe_globals() -> list:
    """What ``torch.load(weights_only=True)`` needs for NumPy arrays: their rebuild function, the
    array type, dtypes (``np.dtype`` and its per-kind classes) and scalars."""
    extra = [_numpy_global("_reconstruct"), _numpy_global("scalar"), np.ndarray, np.dtype]
    extra += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return extra


def load_file(path: str) -> Any:
    """A result file's object: ``.pt`` through ``torch.load(weights_only=True)`` (NumPy arrays
    admitted; tensors memory-mapped, so that looking at a large file's layout reads little of it),
    anything else through :func:`safe_load`. Both refuse any other global."""
    if path.lower().endswith(".pt"):
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                try:
                    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
                except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
                    return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # torch names the global it refused in a long message
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            named = [ln for ln in lines if "GLOBAL" in ln or "global" in ln.lower()]
            raise UnsafePickleError(f"refused to load: {(named or lines or ['not allowed'])[0][:240]}") from None
    return safe_load(path)


def load_result(path: str, error: type = ValueError) -> Any:
    """:func:`load_file`, every failure raised as ``error`` with one line starting with the path
    (a refused global named; any other unreadable file as such)."""
    try:
        return load_file(path)
    except UnsafePickleError as e:
        raise error(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        first = (str(e).strip().splitlines() or [""])[0]
        raise error(f"{path}: not a readable result file ({type(e).__name__}: {first})") from None


def _array(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)) and all(isinstance(v, (int, float, np.number)) for v in x):
        return np.asarray(x)
    if isinstance(x, (int, np.integer)):
        return np.asarray([x])
    raise ValueError(f"{what} is a {type(x).__name__}, expected a tensor or an array")


def detect(obj: Any) -> Optional[str]:
    """``"mmaction2"``, ``"slowfast"``, ``"epic"`` or None, from the unpickled object's layout."""
    if (isinstance(obj, dict) and "verb_output" in obj) or (
            isinstance(obj, list) and obj and isinstance(obj[0], dict) and "verb_output" in obj[0]):
        return "epic"
    if isinstance(obj, list) and obj and isinstance(obj[0], dict) and (
            "pred_score" in obj[0] or "pred_scores" in obj[0]):
        return "mmaction2"
    if isinstance(obj, (list, tuple)) and len(obj) == 2 and all(isinstance(x, (torch.Tensor, np.ndarray, list))
                                                                 for x in obj):
        return "slowfast"
    return None


def _labels_to_targets(labels: List[np.ndarray], c: int) -> Tuple[np.ndarray, bool]:
    """One label each: class indices; otherwise multi-hot rows."""
    if all(lab.size == 1 for lab in labels):
        return np.asarray([int(lab.reshape(-1)[0]) for lab in labels], dtype=np.int64), False
    hot = np.zeros((len(labels), c), dtype=np.int64)
    for i, lab in enumerate(labels):
        lab = lab.reshape(-1).astype(np.int64)
        if lab.size and (lab.min() < 0 or lab.max() >= c):
            raise ValueError(f"sample {i}: label outside the {c} classes")
        hot[i, lab] = 1
    return hot, True


def from_mmaction2(obj: Any) -> Tuple[np.ndarray, np.ndarray, bool]:
    """``(scores (N, C), targets, multilabel)`` from an mmaction2 dump (1.0 or 1.1+ layout)."""
    scores, labels = [], []
    for i, d in enumerate(obj):
        if not isinstance(d, dict):
            raise ValueError(f"sample {i} is a {type(d).__name__}, expected a dict (mmaction2 --dump layout)")
        s = d.get("pred_score", d.get("pred_scores"))
        g = d.get("gt_label", d.get("gt_labels"))
        if isinstance(s, dict):  # mmaction2 1.0: LabelData as a dict with an "item" field
            s = s.get("item")
        if isinstance(g, dict):
            g = g.get("item")
        if s is None or g is None:
            raise ValueError(f"sample {i}: expected 'pred_score' and 'gt_label' (or 'pred_scores'/'gt_labels' "
                             f"with 'item'), found {sorted(d)}")
        scores.append(_array(s, f"sample {i} 'pred_score'").reshape(-1))
        labels.append(_array(g, f"sample {i} 'gt_label'"))
    c = scores[0].size
    if any(x.size != c for x in scores):
        raise ValueError("the samples' 'pred_score' have different lengths")
    target, multilabel = _labels_to_targets(labels, c)
    return np.stack(scores).astype(np.float32), target, multilabel


def from_slowfast(obj: Any) -> Tuple[np.ndarray, np.ndarray, bool]:
    """``(scores (N, C), targets, multilabel)`` from PySlowFast's ``[all_preds, all_labels]``."""
    preds, labels = (_array(x, name) for x, name in zip(obj, ("all_preds", "all_labels")))
    if preds.ndim != 2:
        raise ValueError(f"all_preds must be (N, C), got shape {preds.shape}")
    if labels.shape[0] != preds.shape[0] or labels.ndim > 2:
        raise ValueError(f"all_labels must be ({preds.shape[0]},) or ({preds.shape[0]}, {preds.shape[1]}), "
                         f"got shape {labels.shape}")
    multilabel = labels.ndim == 2
    if multilabel and labels.shape[1] != preds.shape[1]:
        raise ValueError(f"multi-hot all_labels must have {preds.shape[1]} columns, got {labels.shape[1]}")
    return preds.astype(np.float32), labels.astype(np.int64), multilabel


def from_epic(obj: Any) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """``(verb scores (S, V), noun scores (S, N), narration ids)`` from EPIC-Kitchens results
    (a list of per-segment dicts, or one dict of stacked arrays)."""
    if isinstance(obj, dict):
        cols = obj
    elif isinstance(obj, list):
        for i, d in enumerate(obj):
            if not isinstance(d, dict):
                raise ValueError(f"segment {i} is a {type(d).__name__}, expected a dict with 'verb_output', "
                                 "'noun_output' and 'narration_id'")
        cols = {k: [d.get(k) for d in obj] for k in ("verb_output", "noun_output", "narration_id")}
    else:
        raise ValueError(f"expected a list of dicts or a dict, got {type(obj).__name__}")
    for k in ("verb_output", "noun_output", "narration_id"):
        if k not in cols or cols[k] is None or (isinstance(cols[k], list) and any(x is None for x in cols[k])):
            raise ValueError(f"missing {k!r} (expected 'verb_output', 'noun_output' and 'narration_id')")

    def heads(x, name):
        arr = np.stack([_array(v, name).reshape(-1) for v in x]) if isinstance(x, list) else _array(x, name)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.dtype.kind not in "fiu":
            raise ValueError(f"{name!r} must be (segments, classes) numbers, got shape {arr.shape} ({arr.dtype})")
        return arr.astype(np.float32)

    verb, noun = heads(cols["verb_output"], "verb_output"), heads(cols["noun_output"], "noun_output")
    ids = cols["narration_id"]
    ids = [str(x) for x in (ids.tolist() if isinstance(ids, np.ndarray) else ids)]
    if not (len(ids) == verb.shape[0] == noun.shape[0]):
        raise ValueError(f"'verb_output' ({verb.shape[0]}), 'noun_output' ({noun.shape[0]}) and 'narration_id' "
                         f"({len(ids)}) must have one entry per segment")
    if len(set(ids)) != len(ids):
        raise ValueError("'narration_id' repeats a segment")
    return verb, noun, ids
