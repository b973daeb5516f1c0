"""EPIC-Kitchens-100 action recognition results, evaluated as the official ``evaluate.py`` does,
with :class:`~video_metrics.actions.ActionMetrics` (``video-metrics report --format epic``).

* results: ``.pkl`` or ``.pt`` in either layout the official script reads (see
  :func:`video_metrics.pickled.from_epic`), loaded without running anything in the file;
* labels: the annotations CSV (``EPIC_100_validation.csv``: ``narration_id``, ``verb_class``,
  ``noun_class``, ``participant_id``). The official script reads the pickled DataFrame; a pickled
  DataFrame cannot be read without running pandas code, so the CSV of the same annotations is
  asked for instead;
* optional lists, the annotation repository's CSVs: tail verbs (column ``verb``), tail nouns
  (``noun``), unseen participants (``participant_id``).

As the official script, the labels are restricted to the submitted segments (its
``labels.loc[narration_ids]``); a submitted id without a label is an error, labelled segments
without a submission are counted (``num_unsubmitted``) and reported. Keys as
:class:`~video_metrics.actions.ActionMetrics` (fractions; the official script prints
percentages), with ``unseen/...`` and ``seen/...`` when the unseen participants are given.
"""
from __future__ import annotations

import csv
import html
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .actions import ActionMetrics

__all__ = ["read_labels", "read_column", "evaluate_results", "write_action_report", "format_action_table",
           "EpicFileError"]


class EpicFileError(ValueError):
    """An EPIC results, labels or list file cannot be read as documented; the message says where."""


def read_column(path: str, column: str) -> List[str]:
    """The values of ``column`` in a CSV with a header (the annotation repository's lists)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise EpicFileError(f"{path}: no column {column!r} (found {reader.fieldnames})")
            return [row[column].strip() for row in reader if row.get(column, "").strip()]
    except OSError as e:
        raise EpicFileError(f"{path}: cannot read ({e.strerror})") from None


def read_labels(path: str) -> Dict[str, Tuple[int, int, str]]:
    """``narration_id -> (verb_class, noun_class, participant_id)`` from an annotations CSV."""
    if path.lower().endswith((".pkl", ".pickle")):
        raise EpicFileError(f"{path}: a pickled DataFrame runs pandas code when loaded; pass the annotations CSV "
                            "(EPIC_100_validation.csv, same rows) instead")
    out: Dict[str, Tuple[int, int, str]] = {}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            need = ("narration_id", "verb_class", "noun_class")
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise EpicFileError(f"{path}: missing column(s) {missing} (found {reader.fieldnames})")
            for line, row in enumerate(reader, start=2):
                try:
                    v, n = int(row["verb_class"]), int(row["noun_class"])
                except ValueError:
                    raise EpicFileError(f"{path}: line {line}: verb_class/noun_class must be integers, got "
                                        f"{row['verb_class']!r}, {row['noun_class']!r}") from None
                pid = (row.get("participant_id") or row["narration_id"].split("_")[0]).strip()
                out[row["narration_id"].strip()] = (v, n, pid)
    except OSError as e:
        raise EpicFileError(f"{path}: cannot read ({e.strerror})") from None
    if not out:
        raise EpicFileError(f"{path}: no labelled segment")
    return out


def _ints(path: str, column: str, size: int, what: str) -> List[int]:
    vals = read_column(path, column)
    try:
        out = [int(v) for v in vals]
    except ValueError:
        raise EpicFileError(f"{path}: column {column!r} must hold class indices") from None
    bad = [v for v in out if not 0 <= v < size]
    if bad:
        raise EpicFileError(f"{path}: {what} {bad[:5]} outside the {size} classes of the results")
    return out


def evaluate_results(results: str, labels: str, tail_verbs: Optional[str] = None, tail_nouns: Optional[str] = None,
                     unseen_participants: Optional[str] = None, top_k: Sequence[int] = (1, 5), input: str = "logits",
                     action_scores: str = "product", chunk: int = 4096, loaded: Any = None
                     ) -> Tuple[Dict[str, float], Dict[str, object]]:
    """``(scalars, info)`` for an EPIC results file against its labels (see the module doc).
    ``loaded``: the file's object when the caller has read it already (to detect its layout)."""
    from .pickled import from_epic, load_result

    obj = load_result(results, EpicFileError) if loaded is None else loaded
    try:
        verb, noun, ids = from_epic(obj)
    except (ValueError, TypeError) as e:
        raise EpicFileError(f"{results}: not EPIC-Kitchens results: {str(e).splitlines()[0]}") from None
    if not (np.isfinite(verb).all() and np.isfinite(noun).all()):
        raise EpicFileError(f"{results}: 'verb_output'/'noun_output' hold NaN or inf")
    gt = read_labels(labels)
    unknown = [i for i in ids if i not in gt]
    if unknown:
        raise EpicFileError(f"{results}: {len(unknown)} narration id(s) without a label in {labels}, e.g. "
                            f"{unknown[:3]}")
    tv = np.asarray([gt[i][0] for i in ids], dtype=np.int64)
    tn = np.asarray([gt[i][1] for i in ids], dtype=np.int64)
    nv, nn = verb.shape[1], noun.shape[1]
    for name, t, size in (("verb_class", tv, nv), ("noun_class", tn, nn)):
        if t.min() < 0 or t.max() >= size:
            raise EpicFileError(f"{labels}: {name} outside the {size} classes of the results' outputs")
    kw = dict(top_k=tuple(top_k), input=input, action_scores=action_scores)
    if tail_verbs:
        kw["tail_verbs"] = _ints(tail_verbs, "verb", nv, "tail verb(s)")
    if tail_nouns:
        kw["tail_nouns"] = _ints(tail_nouns, "noun", nn, "tail noun(s)")
    groups = None
    if unseen_participants:
        unseen = set(read_column(unseen_participants, "participant_id"))
        groups = torch.tensor([int(gt[i][2] in unseen) for i in ids], dtype=torch.long)
        kw["group_names"] = {1: "unseen", 0: "seen"}
    try:
        m = ActionMetrics(nv, nn, **kw)
    except ValueError as e:
        raise EpicFileError(str(e)) from None
    for lo in range(0, len(ids), chunk):
        s = slice(lo, lo + chunk)
        m.update(torch.from_numpy(verb[s]), torch.from_numpy(noun[s]), torch.from_numpy(tv[s]),
                 torch.from_numpy(tn[s]), groups=groups[s] if groups is not None else None)
    scalars = {k: float(v) for k, v in m.compute().items()}
    info = {"num_verbs": nv, "num_nouns": nn, "num_unsubmitted": len(gt) - len(ids),
            "unseen_segments": int(groups.sum()) if groups is not None else None,
            "action_scores": action_scores, "input": input}
    return scalars, info


