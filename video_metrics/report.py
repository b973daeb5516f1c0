"""A report folder from a :class:`~video_metrics.suite.SuiteReport`: ``metrics.json``,
``report.html`` (one page, no external resources) and the PNG figures it shows.

The folder is written atomically: everything goes to a temporary folder beside ``out_dir``
first and is moved in only when complete, so a failure never leaves a partial report that
looks complete.
"""
from __future__ import annotations

import html
import itertools
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from .plots import report_figures, save_png

__all__ = ["write_report", "REPORT_FILES", "write_comparison", "COMPARE_FILES", "report_folder", "OutputFolderError",
           "video_rows_report"]

REPORT_FILES = ("metrics.json", "report.html")
COMPARE_FILES = ("compare.json", "compare.html")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222;background:#fff}
h1{font-size:24px;margin-bottom:4px} h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 9px;text-align:right} th{background:#f3f5f8;cursor:default}
td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer} table.sortable th:hover{background:#e3e8f0}
.note{color:#666;font-size:12px} .figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start} .figs img{max-width:calc(50% - 8px);border:1px solid #eee} .wide img{max-width:100%}
.better{font-weight:600}
.scroll{overflow-x:auto;max-width:100%} .scroll table{margin:0} td .note{white-space:nowrap}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
        return asc ? c : -c;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def fmt_value(v, digits: int = 4) -> str:
    """A value as the tables print it: integers as such, floats with ``digits`` decimals, '–' for none."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}f}"


def _levels(report) -> List[str]:
    return [lv for lv in ("clip", "video") if getattr(report, lv, None) is not None]


def video_rows_report(report, framework: str):
    """``report`` of a result file whose rows are videos already (mmaction2 / PySlowFast: one row
    per test video, aggregated over its views by the framework): the video level only."""
    def video_only(d):  # rows are not clips: no clip level and no clip count
        return {k: v for k, v in d.items() if k.startswith("video/") and k != "video/num_clips"}

    for sl in report.slices:
        sl.scalars, sl.intervals = video_only(sl.scalars), video_only(sl.intervals)
    return replace(report, scalars=video_only(report.scalars), intervals=video_only(report.intervals), clip=None,
                   views=None, rows=f"videos as aggregated by {framework}")


def _headline(report) -> str:
    names: List[str] = []
    for k in report.scalars:
        level, _, name = k.partition("/")
        if level in ("clip", "video") and name not in names:
            names.append(name)
    rows = []
    for n in names:
        cells = []
        for level in _levels(report):
            v = report.scalars.get(f"{level}/{n}")
            iv = getattr(report, "intervals", {}).get(f"{level}/{n}")
            band = f" <span class=\"note\">[{fmt_value(iv[0])}, {fmt_value(iv[1])}]</span>" if iv is not None else ""
            cells.append(f"<td>{fmt_value(v, 0 if n.startswith(('num_', 'missing')) else 4)}{band}</td>")
        rows.append(f"<tr><td>{html.escape(n)}</td>{''.join(cells)}</tr>")
    if getattr(report, "rows", "clips") != "clips":
        video_head = f"video ({html.escape(report.rows)})"
    else:
        video_head = f"video ({html.escape(str(report.video_reduction))})"
    heads = "".join(f"<th>{'clip' if lv == 'clip' else video_head}</th>" for lv in _levels(report))
    return (f"<table id=\"headline\"><thead><tr><th>metric</th>{heads}"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _per_class(report) -> str:
    levels = [(lv, getattr(report, lv)) for lv in _levels(report)]
    cols = ["support", "precision", "recall", "f1", "ap"]
    head = "<th>class</th>" + "".join(f"<th>{lv} {c}</th>" for lv, _ in levels for c in cols)
    rows = []
    for i, name in enumerate(report.class_names):
        cells = [f"<td data-v=\"{html.escape(name)}\">{html.escape(name)}</td>"]
        for _, rep in levels:
            for c in cols:
                v = getattr(rep, c)[i]
                dv = "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
                cells.append(f"<td data-v=\"{dv}\">{fmt_value(v, 0 if c == 'support' else 3)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table class=\"sortable\" id=\"per-class\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _top_confusions(report, level: str) -> str:
    rep = getattr(report, level)
    if rep is None or not rep.top_confusions:
        return ""
    support = rep.support
    rows = "".join(
        f"<tr><td>{html.escape(report.class_names[t])}</td><td>{html.escape(report.class_names[p])}</td><td>{n}</td>"
        f"<td>{n / max(support[t], 1):.1%}</td></tr>" for t, p, n in rep.top_confusions)
    return (f"<h3>Top confusions, {level} level</h3><table><thead><tr><th>true</th><th>predicted</th><th>count</th>"
            f"<th>share of true</th></tr></thead><tbody>{rows}</tbody></table>")


#: the keys shown in the slices table, when the level has them
_SLICE_KEYS = ("top1", "top5", "acc", "balanced_acc", "mean_class_top1", "f1_macro", "mAP", "auprc_macro", "ap")


def _slice_cells(sl, num_clips: Optional[int] = None) -> List[str]:
    """A slice's label (noted when too small), videos and, when given, clips as sortable cells."""
    cells = [f"<td data-v=\"{html.escape(sl.label)}\">{html.escape(sl.label)}"
             + (" <span class=\"note\">(too small)</span>" if sl.too_small else "") + "</td>",
             f"<td data-v=\"{sl.num_videos}\">{sl.num_videos}</td>"]
    return cells + ([f"<td data-v=\"{num_clips}\">{num_clips}</td>"] if num_clips is not None else [])


def _slices(report) -> str:
    if not getattr(report, "slices", None):
        return ""
    keys: List[str] = []
    for sl in report.slices:
        for lv in ("clip", "video"):
            for k in _SLICE_KEYS:
                key = f"{lv}/{k}"
                if key in sl.scalars and key not in keys:
                    keys.append(key)
    head = "<th>slice</th><th>videos</th><th>clips</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = []
    for sl in report.slices:
        cells = _slice_cells(sl, sl.num_clips)
        for k in keys:
            v = sl.scalars.get(k)
            iv = sl.intervals.get(k)
            band = f" <span class=\"note\">[{fmt_value(iv[0], 3)}, {fmt_value(iv[1], 3)}]</span>" if iv is not None else ""
            dv = "" if v is None or not math.isfinite(v) else v
            cells.append(f"<td data-v=\"{dv}\">{fmt_value(v, 4)}{band}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<div class=\"scroll\"><table class=\"sortable\" id=\"slices\"><thead><tr>{head}</tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table></div><p class=\"note\">Group slices: the videos with that value; class slices: class averages over "
            "the slice's classes (multiclass sample keys over the samples of those classes).</p>")


def _coverage(report) -> str:
    cov = report.coverage
    if getattr(report, "rows", "clips") != "clips":
        return (f"<p class=\"note\" id=\"rows\">Rows are {html.escape(report.rows)}: one row per test video, the "
                "video level only (video id = row index).</p>")
    if cov is None:
        return "<p class=\"note\">No video ids: clip level only.</p>"
    items = [("videos", cov.num_videos), ("clips", cov.num_clips), ("duplicates dropped", cov.duplicates_dropped),
             ("clips per video (min)", cov.min_clips), ("clips per video (max)", cov.max_clips),
             ("missing videos", cov.missing_videos), ("videos with fewer clips", cov.videos_with_fewer_clips)]
    rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in items)
    return f"<table id=\"coverage\"><tbody>{rows}</tbody></table>"


class OutputFolderError(ValueError):
    """``out_dir`` cannot be used as a report folder (it names a file, or cannot be created)."""


def _manifest(kind: str) -> str:
    return f".video-metrics-{kind}.json"


def _written_before(out_dir: str, kind: str) -> List[str]:
    """The files the previous report of this kind wrote into ``out_dir`` (plain names only)."""
    try:
        with open(os.path.join(out_dir, _manifest(kind))) as f:
            names = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n and os.path.basename(n) == n and not n.startswith(".")]


