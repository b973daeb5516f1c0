"""YouTube-8M submissions, evaluated as the official ``eval.py`` does, with
:class:`~video_metrics.YouTube8MMetrics` (``video-metrics report --format youtube8m``).

* submission: the Kaggle CSV ``VideoId,LabelConfidencePairs``, one video a line, its predictions
  as ``"label score label score ..."`` (the top 20 by convention; any number is read, the
  ``top_k`` highest are used);
* labels: a CSV ``VideoId,Labels`` with the video's label ids separated by spaces (an empty cell:
  a video without a label).

Every labelled video counts: a labelled video without a line in the submission is a video with
no prediction (a miss: Hit@1 and PERR 0, its labels in every denominator), counted and said in
the output. A submitted id without a label line, a repeated id, a label id outside the classes,
a score that is not a number in [0, 1], a label listed twice on one line or an odd number of
tokens is an error naming the file and line (``video-metrics`` prints it in one line, exit 2).
"""
from __future__ import annotations

import csv
import html
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .functional.youtube8m import KEYS
from .metrics.youtube8m import YouTube8MMetrics

__all__ = ["YouTube8MFileError", "read_labels", "read_submission", "evaluate_submission", "format_youtube8m_table",
           "write_youtube8m_report"]


class YouTube8MFileError(ValueError):
    """A submission or labels file cannot be read as documented; the message names the file and line."""


def _rows(path: str, columns: Tuple[str, str]) -> Iterator[Tuple[int, str, str]]:
    """``(line, first column, second column)`` of a CSV whose header names ``columns``."""
    try:
        f = open(path, newline="")
    except OSError as e:
        raise YouTube8MFileError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise YouTube8MFileError(f"{path}: empty file (expected the header {','.join(columns)})") from None
        except csv.Error as e:
            raise YouTube8MFileError(f"{path}:1: not CSV ({e})") from None
        if header[:2] != list(columns):
            raise YouTube8MFileError(f"{path}:1: the header must be {','.join(columns)}, got {','.join(header)}")
        try:
            for row in reader:
                if not row:
                    continue
                if len(row) != 2:
                    raise YouTube8MFileError(f"{path}:{reader.line_num}: expected 2 columns ({','.join(columns)}), "
                                             f"got {len(row)}")
                yield reader.line_num, row[0].strip(), row[1]
        except csv.Error as e:
            raise YouTube8MFileError(f"{path}:{reader.line_num}: not CSV ({e})") from None


def _label_id(path: str, line: int, token: str, num_classes: int) -> int:
    try:
        label = int(token)
    except ValueError:
        raise YouTube8MFileError(f"{path}:{line}: label {token!r} is not an integer class id") from None
    if not 0 <= label < num_classes:
        raise YouTube8MFileError(f"{path}:{line}: label {label} outside the {num_classes} classes "
                                 "(pass --num-classes if the vocabulary is larger)")
    return label


def read_labels(path: str, num_classes: int) -> Dict[str, Tuple[int, Tuple[int, ...]]]:
    """``VideoId -> (line, label ids)`` of a labels CSV (``VideoId,Labels``)."""
    out: Dict[str, Tuple[int, Tuple[int, ...]]] = {}
    for line, vid, cell in _rows(path, ("VideoId", "Labels")):
        if not vid:
            raise YouTube8MFileError(f"{path}:{line}: empty VideoId")
        if vid in out:
            raise YouTube8MFileError(f"{path}:{line}: video {vid!r} is listed again (first on line {out[vid][0]})")
        labels = tuple(_label_id(path, line, t, num_classes) for t in cell.split())
        if len(set(labels)) != len(labels):
            raise YouTube8MFileError(f"{path}:{line}: video {vid!r} lists a label twice")
        out[vid] = (line, labels)
    if not out:
        raise YouTube8MFileError(f"{path}: no labelled video")
    return out


