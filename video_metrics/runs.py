"""Results over several splits, seeds or episodes: each key's mean, standard deviation, min, max and
every run's value (UCF101 and HMDB51 report the mean over their three official splits; papers report
mean ± std over seeds; few-shot and open-set protocols average many episodes).

A run is a :class:`~video_metrics.suite.SuiteReport`, the dict of a ``metrics.json`` that
``video-metrics report`` wrote (any format: suite, EPIC-Kitchens, YouTube-8M), the path of such a
file or of the report folder holding it. The runs must report the same keys over the same classes
(class count and names where the run records them): a run that differs is an error naming it, not
a table that silently mixes protocols. ``std`` is the sample standard deviation (``ddof=1``, what
"± std over seeds" means); a key that is undefined (NaN, ``null`` in JSON) in some run is NaN in
the summary, never averaged over the other runs.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["RunSummary", "summarize_runs", "load_run", "RunsError"]


class RunsError(ValueError):
    """Runs that cannot be summarized together (unreadable, different keys or classes, fewer than two)."""


def _classes(d: Dict[str, Any]) -> Optional[Tuple]:
    """What a run says of its classes: the suite's count and names, the EPIC heads' sizes, the
    YouTube-8M vocabulary size (``None`` when it says nothing)."""
    if "num_classes" in d:
        return ("classes", d.get("num_classes"), tuple(d.get("class_names") or ()))
    info = d.get("info") or {}
    if "num_verbs" in info:
        return ("verbs and nouns", info.get("num_verbs"), info.get("num_nouns"))
    if "num_classes" in info:
        return ("classes", info.get("num_classes"), ())
    return None


def load_run(run: Any) -> Tuple[str, Dict[str, float], Optional[Tuple]]:
    """``(name, scalars, classes)`` of one run (see the module doc)."""
    if hasattr(run, "to_dict") and hasattr(run, "scalars"):
        return "run", {k: float(v) for k, v in run.scalars.items()}, _classes(run.to_dict())
    name = "run"
    if isinstance(run, (str, os.PathLike)):
        name = str(run)
        path = os.path.join(name, "metrics.json") if os.path.isdir(name) else name
        try:
            with open(path) as f:
                run = json.load(f)
        except OSError as e:
            raise RunsError(f"{path}: cannot read ({e.strerror})") from None
        except ValueError as e:
            raise RunsError(f"{path}: not a metrics.json ({e})") from None
    if not isinstance(run, dict) or not isinstance(run.get("scalars"), dict):
        raise RunsError(f"{name}: not a report (expected a metrics.json with 'scalars')")
    scalars = {}
    for k, v in run["scalars"].items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise RunsError(f"{name}: scalar {k!r} is {v!r}, not a number")
        scalars[k] = math.nan if v is None else float(v)
    return name, scalars, _classes(run)


def _mean_std(values: List[float]) -> Tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass
class RunSummary:
    """Per key: ``mean``, ``std`` (ddof=1), ``min``, ``max`` and ``values`` (each run's, in the order
    of ``names``).

    >>> s = summarize_runs([{"scalars": {"top1": 0.70}}, {"scalars": {"top1": 0.74}}, {"scalars": {"top1": 0.72}}])
    >>> round(s.mean["top1"], 4), round(s.std["top1"], 4), s.min["top1"], s.max["top1"]
    (0.72, 0.02, 0.7, 0.74)
    """

    names: List[str]
    keys: List[str]
    values: Dict[str, List[float]]
    mean: Dict[str, float]
    std: Dict[str, float]
    min: Dict[str, float]
    max: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready (NaN as ``null``): ``{"runs": names, "keys": {key: {mean, std, min, max, values}}}``."""
        def clean(v: float) -> Optional[float]:
            return v if math.isfinite(v) else None
        return {"runs": self.names, "keys": {k: {"mean": clean(self.mean[k]), "std": clean(self.std[k]),
                                                 "min": clean(self.min[k]), "max": clean(self.max[k]),
                                                 "values": [clean(v) for v in self.values[k]]} for k in self.keys}}

    def table(self) -> str:
        """A text table: key, mean ± std, min, max, then each run's value."""
        heads = [f"run{i + 1}" for i in range(len(self.names))]
        lines = [f"{'key':<28}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}" + "".join(f"{h:>10}" for h in heads)]
        lines.append("-" * len(lines[0]))
        for k in self.keys:
            cells = [self.mean[k], self.std[k], self.min[k], self.max[k], *self.values[k]]
            lines.append(f"{k:<28}" + "".join(f"{v:>10.4f}" for v in cells))
        lines += [f"run{i + 1}: {n}" for i, n in enumerate(self.names)]
        return "\n".join(lines)

    def write(self, out_dir: str) -> Dict[str, str]:
        """``runs.json`` and ``runs.csv`` (key, mean, std, min, max, one column per run) in ``out_dir``;
        every other file there is kept. Returns name -> path."""
        from .report import report_folder

        with report_folder(out_dir, "runs") as tmp:
            with open(os.path.join(tmp, "runs.json"), "w") as f:
                json.dump(self.to_dict(), f, indent=1, allow_nan=False)
            with open(os.path.join(tmp, "runs.csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["key", "mean", "std", "min", "max", *self.names])
                for k in self.keys:
                    w.writerow([k, *(repr(v) for v in (self.mean[k], self.std[k], self.min[k], self.max[k],
                                                       *self.values[k]))])
        out_dir = os.path.abspath(out_dir)
        return {n: os.path.join(out_dir, n) for n in ("runs.json", "runs.csv")}


def summarize_runs(reports: Sequence[Any], names: Optional[Sequence[str]] = None) -> RunSummary:
    """Each key's mean, standard deviation (ddof=1), min, max and per-run values over ``reports``
    (at least two; see the module doc for what a run may be and what must agree). ``names``: the
    runs' names (default: their paths, or ``run1``, ``run2``, ...).

    >>> splits = [{"num_classes": 101, "scalars": {"video/top1": v}} for v in (0.81, 0.79, 0.83)]
    >>> round(summarize_runs(splits).mean["video/top1"], 4)
    0.81
    >>> summarize_runs(splits[:2] + [{"num_classes": 51, "scalars": {"video/top1": 0.6}}])
    Traceback (most recent call last):
    ...
    video_metrics.runs.RunsError: run3 has other classes than run1: 51 classes vs 101 classes
    """
    if len(reports) < 2:
        raise RunsError(f"summarize_runs needs at least 2 runs, got {len(reports)}")
    loaded = [load_run(r) for r in reports]
    labels = list(names) if names is not None else [
        n if n != "run" else f"run{i + 1}" for i, (n, _, _) in enumerate(loaded)]
    first_name, first, first_classes = labels[0], loaded[0][1], loaded[0][2]
    for label, (_, scalars, classes) in zip(labels[1:], loaded[1:]):
        if set(scalars) != set(first):
            extra, missing = sorted(set(scalars) - set(first)), sorted(set(first) - set(scalars))
            raise RunsError(f"{label} reports other keys than {first_name}: "
                            + "; ".join(p for p in (f"not in {first_name}: {extra[:5]}" if extra else "",
                                                    f"missing: {missing[:5]}" if missing else "") if p))
        if classes != first_classes:
            raise RunsError(f"{label} has other classes than {first_name}: {_say(classes)} vs {_say(first_classes)}")
    keys = list(first)
    values = {k: [s[k] for _, s, _ in loaded] for k in keys}
    stats = {k: _mean_std(v) for k, v in values.items()}
    any_nan = {k: any(math.isnan(x) for x in v) for k, v in values.items()}
    return RunSummary(
        names=labels, keys=keys, values=values, mean={k: stats[k][0] for k in keys}, std={k: stats[k][1] for k in keys},
        min={k: math.nan if any_nan[k] else min(v) for k, v in values.items()},
        max={k: math.nan if any_nan[k] else max(v) for k, v in values.items()})


def _say(classes: Optional[Tuple]) -> str:
    if classes is None:
        return "none recorded"
    if classes[0] == "classes":
        return f"{classes[1]} classes" + (f" named {list(classes[2][:3])}..." if classes[2] else "")
    return f"{classes[1]} verbs, {classes[2]} nouns"
