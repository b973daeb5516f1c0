"""Read saved per-clip predictions in chunks (``.npz``, ``.pt``, ``.csv``) for offline evaluation.

Formats (one row per clip):

* ``.npz`` / ``.pt``: arrays ``scores`` (N, C), ``target`` (N,) class indices or (N, C) multi-hot,
  optional ``video_ids`` (N,) ints or strings, ``clip_ids`` (N,) ints, ``class_names`` (C,) strings.
  ``.npz`` members are streamed row chunks at a time (the ``.npy`` header is parsed, nothing
  else is loaded); ``.pt`` files are memory-mapped (``torch.load(mmap=True)``).
* ``.csv``: a header ``video_id, clip_id, target, score_0 … score_{C-1}``; video ids may be
  strings (hashed with :func:`~video_metrics.ids.stable_id`, names kept for the report);
  ``target`` holds a label index or, with class names given, a class name (matched exactly; names
  may contain spaces); for multi-label, space-separated label indices or ``|``-separated names or
  indices (possibly empty).
* mmaction2 / PySlowFast result pickles hold one row per test video (the framework aggregated
  its views): the row index is the video id and :attr:`PredictionFile.rows_are` names the
  framework.

Every problem raises :class:`PredictionFileError` with one line naming the file, the row
(1-based, header = row 1 for CSV) and the column where possible.
"""
from __future__ import annotations

import csv
import os
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
from torch import Tensor

from .ids import IdRegistry

__all__ = ["PredictionFileError", "Chunk", "PredictionFile", "open_predictions"]


class PredictionFileError(ValueError):
    """A prediction file cannot be read as documented; the message says where."""


@dataclass
class Chunk:
    """Rows of a predictions file: ``scores`` ``(n, C)``, ``target`` (class indices or an ``(n, C)``
    {0, 1} matrix), and the ``video_ids`` and ``clip_ids`` when the file has them.
    """
    scores: Tensor
    target: Tensor
    video_ids: Optional[Tensor]
    clip_ids: Optional[Tensor]
    first_row: int  # 0-based index of the chunk's first row
    groups: Optional[Tensor] = None  # (rows, G) int64: the columns chosen with select_groups


@dataclass
class PredictionFile:
    """What :func:`open_predictions` found: sizes, names, and a chunk iterator."""

    path: str
    num_rows: Optional[int]
    num_classes: int
    multilabel: bool
    class_names: Optional[List[str]]
    has_video_ids: bool
    has_clip_ids: bool
    registry: IdRegistry = field(default_factory=IdRegistry)
    #: the format's chunk reader: ``read_chunks(size)`` yields :class:`Chunk` objects
    read_chunks: Optional[object] = None
    #: the format's column reader: name -> the whole column (array-like) or None
    read_column: Optional[object] = None
    #: per selected group column: the string of each integer code (None: the column holds integers)
    group_values: Dict[str, Optional[List[str]]] = field(default_factory=dict)
    _groups: Optional[Tensor] = None
    #: None: one row per clip; else the framework whose result file holds one row per video
    #: ("mmaction2", "PySlowFast"), aggregated over its views by that framework (video id = row index)
    rows_are: Optional[str] = None

    def chunks(self, size: int = 4096) -> Iterator[Chunk]:
        """The rows in chunks of ``size`` (each a :class:`Chunk`), read lazily and checked as they are read."""
        for ch in self.read_chunks(size):
            if not self.multilabel and getattr(self, "_as_multilabel", False):
                hot = torch.zeros(ch.target.shape[0], self.num_classes, dtype=torch.long)
                hot[torch.arange(ch.target.shape[0]), ch.target] = 1
                ch = Chunk(ch.scores, hot, ch.video_ids, ch.clip_ids, ch.first_row)
            if self._groups is not None:
                ch.groups = self._groups[ch.first_row:ch.first_row + ch.scores.shape[0]]
            yield ch

    def select_groups(self, names: List[str]) -> "PredictionFile":
        """Read the named columns (CSV columns, ``.npz`` arrays, ``.pt`` keys) as integer group
        columns for slices: integers as they are, strings coded by their sorted order
        (:attr:`group_values` maps the codes back)."""
        cols = []
        for name in names:
            col = self.read_column(name) if self.read_column is not None else None
            if col is None:
                raise PredictionFileError(f"{self.path}: no column {name!r} for --slices-from")
            vals = np.asarray(col.numpy() if isinstance(col, Tensor) else col)
            if vals.shape[:1] != (self.num_rows,) or vals.ndim != 1:
                raise PredictionFileError(f"{self.path}: column {name!r} must have one value per row "
                                          f"({self.num_rows}), got shape {vals.shape}")
            if vals.dtype.kind in "iu" or (vals.dtype.kind == "f" and np.all(vals == np.round(vals))):
                cols.append(torch.from_numpy(vals.astype(np.int64)))
                self.group_values[name] = None
                continue
            text = np.asarray([str(v).strip() for v in vals])
            if all(t.lstrip("-").isdigit() for t in text):
                cols.append(torch.from_numpy(text.astype(np.int64)))
                self.group_values[name] = None
                continue
            uniq, codes = np.unique(text, return_inverse=True)
            cols.append(torch.from_numpy(codes.astype(np.int64)))
            self.group_values[name] = [str(u) for u in uniq]
        self._groups = torch.stack(cols, 1) if cols else None
        return self

    def num_labels(self) -> int:
        """Valid class indices are ``0 .. num_labels() - 1`` (binary: 0 and 1 with one score column)."""
        return 2 if getattr(self, "_binary", False) else self.num_classes

    def as_binary(self) -> "PredictionFile":
        """Targets 0/1 with one score column (``--task binary``)."""
        self._binary = True
        return self

    def as_multilabel(self) -> "PredictionFile":
        """Read single class-index targets as one-label multi-hot rows (``--task multilabel``)."""
        self._as_multilabel = True
        return self