def read_submission(path: str, num_classes: int) -> Iterator[Tuple[int, str, List[int], List[float]]]:
    """``(line, VideoId, label ids, scores)`` of each line of a Kaggle submission
    (``VideoId,LabelConfidencePairs``), checked as the module doc says (ids not yet: see
    :func:`evaluate_submission`)."""
    seen: Dict[str, int] = {}
    for line, vid, cell in _rows(path, ("VideoId", "LabelConfidencePairs")):
        if not vid:
            raise YouTube8MFileError(f"{path}:{line}: empty VideoId")
        if vid in seen:
            raise YouTube8MFileError(f"{path}:{line}: video {vid!r} is submitted again (first on line {seen[vid]})")
        seen[vid] = line
        tokens = cell.split()
        if len(tokens) % 2:
            raise YouTube8MFileError(f"{path}:{line}: LabelConfidencePairs must be 'label score' pairs, got "
                                     f"{len(tokens)} tokens")
        labels = [_label_id(path, line, t, num_classes) for t in tokens[0::2]]
        try:
            scores = [float(t) for t in tokens[1::2]]
        except ValueError:
            raise YouTube8MFileError(f"{path}:{line}: a confidence is not a number") from None
        if not all(0.0 <= s <= 1.0 for s in scores):  # also False for NaN
            raise YouTube8MFileError(f"{path}:{line}: confidences must be numbers in [0, 1]")
        if len(set(labels)) != len(labels):
            raise YouTube8MFileError(f"{path}:{line}: a label is listed twice")
        yield line, vid, labels, scores


def _batch(rows: Sequence[Tuple[List[int], List[float], Tuple[int, ...], int]], num_classes: int):
    """``(scores, classes, target, video_ids)`` tensors of a chunk of ``(labels, scores, truth, index)``."""
    width = max(1, max(len(r[0]) for r in rows))
    scores = np.zeros((len(rows), width), dtype=np.float64)
    classes = np.full((len(rows), width), -1, dtype=np.int64)
    target = torch.zeros(len(rows), num_classes, dtype=torch.bool)
    for i, (labels, conf, truth, _) in enumerate(rows):
        classes[i, :len(labels)] = labels
        scores[i, :len(conf)] = conf
        if truth:
            target[i, list(truth)] = True
    ids = torch.tensor([r[3] for r in rows], dtype=torch.long)
    return torch.from_numpy(scores), torch.from_numpy(classes), target, ids


def evaluate_submission(submission: str, labels: str, num_classes: int = 3862, top_k: int = 20,
                        chunk: int = 4096) -> Tuple[Dict[str, float], Dict[str, object], Dict[str, list]]:
    """``(scalars, info, per_class)`` of a submission against its labels (module doc): the keys of
    :class:`~video_metrics.YouTube8MMetrics`; ``info`` the counts (labelled, submitted, missing
    videos); ``per_class`` ``{"ap": [...], "positives": [...]}`` (``None`` where undefined)."""
    truth = read_labels(labels, num_classes)
    index = {vid: i for i, vid in enumerate(truth)}
    most = max(len(t[1]) for t in truth.values())
    metric = YouTube8MMetrics(num_classes, top_k=top_k, input="probs", max_labels=max(1, most),
                              score_dtype=torch.float64)
    submitted = set()
    rows: list = []
    for line, vid, lab, conf in read_submission(submission, num_classes):
        if vid not in index:
            raise YouTube8MFileError(f"{submission}:{line}: video {vid!r} has no line in {labels}")
        submitted.add(vid)
        rows.append((lab, conf, truth[vid][1], index[vid]))
        if len(rows) == chunk:
            s, c, t, ids = _batch(rows, num_classes)
            metric.update_top_k(s, c, t, video_ids=ids)
            rows = []
    missing = [vid for vid in truth if vid not in submitted]
    rows += [([], [], truth[vid][1], index[vid]) for vid in missing]
    for lo in range(0, len(rows), chunk):
        s, c, t, ids = _batch(rows[lo:lo + chunk], num_classes)
        metric.update_top_k(s, c, t, video_ids=ids)
    out = metric.results()  # one evaluation for the scalars and the per-class terms
    scalars = {k: float(out[k]) for k in KEYS}
    per = {"ap": out["per_class_ap"], "positives": out["positives"]}
    ap = [None if not np.isfinite(v) else float(v) for v in per["ap"].tolist()]
    info = {"num_classes": num_classes, "top_k": top_k, "labelled_videos": len(truth), "submitted_videos": len(submitted),
            "missing_videos": len(missing), "classes_with_positives": int((per["positives"] > 0).sum()),
            "tie_rule": "equal confidences: one threshold (each hit gets the precision at the end of its tie group)"}
    return scalars, info, {"ap": ap, "positives": per["positives"].tolist()}