_HEADS = ("verb", "noun", "action")


def _rows(scalars: Dict[str, float]) -> List[Tuple[str, List[str]]]:
    """Rows (subset, key suffix) present in ``scalars``, in the official display order."""
    subsets = [""] + sorted({k.split("/")[0] + "/" for k in scalars if k.count("/") == 2})
    suffixes: List[str] = []
    for k in scalars:
        if k.startswith("verb/"):
            suffixes.append(k[len("verb/"):])
    out = []
    for sub in subsets:
        cols = [s for s in suffixes if any(f"{sub}{h}/{s}" in scalars for h in _HEADS)]
        if cols:
            out.append((sub.rstrip("/") or "all", cols))
    return out


def format_action_table(scalars: Dict[str, float], info: Optional[Dict[str, object]] = None) -> str:
    """A text table: one row per subset and key, verb / noun / action side by side."""
    lines = [f"{'subset':<10}{'metric':<20}{'verb':>10}{'noun':>10}{'action':>10}", "-" * 60]
    for sub, cols in _rows(scalars):
        prefix = "" if sub == "all" else sub + "/"
        for c in cols:
            cells = "".join(f"{scalars[f'{prefix}{h}/{c}']:>10.4f}" if f"{prefix}{h}/{c}" in scalars else f"{'':>10}"
                            for h in _HEADS)
            lines.append(f"{sub:<10}{c:<20}{cells}")
    lines.append(f"{int(scalars['num_segments'])} segments")
    if info and info.get("num_unsubmitted"):
        lines[-1] += f"; {info['num_unsubmitted']} labelled segment(s) had no prediction and were not evaluated"
    return "\n".join(lines)


def write_action_report(scalars: Dict[str, float], info: Dict[str, object], out_dir: str,
                        title: str = "video_metrics EPIC-Kitchens report", source: Optional[str] = None
                        ) -> Dict[str, str]:
    """``metrics.json`` (``{"scalars": ..., "info": ...}``) and ``report.html`` in ``out_dir``,
    written to a temporary folder first and moved in complete."""
    from .report import CSS, REPORT_FILES, fmt_value, report_folder

    out_dir = os.path.abspath(out_dir)
    clean = {k: (v if np.isfinite(v) else None) for k, v in scalars.items()}
    with report_folder(out_dir) as tmp:
        with open(os.path.join(tmp, "metrics.json"), "w") as f:
            json.dump({"scalars": clean, "info": info}, f, indent=1, allow_nan=False)
        body = []
        for sub, cols in _rows(scalars):
            prefix = "" if sub == "all" else sub + "/"
            for c in cols:
                cells = "".join(f"<td>{fmt_value(scalars.get(f'{prefix}{h}/{c}'))}</td>" for h in _HEADS)
                body.append(f"<tr><td>{html.escape(sub)}</td><td>{html.escape(c)}</td>{cells}</tr>")
        rule = ("the product of the heads' probabilities" if info.get("action_scores") == "product"
                else "the official script's softmax of the given scores")
        notes = [f"{int(scalars['num_segments'])} segments; action = (verb, noun) pair ranked by {rule}."]
        if info.get("num_unsubmitted"):
            notes.append(f"{info['num_unsubmitted']} labelled segment(s) had no prediction and were not evaluated "
                         "(as the official script, which evaluates the submitted segments only).")
        src = f"<p class=\"note\">source: <code>{html.escape(source)}</code></p>" if source else ""
        page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{src}"
                + "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in notes)
                + "<table id=\"actions\"><thead><tr><th>subset</th><th>metric</th><th>verb</th><th>noun</th>"
                  "<th>action</th></tr></thead><tbody>" + "".join(body) + "</tbody></table></body></html>")
        with open(os.path.join(tmp, "report.html"), "w") as f:
            f.write(page)
    return {n: os.path.join(out_dir, n) for n in REPORT_FILES}