def open_predictions(path: str, class_names: Optional[List[str]] = None, format: str = "auto") -> PredictionFile:
    """Open a prediction file. ``format``: ``"auto"`` (by extension; ``.pkl``/``.pickle`` by the
    layout inside), or ``"mmaction2"`` / ``"slowfast"`` for those frameworks' pickled results
    (:mod:`video_metrics.pickled`: a restricted unpickler, nothing in the file runs)."""
    if not os.path.isfile(path):
        raise PredictionFileError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if format in ("mmaction2", "slowfast") or (format == "auto" and ext in (".pkl", ".pickle")):
        return _open_pickled(path, class_names, format)
    if ext == ".npz":
        return _open_npz(path, class_names)
    if ext == ".pt":
        return _open_pt(path, class_names)
    if ext == ".csv":
        return _open_csv(path, class_names)
    raise PredictionFileError(f"{path}: unknown format {ext!r}; expected .npz, .pt, .csv, or .pkl (mmaction2 / "
                              "PySlowFast results)")


def _open_pickled(path: str, class_names, format: str) -> PredictionFile:
    from .pickled import detect, from_mmaction2, from_slowfast, load_result

    obj = load_result(path, PredictionFileError)
    found = detect(obj)
    fmt = found if format == "auto" else format
    if fmt is None:
        raise PredictionFileError(f"{path}: not an mmaction2 dump (a list of dicts with 'pred_score') nor PySlowFast "
                                  "results ([all_preds, all_labels]); pass --format to say which")
    try:
        scores, target, multilabel = (from_mmaction2 if fmt == "mmaction2" else from_slowfast)(obj)
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise PredictionFileError(f"{path}: not {fmt} results: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    n, c = scores.shape
    if n == 0:
        raise PredictionFileError(f"{path}: no rows")
    if class_names is not None and len(class_names) != c:
        raise PredictionFileError(f"{path}: {len(class_names)} class names for {c} score columns")
    # one row per test video, as the framework aggregated its views: the row index is the video id,
    # so that two dumps of the same test list pair row by row
    pf = PredictionFile(path, n, c, multilabel, class_names, True, False)
    pf.rows_are = "mmaction2" if fmt == "mmaction2" else "PySlowFast"

    def chunks(size: int) -> Iterator[Chunk]:
        for row in range(0, n, size):
            sc = scores[row:row + size]
            _check_scores(path, sc, row)
            tg = target[row:row + size]
            _check_target(path, tg, pf.num_labels(), multilabel, row)
            vids = torch.arange(row, row + sc.shape[0], dtype=torch.long)
            yield Chunk(torch.from_numpy(sc.copy()), torch.from_numpy(tg.copy()), vids, None, row)

    pf.read_chunks = chunks
    return pf


# ------------------------------------------------------------------ checks shared by the formats
def _where(first: int, r: int, unit: str) -> str:
    """``row N`` (CSV line, 1-based, header = 1) or ``index i`` (array row, 0-based)."""
    return f"{unit} {first + int(r)}"


def _check_scores(path: str, scores: np.ndarray, first: int, unit: str = "index") -> None:
    bad = ~np.isfinite(scores)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise PredictionFileError(f"{path}: {_where(first, r, unit)}, column score_{c}: score is "
                                  f"{float(scores[r, c])!r}; scores must be finite numbers")


def _check_target(path: str, target: np.ndarray, c: int, multilabel: bool, first: int, unit: str = "index") -> None:
    if multilabel:
        bad = ~np.isin(target, (0, 1))
        if bad.any():
            r, k = np.argwhere(bad)[0]
            raise PredictionFileError(f"{path}: {_where(first, r, unit)}, target column {k}: {int(target[r, k])}; "
                                      "multi-label targets must be 0 or 1")
        return
    bad = (target < 0) | (target >= c)
    if bad.any():
        r = int(np.argmax(bad))
        raise PredictionFileError(f"{path}: {_where(first, r, unit)}, column target: label {int(target[r])} is "
                                  f"outside the {c} classes (0..{c - 1})")


def _ids(path: str, values, registry: IdRegistry, name: str, first_row: int) -> Tensor:
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        return registry.ids([str(v) for v in arr])
    if arr.dtype.kind == "O":
        if all(isinstance(v, str) for v in arr):
            return registry.ids(list(arr))
        raise PredictionFileError(f"{path}: {name} must be integers or strings")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise PredictionFileError(f"{path}: {name} must be integers or strings, got dtype {arr.dtype}")
    return torch.from_numpy(arr.astype(np.int64))


def _names(path: str, names, c: int) -> Optional[List[str]]:
    if names is None:
        return None
    names = [str(n) for n in np.asarray(names).reshape(-1).tolist()]
    if len(names) != c:
        raise PredictionFileError(f"{path}: {len(names)} class names for {c} score columns")
    return names


# ------------------------------------------------------------------ npz (streamed)
def _npy_header(f):
    """Parse a ``.npy`` header with NumPy's public readers; the stream is left at the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


class _NpyMember:
    def __init__(self, zf: zipfile.ZipFile, path: str, key: str) -> None:
        self.zf, self.name, self.path, self.key = zf, key + ".npy", path, key
        with zf.open(self.name) as f:
            shape, fortran, dtype = _npy_header(f)
        if fortran and len(shape) > 1:
            raise PredictionFileError(f"{path}: array {key!r} is Fortran-ordered; save it C-ordered")
        self.shape, self.dtype = shape, dtype

    def load(self) -> np.ndarray:
        with self.zf.open(self.name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def rows(self, size: int) -> Iterator[np.ndarray]:
        if self.dtype.hasobject:
            raise PredictionFileError(f"{self.path}: array {self.key!r} holds Python objects; save plain numbers/strings")
        with self.zf.open(self.name) as f:
            _npy_header(f)
            row_items = int(np.prod(self.shape[1:])) if len(self.shape) > 1 else 1
            row_bytes = row_items * self.dtype.itemsize
            n = self.shape[0] if self.shape else 0
            for start in range(0, n, size):
                k = min(size, n - start)
                buf = f.read(k * row_bytes)
                if len(buf) != k * row_bytes:
                    raise PredictionFileError(f"{self.path}: array {self.key!r} is truncated")
                yield np.frombuffer(buf, dtype=self.dtype).reshape((k,) + tuple(self.shape[1:]))


def _open_npz(path: str, class_names) -> PredictionFile:
    try:
        zf = zipfile.ZipFile(path)
        keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, OSError) as e:
        raise PredictionFileError(f"{path}: not a readable .npz file ({e})") from None
    for k in ("scores", "target"):
        if k not in keys:
            raise PredictionFileError(f"{path}: missing array {k!r} (found {sorted(keys)})")
    try:
        m = {k: _NpyMember(zf, path, k) for k in keys}
    except ValueError as e:
        raise PredictionFileError(f"{path}: unreadable array header ({e})") from None
    s, t = m["scores"], m["target"]
    if len(s.shape) != 2:
        raise PredictionFileError(f"{path}: 'scores' must be (N, C), got shape {s.shape}")
    if s.dtype.kind not in "fiu":
        raise PredictionFileError(f"{path}: 'scores' must be numeric, got dtype {s.dtype}")
    n, c = s.shape
    if n == 0:
        raise PredictionFileError(f"{path}: no rows ('scores' is empty)")
    multilabel = len(t.shape) == 2
    if t.shape[0] != n or (multilabel and t.shape[1] != c) or len(t.shape) > 2:
        raise PredictionFileError(f"{path}: 'target' must be ({n},) or ({n}, {c}), got shape {t.shape}")
    for k in ("video_ids", "clip_ids"):
        if k in m and m[k].shape != (n,):
            raise PredictionFileError(f"{path}: {k!r} must be ({n},), got shape {m[k].shape}")
    names = class_names or (_names(path, m["class_names"].load(), c) if "class_names" in keys else None)
    pf = PredictionFile(path, n, c, multilabel, names, "video_ids" in keys, "clip_ids" in keys)
    pf.read_column = lambda name: m[name].load() if name in m else None

    def chunks(size: int) -> Iterator[Chunk]:
        vid_iter = m["video_ids"].rows(size) if "video_ids" in keys and m["video_ids"].dtype.kind != "U" else None
        vid_all = m["video_ids"].load() if "video_ids" in keys and vid_iter is None else None
        clip_iter = m["clip_ids"].rows(size) if "clip_ids" in keys else None
        row = 0
        for sc, tg in zip(s.rows(size), t.rows(size)):
            k = sc.shape[0]
            sc = sc.astype(np.float32)
            _check_scores(path, sc, row)
            if tg.dtype.kind == "f" and not np.all(tg == np.round(tg)):
                raise PredictionFileError(f"{path}: 'target' holds non-integer values")
            tg = tg.astype(np.int64)
            _check_target(path, tg, pf.num_labels(), multilabel, row)
            vids = None
            if vid_iter is not None:
                vids = _ids(path, next(vid_iter), pf.registry, "video_ids", row)
            elif vid_all is not None:
                vids = _ids(path, vid_all[row:row + k], pf.registry, "video_ids", row)
            cids = _ids(path, next(clip_iter), pf.registry, "clip_ids", row) if clip_iter is not None else None
            yield Chunk(torch.from_numpy(sc.copy()), torch.from_numpy(tg), vids, cids, row)
            row += k

    pf.read_chunks = chunks
    return pf


# ------------------------------------------------------------------ pt (memory-mapped)
def _open_pt(path: str, class_names) -> PredictionFile:
    try:
        try:
            d = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        first = (str(e).strip().splitlines() or [""])[0]
        raise PredictionFileError(f"{path}: not a readable .pt file ({type(e).__name__}: {first})") from None
    if not isinstance(d, dict):
        raise PredictionFileError(f"{path}: expected a dict with 'scores' and 'target', got {type(d).__name__}")
    for k in ("scores", "target"):
        if k not in d:
            raise PredictionFileError(f"{path}: missing key {k!r} (found {sorted(d)})")
    s, t = torch.as_tensor(d["scores"]), torch.as_tensor(d["target"])
    if s.dim() != 2 or not (s.is_floating_point() or not s.dtype.is_complex):
        raise PredictionFileError(f"{path}: 'scores' must be a (N, C) numeric tensor, got shape {tuple(s.shape)}")
    n, c = s.shape
    if n == 0:
        raise PredictionFileError(f"{path}: no rows ('scores' is empty)")
    multilabel = t.dim() == 2
    if t.shape[0] != n or (multilabel and t.shape[1] != c) or t.dim() > 2:
        raise PredictionFileError(f"{path}: 'target' must be ({n},) or ({n}, {c}), got shape {tuple(t.shape)}")
    vid, cid = d.get("video_ids"), d.get("clip_ids")
    for k, v in (("video_ids", vid), ("clip_ids", cid)):
        if v is not None and len(v) != n:
            raise PredictionFileError(f"{path}: {k!r} must have {n} entries, got {len(v)}")
    names = class_names or (_names(path, d["class_names"], c) if d.get("class_names") is not None else None)
    pf = PredictionFile(path, n, c, multilabel, names, vid is not None, cid is not None)
    pf.read_column = lambda name: d.get(name) if name not in ("scores", "target") else None

    def chunks(size: int) -> Iterator[Chunk]:
        for row in range(0, n, size):
            sl = slice(row, row + size)
            sc = s[sl].float().numpy()
            _check_scores(path, sc, row)
            tg = t[sl]
            if tg.is_floating_point() and not torch.equal(tg, tg.round()):
                raise PredictionFileError(f"{path}: 'target' holds non-integer values")
            tg = tg.long().numpy()
            _check_target(path, tg, pf.num_labels(), multilabel, row)
            v = None if vid is None else _ids(path, vid[sl] if isinstance(vid, Tensor) else np.asarray(vid[sl]), pf.registry, "video_ids", row)
            ci = None if cid is None else _ids(path, cid[sl] if isinstance(cid, Tensor) else np.asarray(cid[sl]), pf.registry, "clip_ids", row)
            yield Chunk(torch.from_numpy(sc.copy()), torch.from_numpy(tg), v, ci, row)

    pf.read_chunks = chunks
    return pf


# ------------------------------------------------------------------ csv (streamed)
def _open_csv(path: str, class_names) -> PredictionFile:
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError) as e:
        raise PredictionFileError(f"{path}: not a readable CSV file ({e})") from None
    if not header:
        raise PredictionFileError(f"{path}: empty file; expected a header video_id, clip_id, target, score_0, ...")
    header = [h.strip() for h in header]
    for col in ("target", "score_0"):
        if col not in header:
            raise PredictionFileError(f"{path}: row 1: missing column {col!r} (header: {', '.join(header[:6])}...)")
    score_cols = [i for i, h in enumerate(header) if h.startswith("score_")]
    c = len(score_cols)
    expected = [f"score_{k}" for k in range(c)]
    if [header[i] for i in score_cols] != expected:
        raise PredictionFileError(f"{path}: row 1: score columns must be score_0 .. score_{c - 1} in order")
    ti = header.index("target")
    vi = header.index("video_id") if "video_id" in header else None
    ci = header.index("clip_id") if "clip_id" in header else None
    pf = PredictionFile(path, None, c, False, class_names, vi is not None, ci is not None)
    by_name = {n: k for k, n in enumerate(class_names)} if class_names is not None else None
    # a first streaming pass decides, for the whole file: multi-label (a target with several labels —
    # space-separated indices, or names separated by "|" — or none) and whether video ids are integers
    # (else every id is hashed as a string)
    multilabel, int_ids, rows = False, True, 0
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            if not row:
                continue
            rows += 1
            if ti < len(row) and _several_labels(row[ti], by_name):
                multilabel = True
            if vi is not None and vi < len(row) and not row[vi].strip().lstrip("-").isdigit():
                int_ids = False
    if rows == 0:
        raise PredictionFileError(f"{path}: no rows (only the header)")
    pf.multilabel, pf.num_rows = multilabel, rows
    if class_names is not None and len(class_names) != c:
        raise PredictionFileError(f"{path}: {len(class_names)} class names for {c} score columns")

    def chunks(size: int) -> Iterator[Chunk]:
        with open(path, newline="") as f:
            r = csv.reader(f)
            next(r)
            buf: List[List[str]] = []
            first = 0
            line = 1
            for row in r:
                line += 1
                if not row:
                    continue
                if len(row) != len(header):
                    raise PredictionFileError(f"{path}: row {line}: {len(row)} columns, the header has {len(header)}")
                buf.append(row)
                if len(buf) == size:
                    yield _csv_chunk(path, buf, first, line - len(buf) + 1, score_cols, ti, vi, ci, c, multilabel, int_ids, pf,
                                     by_name)
                    first += len(buf)
                    buf = []
            if buf:
                yield _csv_chunk(path, buf, first, line - len(buf) + 1, score_cols, ti, vi, ci, c, multilabel, int_ids, pf,
                                 by_name)

    def column(name: str):
        if name not in header:
            return None
        j = header.index(name)
        with open(path, newline="") as f:
            r = csv.reader(f)
            next(r)
            return [row[j] for row in r if row]

    pf.read_chunks = chunks
    pf.read_column = column
    return pf


def _int_column(path: str, rows: List[List[str]], col: int, first_line: int, name: str, what: str) -> Tensor:
    """Column ``col`` of the rows as int64; the first non-integer cell raises with its row."""
    try:
        return torch.tensor([int(row[col]) for row in rows], dtype=torch.long)
    except ValueError:
        j = next(j for j, row in enumerate(rows) if not row[col].strip().lstrip("-").isdigit())
        raise PredictionFileError(f"{path}: row {first_line + j}, column {name}: {rows[j][col]!r} is not {what}") from None


def _several_labels(cell: str, by_name: Optional[Dict[str, int]]) -> bool:
    """A multi-label target cell: empty, names separated by ``|``, or several space-separated
    tokens that are not one class name."""
    text = cell.strip()
    if text == "" or "|" in text:
        return True
    tokens = text.split()
    if by_name is not None and not all(t.lstrip("-").isdigit() for t in tokens):
        return False  # one name (names may contain spaces; several names are separated by "|")
    return len(tokens) > 1


def _label(path: str, token: str, by_name: Optional[Dict[str, int]], c: int, where: str) -> int:
    """One label: a class index, or (with ``--class-names``) a class name, matched exactly."""
    tok = token.strip()
    if by_name is not None and tok in by_name:
        return by_name[tok]
    try:
        lab = int(tok)
    except ValueError:
        what = "a class name (from --class-names) nor a label index" if by_name is not None else \
            "a label index (pass --class-names to give targets by name)"
        raise PredictionFileError(f"{path}: {where}, column target: {tok!r} is not {what}") from None
    if not 0 <= lab < c:
        raise PredictionFileError(f"{path}: {where}, column target: label {lab} is outside the {c} classes (0..{c - 1})")
    return lab


def _csv_chunk(path, rows, first, first_line, score_cols, ti, vi, ci, c, multilabel, int_ids, pf, by_name=None) -> Chunk:
    k = len(rows)
    sc = np.empty((k, c), dtype=np.float32)
    for j, row in enumerate(rows):
        try:
            sc[j] = [float(row[i]) for i in score_cols]
        except ValueError:
            for m, i in enumerate(score_cols):
                try:
                    float(row[i])
                except ValueError:
                    raise PredictionFileError(f"{path}: row {first_line + j}, column score_{m}: {row[i]!r} is not a "
                                              "number") from None
    _check_scores(path, sc, first_line, "row")
    if multilabel:
        tg = np.zeros((k, c), dtype=np.int64)
        for j, row in enumerate(rows):
            text = row[ti].strip()
            if "|" in text:
                tokens = text.split("|")
            elif by_name is not None and not all(t.lstrip("-").isdigit() for t in text.split()):
                tokens = [text]
            else:
                tokens = text.split()
            for tok in tokens:
                if tok.strip():
                    tg[j, _label(path, tok, by_name, c, f"row {first_line + j}")] = 1
    elif by_name is not None:
        tg = np.asarray([_label(path, row[ti], by_name, c, f"row {first_line + j}") for j, row in enumerate(rows)],
                        dtype=np.int64)
        _check_target(path, tg, pf.num_labels(), False, first_line, "row")
    else:
        tg = _int_column(path, rows, ti, first_line, "target", "a label index").numpy()
        _check_target(path, tg, pf.num_labels(), False, first_line, "row")
    vids = None
    if vi is not None:
        vals = [row[vi].strip() for row in rows]
        if int_ids:
            vids = torch.tensor([int(v) for v in vals], dtype=torch.long)
        else:
            vids = pf.registry.ids(vals)
    cids = None
    if ci is not None:
        cids = _int_column(path, rows, ci, first_line, "clip_id", "an integer")
    return Chunk(torch.from_numpy(sc), torch.from_numpy(tg), vids, cids, first)