def format_youtube8m_table(scalars: Dict[str, float], info: Dict[str, object]) -> str:
    """The text table ``video-metrics report --format youtube8m`` prints."""
    names = {"gap": f"GAP@{info.get('top_k', 20)}", "hit_at_1": "Hit@1", "perr": "PERR", "map": "mAP"}
    lines = [f"{'metric':<12}{'value':>10}", "-" * 22]
    lines += [f"{names[k]:<12}{scalars[k]:>10.4f}" for k in ("gap", "hit_at_1", "perr", "map")]
    lines.append(f"{int(scalars['num_videos'])} videos, {info['classes_with_positives']} classes with a label")
    if info.get("missing_videos"):
        lines[-1] += (f"; {info['missing_videos']} labelled video(s) had no line in the submission and count as "
                      "misses (no prediction)")
    return "\n".join(lines)


def write_youtube8m_report(scalars: Dict[str, float], info: Dict[str, object], per_class: Dict[str, list],
                           out_dir: str, class_names: Optional[Sequence[str]] = None, source: Optional[str] = None,
                           title: str = "video_metrics YouTube-8M report", n_classes_listed: int = 20) -> Dict[str, str]:
    """``metrics.json`` (scalars, info, per-class AP and positives), ``report.html`` and
    ``per_class_ap.png`` (the worst and best classes by AP, with their positives) in ``out_dir``;
    every other file there is kept. Returns name -> path."""
    from .plots import plot_per_class
    from .report import CSS, fmt_value, report_folder, save_figures

    out_dir = os.path.abspath(out_dir)
    ap = [np.nan if v is None else v for v in per_class["ap"]]
    support = per_class["positives"]
    images: Dict[str, str] = {}
    with report_folder(out_dir) as tmp:
        fig = plot_per_class(ap, support, class_names, metric="AP", max_bars=40)
        save_figures(tmp, [("per_class_ap", fig)], images)
        with open(os.path.join(tmp, "metrics.json"), "w") as f:
            clean = {k: (v if np.isfinite(v) else None) for k, v in scalars.items()}
            json.dump({"scalars": clean, "info": info, "per_class": per_class}, f, indent=1, allow_nan=False)
        defined = [i for i, v in enumerate(ap) if np.isfinite(v)]
        order = sorted(defined, key=lambda i: (ap[i], i))
        listed = order[:n_classes_listed] + [i for i in order[-n_classes_listed:] if i not in order[:n_classes_listed]]
        name = (lambda i: class_names[i]) if class_names else str
        body = "".join(f"<tr><td>{i}</td><td>{html.escape(name(i))}</td><td>{fmt_value(ap[i])}</td><td>{support[i]}</td></tr>"
                       for i in listed)
        head = "".join(f"<tr><td>{html.escape(k)}</td><td>{fmt_value(scalars[k])}</td></tr>" for k in KEYS)
        notes = [format_youtube8m_table(scalars, info).splitlines()[-1] + ".", info["tie_rule"] + "."]
        src = f"<p class=\"note\">source: <code>{html.escape(source)}</code></p>" if source else ""
        page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{src}"
                + "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in notes)
                + f"<table id=\"headline\"><tbody>{head}</tbody></table>"
                + f"<img src=\"{images['per_class_ap']}\" alt=\"per-class AP\">"
                + f"<h2>Worst and best classes ({n_classes_listed} each)</h2><table id=\"classes\"><thead><tr>"
                  "<th>class</th><th>name</th><th>AP</th><th>positives</th></tr></thead><tbody>" + body
                + "</tbody></table></body></html>")
        with open(os.path.join(tmp, "report.html"), "w") as f:
            f.write(page)
    paths = {"metrics.json": os.path.join(out_dir, "metrics.json"), "report.html": os.path.join(out_dir, "report.html")}
    paths.update({k: os.path.join(out_dir, v) for k, v in images.items()})
    return paths