@contextmanager
def report_folder(out_dir: str, kind: str = "report") -> Iterator[str]:
    """A temporary folder beside ``out_dir`` to write a report into. On success its files are
    moved into ``out_dir`` (replacing files of the same names) and the files that the previous
    report of the same ``kind`` wrote there but this one does not are removed — they are listed in
    ``.video-metrics-<kind>.json`` — so the folder keeps every file a report did not write (the
    user's own figures, pages and data). A failure leaves ``out_dir`` as it was."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputFolderError(f"--out {out_dir} is a file, not a folder: give a folder for the report")
    parent = os.path.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".report-", dir=parent)
    except OSError as e:
        raise OutputFolderError(f"--out {out_dir}: cannot create the report folder ({e.strerror})") from None
    try:
        yield tmp
        os.makedirs(out_dir, exist_ok=True)
        new = sorted(os.listdir(tmp))
        for old in set(_written_before(out_dir, kind)) - set(new):
            path = os.path.join(out_dir, old)
            if os.path.isfile(path):
                os.remove(path)
        for name in new:
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
        with open(os.path.join(tmp, "manifest"), "w") as f:
            json.dump(new, f)
        os.replace(os.path.join(tmp, "manifest"), os.path.join(out_dir, _manifest(kind)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_report(report, out_dir: str, title: str = "video_metrics report", source: Optional[str] = None,
                 max_classes_in_matrix: int = 50, extra_figures: Optional[Dict[str, object]] = None,
                 notes: Sequence[str] = ()) -> Dict[str, str]:
    """Write ``metrics.json``, ``report.html`` and the figures of ``report`` (a
    :class:`~video_metrics.suite.SuiteReport`, or a suite, whose ``report()`` is taken) into
    ``out_dir`` (created; the files of an earlier report there are replaced, every other file is
    kept): the folder ``video-metrics report`` writes. ``extra_figures``: more figures (name ->
    matplotlib ``Figure``) shown at the end, e.g. explanation overlays. Returns name -> path.

    >>> import os, tempfile
    >>> import video_metrics as vm
    >>> from video_metrics.data.predictions import synthetic_predictions
    >>> p = synthetic_predictions(num_videos=20, clips_per_video=2, num_classes=4)
    >>> suite = vm.VideoClassificationMetrics(4, video_reduction="mean_logits")
    >>> suite.update(p.scores, p.target, p.video_ids, p.clip_ids)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     paths = vm.write_report(suite, folder)
    ...     [name in os.listdir(folder) for name in ("report.html", "metrics.json", "video_reliability.png")]
    [True, True, True]
    """
    if not hasattr(report, "scalars") and callable(getattr(report, "report", None)):
        report = report.report()
    figures = itertools.chain(report_figures(report, max_classes_in_matrix), (extra_figures or {}).items())
    return _write_folder(out_dir, "report", figures, "", ("metrics.json", report.to_dict()),
                         ("report.html", lambda images: _html(report, images, title, source, notes)), REPORT_FILES)


def _write_folder(out_dir: str, kind: str, figures, prefix: str, json_file, html_file, files) -> Dict[str, str]:
    """A report folder (:func:`report_folder` keeps every file it did not write): the figures, one
    JSON file ``(name, data)`` and one HTML page ``(name, html(images))``. Returns name -> path."""
    out_dir = os.path.abspath(out_dir)
    images: Dict[str, str] = {}
    with report_folder(out_dir, kind) as tmp:
        save_figures(tmp, figures, images, prefix)
        with open(os.path.join(tmp, json_file[0]), "w") as f:
            json.dump(json_file[1], f, indent=1, allow_nan=False)
        with open(os.path.join(tmp, html_file[0]), "w") as f:
            f.write(html_file[1](images))
    paths = {k: os.path.join(out_dir, v) for k, v in images.items()}
    paths.update({n: os.path.join(out_dir, n) for n in files})
    return paths


def save_figures(folder: str, figures, images: Dict[str, str], prefix: str = "") -> None:
    """Write each ``(tag, figure)`` as ``<prefix><tag>.png`` into ``folder`` and note its file name
    in ``images`` (one figure in memory at a time)."""
    for tag, fig in figures:
        name = prefix + tag.replace("/", "_") + ".png"
        save_png(fig, os.path.join(folder, name))
        images[tag] = name
        del fig


def _img(images: Dict[str, str], tag: str, alt: str) -> str:
    if tag not in images:
        return ""
    return f"<img src=\"{html.escape(images[tag])}\" alt=\"{html.escape(alt)}\">"


def _html(report, images: Dict[str, str], title: str, source: Optional[str], notes: Sequence[str]) -> str:
    levels = _levels(report)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">{report.task}, "
             + ("positive class " + html.escape(report.class_names[0]) if report.task == "binary"
                else f"{report.num_classes} classes")
             + (f", video reduction <b>{html.escape(str(report.video_reduction))}</b>" if report.video is not None else "")
             + (f"; predictions from <code>{html.escape(source)}</code>" if source else "") + "</p>"]
    for n in notes:
        parts.append(f"<p class=\"note\">{html.escape(n)}</p>")
    parts += ["<h2>Headline: clip vs video</h2>", _headline(report)]
    if getattr(report, "intervals", None):
        parts += [f"<p class=\"note\">[low, high]: {report.ci:.0%} bootstrap percentile intervals, resampling "
                  "videos.</p>", "<div class=\"figs\">", _img(images, "intervals", "intervals"), "</div>"]
    if getattr(report, "slices", None):
        parts += ["<h2>Slices</h2>", _slices(report)]
    if getattr(report, "temperature", None):
        tf = report.temperature
        parts += ["<h2>Temperature scaling</h2>",
                  f"<p id=\"temperature\">{html.escape(str(tf['level']))} level: T = {fmt_value(tf['temperature'])}; NLL "
                  f"{fmt_value(tf['nll_before'])} &rarr; {fmt_value(tf['nll_after'])}; ECE {fmt_value(tf['ece_before'])} &rarr; "
                  f"{fmt_value(tf['ece_after'])} in-sample, <b>{fmt_value(tf['ece_cross_fitted'])}</b> cross-fitted (T fitted on "
                  "half of the videos, ECE measured on the other half, both ways).</p>",
                  "<div class=\"figs wide\">", _img(images, "temperature", "reliability before/after temperature scaling"),
                  "</div>"]
    if getattr(report, "views", None) is not None:
        vw = report.views
        reds = list(vw.by_reduction)
        keys = [k for k in ("top1", "top5", "balanced_acc", "f1_macro", "auprc_macro", "ece", "nll")
                if any(k in vw.by_reduction[r] for r in reds)]
        rows = "".join(f"<tr><td>{html.escape(r)}</td>" + "".join(f"<td>{fmt_value(vw.by_reduction[r].get(k))}</td>" for k in keys)
                       + "</tr>" for r in reds)
        parts += ["<h2>Views</h2>", "<div class=\"figs\">", _img(images, "views", "video top-1 vs views"), "</div>",
                  "<table id=\"by-reduction\"><thead><tr><th>video reduction</th>"
                  + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + f"</tr></thead><tbody>{rows}</tbody></table>",
                  f"<p class=\"note\">{vw.duplicate_views} video(s) with two or more identical views.</p>"]
    parts += ["<h2>Coverage</h2>", _coverage(report)]
    if report.task in ("multiclass", "binary"):
        parts.append("<h2>Confusions</h2><div class=\"figs\">")
        parts += [_img(images, f"{lv}/confusion_matrix", f"confusion matrix, {lv} level") for lv in levels]
        parts.append("</div>")
        parts += [_top_confusions(report, lv) for lv in levels]
    parts.append("<h2>Calibration</h2><div class=\"figs\">")
    parts += [_img(images, f"{lv}/reliability", f"reliability diagram, {lv} level") for lv in levels]
    parts.append("</div>")
    if report.task in ("multilabel", "binary"):
        parts.append("<h2>Precision-recall curves</h2><div class=\"figs\">")
        parts += [_img(images, f"{lv}/pr_curves", f"PR curves, {lv} level") for lv in levels]
        parts.append("</div>")
    metric = "f1" if report.task == "multiclass" else "ap"
    parts.append("<h2>Per class</h2><p class=\"note\">Click a column to sort (support, F1, AP, …).</p>"
                 "<div class=\"figs\">")
    parts += [_img(images, f"{lv}/per_class_{metric}", f"per-class {metric}, {lv} level") for lv in levels]
    parts += ["</div>", _per_class(report)]
    extra = [t for t in images if not t.startswith(("clip/", "video/")) and t not in ("intervals", "temperature", "views")]
    if extra:
        parts.append("<h2>Explanations</h2><p class=\"note\">Heatmaps of validation clips; dashed boxes are proxy boxes "
                     "derived from the saliency, not detections.</p><div class=\"figs wide\">")
        parts += [_img(images, t, t) for t in extra]
        parts.append("</div>")
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(p for p in parts if p)


def write_comparison(comparison, out_dir: str, title: str = "video_metrics comparison",
                     sources: Sequence[str] = (), gates: Sequence[str] = ()) -> Dict[str, str]:
    """Write ``compare.json``, ``compare.html`` and their PNGs for a
    :class:`~video_metrics.compare.Comparison` into ``out_dir``. Returns name -> path."""
    from .plots import comparison_figures

    return _write_folder(out_dir, "compare", comparison_figures(comparison), "compare_",
                         ("compare.json", comparison.to_dict()),
                         ("compare.html", lambda images: _compare_html(comparison, images, title, sources, gates)),
                         COMPARE_FILES)


def _sample_name(x) -> str:
    """A flipped sample as text: ``vid_001`` or ``vid_001 clip 0``."""
    if isinstance(x, (tuple, list)):
        return f"{x[0]} clip {x[1]}"
    return str(x)


def _compare_slices(c) -> str:
    from .compare import format_p_value

    if not c.slices:
        return ""
    keys: List[str] = []
    for sl in c.slices:
        for k in sl.deltas:
            if k.partition("/")[2] in _SLICE_KEYS and k not in keys:
                keys.append(k)
    head = "<th>slice</th><th>videos</th>" + "".join(f"<th>{html.escape(k)} b - a</th>" for k in keys)
    rows = []
    for sl in c.slices:
        cells = _slice_cells(sl)
        for k in keys:
            d = sl.deltas.get(k)
            if d is None or d.delta != d.delta:
                cells.append("<td data-v=\"\">–</td>")
                continue
            cells.append(f"<td data-v=\"{d.delta}\">{fmt_value(d.delta)} <span class=\"note\">[{fmt_value(d.low, 3)}, "
                         f"{fmt_value(d.high, 3)}] p {html.escape(format_p_value(d.p_value, c.bootstrap))}</span></td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return ("<h2>Slices: paired deltas</h2><div class=\"scroll\"><table class=\"sortable\" id=\"slice-deltas\"><thead>"
            f"<tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "<p class=\"note\">Per slice of a's group columns (the same videos in b): b - a with the paired bootstrap "
            "interval and p-value.</p>")


def _compare_html(c, images: Dict[str, str], title: str, sources: Sequence[str], gates: Sequence[str]) -> str:
    from .compare import format_p_value, lower_is_better

    src = " vs ".join(f"<code>{html.escape(s)}</code>" for s in sources)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">a = baseline, b = candidate{': ' + src if src else ''}; {c.num_videos} videos, "
             f"{c.bootstrap} paired bootstrap resamples of the videos, {c.ci:.0%} intervals.</p>"]
    for g in gates:
        parts.append(f"<p><b>{html.escape(g)}</b></p>")
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{fmt_value(d.a)}</td><td>{fmt_value(d.b)}</td>"
        f"<td class=\"{'better' if (d.high < 0 if lower_is_better(k) else d.low > 0) else ''}\">{fmt_value(d.delta)}</td><td>[{fmt_value(d.low)}, {fmt_value(d.high)}]</td>"
        f"<td>{html.escape(format_p_value(d.p_value, c.bootstrap))}</td></tr>" for k, d in c.deltas.items())
    parts += ["<h2>Deltas</h2><table class=\"sortable\" id=\"deltas\"><thead><tr><th>key</th><th>a</th><th>b</th>"
              "<th>b - a</th><th>interval</th><th>p</th></tr></thead><tbody>" + rows + "</tbody></table>",
              "<div class=\"figs\">", _img(images, "deltas", "deltas with paired intervals"), "</div>"]
    if c.mcnemar:
        rows = "".join(f"<tr><td>{m.level}</td><td>{m.num_paired}</td><td>{m.a_right_b_wrong}</td><td>{m.a_wrong_b_right}"
                       f"</td><td>{fmt_value(m.p_value, 4)}</td></tr>" for m in c.mcnemar.values())
        parts.append("<h2>McNemar (top-1)</h2><table id=\"mcnemar\"><thead><tr><th>level</th><th>paired</th>"
                     "<th>a right, b wrong</th><th>a wrong, b right</th><th>exact p</th></tr></thead><tbody>"
                     + rows + "</tbody></table>")
    if c.per_class:
        rows = "".join(
            f"<tr><td data-v=\"{html.escape(x.name)}\">{html.escape(x.name)}</td><td data-v=\"{x.a}\">{fmt_value(x.a, 3)}</td>"
            f"<td data-v=\"{x.b}\">{fmt_value(x.b, 3)}</td><td data-v=\"{x.delta}\">{fmt_value(x.delta, 3)}</td>"
            f"<td>[{fmt_value(x.low, 3)}, {fmt_value(x.high, 3)}]</td><td data-v=\"{x.p_value}\">{html.escape(format_p_value(x.p_value, c.bootstrap))}</td>"
            f"<td data-v=\"{x.q_value}\">{fmt_value(x.q_value, 3)}</td></tr>" for x in c.per_class)
        metric = c.per_class[0].metric
        parts += [f"<h2>Per class ({metric}, {c.per_class_level} level), worst first</h2>", "<div class=\"figs\">",
                  _img(images, "per_class_deltas", "per-class deltas"), "</div>",
                  "<table class=\"sortable\" id=\"per-class\"><thead><tr><th>class</th><th>a</th><th>b</th><th>b - a</th>"
                  "<th>interval</th><th>p</th><th>q (BH)</th></tr></thead><tbody>" + rows + "</tbody></table>"]
    parts.append(_compare_slices(c))
    for lv, fl in c.flips.items():
        for kind in ("right_to_wrong", "wrong_to_right"):
            ids = fl[kind]
            shown = ", ".join(html.escape(_sample_name(x)) for x in ids[:200])
            more = f" … and {len(ids) - 200} more" if len(ids) > 200 else ""
            parts.append(f"<h3>{lv} level, {kind.replace('_', ' ')}: {len(ids)}</h3><p class=\"note\">{shown}{more}</p>")
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(p for p in parts if p)
