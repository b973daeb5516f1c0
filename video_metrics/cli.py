"""``video-metrics`` command line.

* ``video-metrics demo``: train a tiny 3D CNN on generated moving-object clips with Lightning,
  with ``VideoMetricsCallback`` and ``ExplainCallback`` attached and TensorBoard logging; print
  the final clip/video metric table and write a report folder.
* ``video-metrics report PREDICTIONS --out DIR``: evaluate saved per-clip predictions
  (``.npz``, ``.pt``, ``.csv``; mmaction2 / PySlowFast result pickles) and write ``metrics.json``,
  ``report.html`` and PNG figures; EPIC-Kitchens-100 results (``--format epic --labels CSV``) are
  scored per segment with :class:`~video_metrics.actions.ActionMetrics`.
* ``video-metrics compare A B --out DIR``: paired comparison of two prediction files.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

from .tables import format_table

__all__ = ["main", "format_table", "build_parser"]

DESCRIPTION = "Evaluate video classifiers: clip- and video-level metrics, reports and a demo."


# ------------------------------------------------------------------ demo
def demo(args: argparse.Namespace) -> int:
    """``video-metrics demo``: train the tiny 3D CNN on synthetic clips and write its report."""
    from .demo import DemoConfig, run_demo

    kw = dict(out=args.out, seed=args.seed, progress=not args.no_progress)
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**kw)
    print(f"video_metrics demo: training a tiny 3D CNN for {cfg.epochs} epochs on {cfg.train_videos} generated clips "
          f"({cfg.frames} x {cfg.size} x {cfg.size}, 12 classes = shape x direction); validating on "
          f"{cfg.val_videos} videos x {cfg.clips_per_video} clips", flush=True)
    res = run_demo(cfg)
    print(f"\nFinal validation (clip level vs video level, mean of clip logits; {cfg.bootstrap} bootstrap resamples "
          "of the videos for the 95% intervals):\n")
    print(format_table(res["scalars"], res["intervals"]))
    sc, iv = res["scalars"], res["intervals"]
    if "video/top1" in iv:
        from .demo import summary_sentence

        print("\n" + summary_sentence(sc, iv, res["evidence"]))
    views = res["views"]
    if views is not None and views.top1_random:
        print("Video top-1 by views used: " + ", ".join(f"{k} view{'s' if k > 1 else ''} {v:.3f}"
                                                       for k, v in zip(views.views, views.top1_random)))
    fit = res["temperature"]
    if fit is not None:
        print(f"Temperature scaling (video level): T = {fit.temperature:.2f}; ECE {fit.ece_before:.3f} -> "
              f"{fit.ece_cross_fitted:.3f} cross-fitted (fitted on half of the videos, measured on the other; "
              f"{fit.ece_after:.3f} in-sample)")
    ex = res["explain"]
    if ex is not None and "val/explain/pointing_game" in ex:
        print(f"\nExplanations (Grad-CAM++ on 4 clips): pointing game {ex['val/explain/pointing_game']:.2f}, "
              f"energy pointing game {ex['val/explain/energy_pointing_game']:.2f}")
    report = os.path.dirname(res["report"]["report.html"])
    print(f"\nReport:       {os.path.relpath(res['report']['report.html'])}  (+ metrics.json and PNGs in {os.path.relpath(report)})")
    print(f"TensorBoard:  tensorboard --logdir {os.path.relpath(res['tensorboard'])}")
    print(f"Done in {res['seconds']:.0f} s")
    return 0


# ------------------------------------------------------------------ report
class _Fail(Exception):
    pass


def _open(args, path: str, registry=None):
    """``(prediction file, task, reduction, input)`` for ``path`` under the shared options."""
    from .io import open_predictions

    names = _read_names(args.class_names) if args.class_names else None
    pf = open_predictions(path, names, getattr(args, "format", "auto"))
    if registry is not None:  # two files of one comparison: the same names get the same ids
        pf.registry = registry
    task = args.task or ("multilabel" if pf.multilabel else "multiclass")
    if task in ("multiclass", "binary") and pf.multilabel:
        raise _Fail(f"{path}: targets are multi-label but --task {task} was given")
    if task == "multilabel" and not pf.multilabel:
        pf.as_multilabel()  # one class index per row: a one-label multi-hot row
    if task == "binary" and pf.num_classes != 1:
        raise _Fail(f"{path}: --task binary needs one score column (score_0, the positive class), "
                    f"got {pf.num_classes}")
    if task == "binary":
        pf.as_binary()
    # mmaction2 and PySlowFast write softmax probabilities (their default test settings)
    score_input = args.input or ("probs" if pf.rows_are else "logits")
    reduction = args.reduction
    if reduction is None and pf.has_video_ids and not args.histogram_bins:
        reduction = "mean_logits" if score_input == "logits" else "mean_probs"
    if reduction is not None and not pf.has_video_ids:
        raise _Fail(f"{path}: --reduction {reduction} needs video ids (video_ids / video_id column)")
    slices = getattr(args, "slices_from", None) or []
    if slices:
        pf.select_groups(slices)
    return pf, task, reduction, score_input


def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise _Fail(f"--out {out} is a file, not a folder: give a folder for the report")


def _say_warnings(command: str, caught) -> None:
    """Warnings raised during an evaluation, as one line each in the command line's terms."""
    seen = set()
    for w in caught:
        text = str(w.message)
        if "looks like probabilities" in text:
            text = ("every row's scores lie in [0, 1] (and sum to 1 for one label per row): these look like "
                    "probabilities, but they are read as logits; if they are probabilities, pass --input probs")
        text = text.replace('input="probs"', "--input probs").replace("input='probs'", "--input probs")
        if text not in seen:
            seen.add(text)
            print(f"video-metrics {command}: warning: {text.splitlines()[0]}", file=sys.stderr)


def _fail(command: str, e: Exception) -> int:
    print(f"video-metrics {command}: error: {(str(e).splitlines() or [''])[0]}", file=sys.stderr)
    return 2


def _epic_results(args):
    """``(is EPIC, the file's object if read)``: ``--format epic``, or ``auto`` with a
    ``.pkl``/``.pt`` file in an EPIC-Kitchens results layout (the object read to see it is kept,
    so the file is not read twice)."""
    if args.format == "epic":
        return True, None
    if args.format != "auto" or not args.predictions.lower().endswith((".pkl", ".pickle", ".pt")):
        return False, None
    from .pickled import detect, load_file

    try:
        obj = load_file(args.predictions)
    except Exception:  # noqa: BLE001 - not readable here: the regular path reports it
        return False, None
    return (True, obj) if detect(obj) == "epic" else (False, None)


def epic_report(args: argparse.Namespace, loaded=None) -> int:
    """``video-metrics report --format epic``: verb/noun/action metrics of an EPIC-Kitchens results file."""
    from .epic import EpicFileError, evaluate_results, format_action_table, write_action_report

    if not args.labels:
        return _fail("report", _Fail("--format epic needs --labels (the annotations CSV, e.g. EPIC_100_validation.csv)"))
    unused = [opt for opt, given in (
        ("--task", args.task), ("--reduction", args.reduction), ("--histogram-bins", args.histogram_bins),
        ("--preset", args.preset), ("--class-names", args.class_names), ("--bootstrap", args.bootstrap),
        ("--slices-from", args.slices_from), ("--fit-temperature", args.fit_temperature),
        ("--calibration-bins", args.calibration_bins != 15), ("--predicted-absent", args.predicted_absent != "ignore"),
        ("--empty-class", args.empty_class != "skip"), ("--empty-videos", args.empty_videos != "keep"),
        ("--num-classes", args.num_classes != 3862)) if given]
    if unused:
        return _fail("report", _Fail(f"--format epic does not use {', '.join(unused)}: EPIC results are scored per "
                                     "segment with ActionMetrics (options: --top-k, --input, --action-scores, --labels, "
                                     "--tail-verbs, --tail-nouns, --unseen-participants)"))
    try:
        scalars, info = evaluate_results(args.predictions, args.labels, args.tail_verbs, args.tail_nouns,
                                         args.unseen_participants, top_k=args.top_k or (1, 5), input=args.input or "logits",
                                         action_scores=args.action_scores, loaded=loaded)
        paths = write_action_report(scalars, info, args.out, source=args.predictions,
                                    title=f"video_metrics EPIC-Kitchens report: {os.path.basename(args.predictions)}")
    except (EpicFileError, ValueError) as e:
        return _fail("report", e)
    print(format_action_table(scalars, info))
    print(f"\nReport: {paths['report.html']}")
    return 0


def youtube8m_report(args: argparse.Namespace) -> int:
    """``video-metrics report --format youtube8m``: GAP, Hit@1, PERR and mAP of a Kaggle-style submission."""
    from .youtube8m import YouTube8MFileError, evaluate_submission, format_youtube8m_table, write_youtube8m_report

    if not args.labels:
        return _fail("report", _Fail("--format youtube8m needs --labels (a CSV VideoId,Labels with space-separated "
                                     "label ids)"))
    top_k = args.top_k or [20]
    unused = [opt for opt, given in (
        ("--task", args.task), ("--reduction", args.reduction), ("--histogram-bins", args.histogram_bins),
        ("--preset", args.preset), ("--bootstrap", args.bootstrap), ("--slices-from", args.slices_from),
        ("--fit-temperature", args.fit_temperature), ("--input", args.input not in (None, "probs")),
        ("--top-k with several values", len(top_k) > 1), ("--tail-verbs", args.tail_verbs),
        ("--tail-nouns", args.tail_nouns), ("--unseen-participants", args.unseen_participants)) if given]
    if unused:
        return _fail("report", _Fail(f"--format youtube8m does not use {', '.join(unused)} (options: --labels, "
                                     "--num-classes, --top-k K, --class-names, --out)"))
    try:
        _check_out(args.out)
        names = None
        if args.class_names:
            names = _read_names(args.class_names)
            if len(names) != args.num_classes:
                raise _Fail(f"--class-names {args.class_names}: {len(names)} names for --num-classes {args.num_classes}")
        scalars, info, per_class = evaluate_submission(args.predictions, args.labels, args.num_classes, top_k[0],
                                                       chunk=args.chunk_size)
        paths = write_youtube8m_report(scalars, info, per_class, args.out, names, source=args.predictions,
                                       title=f"video_metrics YouTube-8M report: {os.path.basename(args.predictions)}")
    except (YouTube8MFileError, _Fail, ValueError) as e:
        return _fail("report", e)
    print(format_youtube8m_table(scalars, info))
    print(f"\nReport: {paths['report.html']}")
    return 0


def _read_names(path: str) -> List[str]:
    """Class names, one a line (``--class-names``)."""
    try:
        with open(path) as f:
            return [ln.rstrip("\n\r") for ln in f if ln.strip()]
    except OSError as e:
        raise _Fail(f"--class-names {path}: cannot read ({e.strerror})")


def report(args: argparse.Namespace) -> int:
    """``video-metrics report``: read a predictions file and write the metrics table, JSON, figures and HTML report."""
    import warnings

    from .io import PredictionFileError

    if args.runs:
        return runs_report(args)
    if len(args.predictions) > 1:
        return _fail("report", _Fail(f"{len(args.predictions)} files given: pass --runs to summarize them as runs of "
                                     "one protocol, or report one file at a time"))
    args.predictions = args.predictions[0]
    if args.format == "youtube8m":
        return youtube8m_report(args)
    epic, loaded = _epic_results(args)
    if epic:
        return epic_report(args, loaded)
    if args.num_classes != 3862:
        return _fail("report", _Fail("--num-classes is read with --format youtube8m only (other files give their classes)"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = _report(args, PredictionFileError)
    if code != 2:  # after an error, its one line is the message
        _say_warnings("report", caught)
    return code


def _suite_report(args, path: str):
    """``(the suite's report, the prediction file, the suite)`` of one predictions file under the options."""
    pf, task, reduction, score_input = _open(args, path)
    suite = _make_suite(args, pf, task, reduction, score_input)
    _stream(args, pf, suite, score_input)
    return suite.report(), pf, suite


def runs_report(args: argparse.Namespace) -> int:
    """``video-metrics report A B C --runs``: each run's keys summarized (:func:`video_metrics.runs.summarize_runs`).
    A run is a metrics.json, a report folder, or a file evaluated as ``report`` would (suite formats, or
    ``--format youtube8m`` with its ``--labels``)."""
    import warnings

    from .io import PredictionFileError
    from .runs import RunsError, summarize_runs

    if len(args.predictions) < 2:
        return _fail("report", _Fail("--runs needs at least 2 runs (metrics.json files, report folders or prediction files)"))
    try:
        _check_out(args.out)
        runs = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for path in args.predictions:
                runs.append(_one_run(args, path))
        summary = summarize_runs(runs, names=args.predictions)
        paths = summary.write(args.out)
    except (RunsError, PredictionFileError, _Fail, ValueError) as e:
        return _fail("report", e)
    _say_warnings("report", caught)
    print(summary.table())
    print(f"\nRuns: {paths['runs.csv']}")
    return 0


def _one_run(args, path: str):
    """A run for :func:`runs_report`: a metrics.json (or the report folder holding one) as it is,
    else the file evaluated."""
    if os.path.isdir(path) or path.lower().endswith(".json"):
        return path
    if args.format == "youtube8m":
        from .youtube8m import evaluate_submission

        if not args.labels:
            raise _Fail("--format youtube8m needs --labels")
        scalars, info, _ = evaluate_submission(path, args.labels, args.num_classes, (args.top_k or [20])[0],
                                               chunk=args.chunk_size)
        return {"scalars": scalars, "info": info}
    if args.format == "epic":
        raise _Fail("--runs reads EPIC-Kitchens runs from their report folders (metrics.json): report each file first")
    return _suite_report(args, path)[0]


def _report(args, PredictionFileError) -> int:
    try:
        _check_out(args.out)
        rep, pf, suite = _suite_report(args, args.predictions)
        extra = {}
        if args.fit_temperature:
            from .plots import plot_temperature

            level = "video" if suite.video_reduction in ("mean_logits", "mean_probs") else "clip"
            fit = suite.fit_temperature(level)
            rep.temperature = fit.to_dict()
            extra["temperature"] = plot_temperature(fit)
        for sl in rep.slices:  # string group values (CSV text columns) by name
            values = pf.group_values.get(sl.name)
            if sl.kind == "group" and values is not None:
                sl.value = values[sl.value]
        from .report import video_rows_report, write_report

        if pf.rows_are:
            rep = video_rows_report(rep, pf.rows_are)
        paths = write_report(rep, args.out, title=f"video_metrics report: {os.path.basename(args.predictions)}",
                             source=args.predictions, extra_figures=extra)
    except (PredictionFileError, _Fail, ValueError) as e:  # ValueError: the suite's own checks
        return _fail("report", e)
    print(format_table(rep.scalars, rep.intervals))
    if rep.temperature:
        tf = rep.temperature
        print(f"\nTemperature ({tf['level']} level): T = {tf['temperature']:.4f}; ECE {tf['ece_before']:.4f} -> "
              f"{tf['ece_after']:.4f} in-sample, {tf['ece_cross_fitted']:.4f} cross-fitted; NLL {tf['nll_before']:.4f} -> "
              f"{tf['nll_after']:.4f}")
    print(f"\nReport: {paths['report.html']}")
    return 0


def _gates(specs: List[str]):
    out = []
    for spec in specs or []:
        key, sep, val = spec.rpartition(":")
        try:
            delta = float(val)
        except ValueError:
            delta = float("nan")
        if not sep or not key or not delta >= 0:
            raise _Fail(f"--fail-if-worse {spec!r}: expected KEY:DELTA with DELTA >= 0, e.g. video/top1:0.005")
        out.append((key, delta))
    return out


def compare(args: argparse.Namespace) -> int:
    """``video-metrics compare a b``: pair two predictions files row by row and write the comparison."""
    import warnings

    from .io import PredictionFileError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = _compare(args, PredictionFileError)
    if code != 2:
        _say_warnings("compare", caught)
    return code


def _compare(args, PredictionFileError) -> int:
    from .compare import compare as compare_suites

    try:
        _check_out(args.out)
        gates = _gates(args.fail_if_worse)
        pfa, task, reduction, input_a = _open(args, args.a)
        pfb, task_b, reduction_b, input_b = _open(args, args.b, registry=pfa.registry)
        if task != task_b or pfa.num_classes != pfb.num_classes:
            raise _Fail(f"{args.a} and {args.b} differ: {task} with {pfa.num_classes} classes vs {task_b} with "
                        f"{pfb.num_classes}")
        if input_a != input_b:
            raise _Fail(f"{args.a} and {args.b} hold different kinds of scores ({input_a} vs {input_b}): pass --input")
        if reduction is None or reduction_b is None:
            raise _Fail("compare pairs the two files by video: both need video ids (video_ids / video_id column)")
        suites = []
        for pf in (pfa, pfb):
            su = _make_suite(args, pf, task, reduction, input_a)
            _stream(args, pf, su, input_a)
            suites.append(su)
        comp = compare_suites(suites[0], suites[1], bootstrap=args.bootstrap, ci=args.ci, seed=args.seed,
                              names=(args.a, args.b))
        if pfa.rows_are and pfb.rows_are:  # rows are videos already: the video level only
            comp = comp.only_level("video")
        for sl in comp.slices:  # string group values (CSV text columns) by name
            values = pfa.group_values.get(sl.name)
            if values is not None:
                sl.value = values[sl.value]
        for key, _ in gates:
            if key not in comp.deltas:
                raise _Fail(f"--fail-if-worse: unknown key {key!r}; keys: {', '.join(comp.deltas)}")
        from .compare import format_p_value, lower_is_better

        tripped = []
        for key, delta in gates:
            d = comp.deltas[key]
            # worse beyond DELTA with confidence: the whole interval lies past -DELTA (past +DELTA
            # for keys where lower is better: ece, nll, brier, ...)
            if (d.low > delta) if lower_is_better(key) else (d.high < -delta):
                tripped.append(f"GATE TRIPPED: {key} got worse by more than {delta}: b - a = {d.delta:+.4f}, "
                               f"{comp.ci:.0%} interval [{d.low:+.4f}, {d.high:+.4f}]")
        from .report import write_comparison

        paths = write_comparison(comp, args.out, title="video_metrics comparison", sources=[args.a, args.b],
                                 gates=tripped)
    except (PredictionFileError, _Fail, ValueError) as e:
        return _fail("compare", e)
    print(f"{'key':<26}{'a':>9}{'b':>9}{'b - a':>9}   interval              p")
    for k, d in comp.deltas.items():
        print(f"{k:<26}{d.a:9.4f}{d.b:9.4f}{d.delta:+9.4f}   [{d.low:+.4f}, {d.high:+.4f}]  "
              f"{format_p_value(d.p_value, comp.bootstrap)}")
    for m in comp.mcnemar.values():
        print(f"McNemar {m.level} top-1: a right/b wrong {m.a_right_b_wrong}, a wrong/b right {m.a_wrong_b_right}, "
              f"exact p = {m.p_value:.3g}")
    for line in tripped:
        print(line)
    print(f"\nComparison: {paths['compare.html']}")
    return 1 if tripped else 0


def _make_suite(args, pf, task, reduction, score_input):
    from .suite import VideoClassificationMetrics

    names = pf.class_names if task != "binary" or pf.class_names is None or len(pf.class_names) == 1 else None
    kw = dict(task=task, input=score_input, video_reduction=reduction, class_names=names, id_registry=pf.registry,
              calibration_bins=args.calibration_bins, predicted_absent=args.predicted_absent,
              empty_class=args.empty_class, empty_videos=args.empty_videos)
    if args.top_k:
        kw["top_k"] = tuple(args.top_k)
    if args.preset:
        kw["preset"] = args.preset
    if args.histogram_bins:
        kw["bins"] = args.histogram_bins
    if getattr(args, "slices_from", None):
        kw["slices"] = tuple(args.slices_from)
        kw["min_slice_size"] = args.min_slice_size
    if getattr(args, "bootstrap", 0) and args.command == "report":
        kw.update(bootstrap=args.bootstrap, ci=args.ci, seed=args.seed)
    return VideoClassificationMetrics(None if task == "binary" else pf.num_classes, **kw)


def _check_probabilities(args, pf, scores, task: str, first_row: int) -> None:
    """``--input probs`` (given or the format's default) on scores that are not probabilities: one
    line saying they look like logits."""
    import torch

    x = scores.double()
    outside = ((x < 0) | (x > 1)).any(1)
    off = (x.sum(1) - 1).abs() > 1e-2 if task == "multiclass" else torch.zeros_like(outside)
    bad = outside | off
    if not bool(bad.any()):
        return
    r = int(torch.nonzero(bad)[0])
    what = "scores outside [0, 1]" if bool(outside[r]) else f"scores summing to {float(x[r].sum()):.4g}, not 1"
    fix = "drop --input probs" if args.input == "probs" else "pass --input logits"
    raise _Fail(f"{pf.path}: row {first_row + r + (2 if pf.path.lower().endswith('.csv') else 0)} has {what}: "
                f"these look like logits, not probabilities; {fix}")


def _stream(args, pf, suite, score_input: str = "logits") -> None:
    from tqdm import tqdm

    bar = tqdm(total=pf.num_rows, unit="clip", desc="evaluating", disable=args.no_progress, file=sys.stderr,
               leave=False)
    try:
        ids = getattr(suite, "bins", None) is None  # histogram mode: clip level only, ids unused
        binary = suite.task == "binary"
        for ch in pf.chunks(args.chunk_size):
            if score_input == "probs":
                _check_probabilities(args, pf, ch.scores, suite.task, ch.first_row)
            scores, target = (ch.scores[:, 0], ch.target) if binary else (ch.scores, ch.target)
            suite.update(scores, target, ch.video_ids if ids else None, ch.clip_ids if ids else None,
                         **({"groups": ch.groups} if ch.groups is not None else {}))
            bar.update(ch.scores.shape[0])
    finally:
        bar.close()
    if pf.registry is not None:
        pf.registry.check()


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _eval_options(r: argparse.ArgumentParser) -> None:
    """The options shared by report and compare: how to read and evaluate a prediction file."""
    r.add_argument("--task", choices=["multiclass", "multilabel", "binary"], default=None,
                   help="default: from the targets (multilabel when they are multi-hot or space-separated); "
                        "multilabel also accepts one class index per row; binary needs one score column")
    r.add_argument("--input", choices=["logits", "probs"], default=None,
                   help="whether the scores are logits or probabilities; never guessed from the values (default: "
                        "logits; probs for mmaction2 / PySlowFast result files, whose scores are softmax "
                        "probabilities in both frameworks' default test settings)")
    r.add_argument("--reduction", choices=["mean_logits", "mean_probs", "max", "vote"], default=None,
                   help="clip->video reduction (default with video ids: mean_logits for logits, mean_probs for probs)")
    r.add_argument("--top-k", type=_positive_int, nargs="+", default=None,
                   help="k values of top-k accuracy (default: 1 5, or 1 with fewer than 5 classes); "
                        "k above the number of classes is an error")
    r.add_argument("--histogram-bins", type=_positive_int, default=None,
                   help="bounded-memory histogram mode: clip level only, AP/AUROC from score histograms (see README)")
    r.add_argument("--calibration-bins", type=_positive_int, default=15, help="bins of ECE/MCE and reliability diagrams")
    r.add_argument("--preset", choices=["kinetics", "charades"], default=None,
                   help="kinetics: top-1/top-5 of mean logits, missing videos count as wrong; charades: multilabel, "
                        "max over clips, mAP over classes with a positive")
    r.add_argument("--predicted-absent", choices=["ignore", "zero"], default="ignore",
                   help="mean class accuracy: ignore classes without targets (sklearn) or count predicted-only "
                        "classes as 0 (mmaction2)")
    r.add_argument("--empty-class", choices=["skip", "nan", "zero"], default="skip",
                   help="AP/AUROC of a class with no positive (or no negative): skip it, NaN, or count 0")
    r.add_argument("--empty-videos", choices=["keep", "exclude"], default="keep",
                   help="multilabel mAP: keep videos without any label as negatives (PySlowFast) or exclude them "
                        "(the official Charades script)")
    r.add_argument("--class-names", default=None, help="text file, one class name per line")
    r.add_argument("--chunk-size", type=_positive_int, default=8192, help="rows read and evaluated per step")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.add_argument("--slices-from", nargs="+", default=None, metavar="COLUMN",
                   help="columns (CSV columns, .npz arrays, .pt keys) whose values slice the videos, e.g. participant: "
                        "every key on each slice's videos (compare: paired deltas per slice)")
    r.add_argument("--min-slice-size", type=_non_negative_int, default=30,
                   help="slices with fewer videos than this (default 30) are reported but marked too small to read")


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of ``video-metrics`` (``demo``, ``report``, ``compare``)."""
    parser = argparse.ArgumentParser(prog="video-metrics", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a tiny 3D CNN on generated clips and report clip/video metrics",
                       description="Train a tiny 3D CNN on generated moving-object clips with Lightning (metrics and "
                                   "explanation callbacks, TensorBoard logging), print the clip/video table and write "
                                   "a report folder.")
    p.add_argument("--out", default="video_metrics_demo", help="output folder (report, TensorBoard logs)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="training epochs (default: 10; 2 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and of training")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r = sub.add_parser("report", help="evaluate saved per-clip predictions and write an HTML/PNG/JSON report",
                       description="Evaluate saved per-clip predictions (.npz, .pt or .csv) at clip and video level "
                                   "and write metrics.json, report.html and PNG figures.")
    r.add_argument("predictions", nargs="+",
                   help=".npz, .pt or .csv file of per-clip predictions, or an mmaction2 / PySlowFast results .pkl "
                        "(read with a restricted unpickler); with --runs, several: prediction files, metrics.json "
                        "files or report folders")
    r.add_argument("--runs", action="store_true",
                   help="the files are runs of one protocol (splits, seeds, episodes): write runs.json and runs.csv "
                        "with each key's mean, std (ddof=1), min, max and per-run values; the runs must share keys "
                        "and classes")
    r.add_argument("--format", choices=["auto", "mmaction2", "slowfast", "epic", "youtube8m"], default="auto",
                   help="auto: by extension, and for .pkl/.pt by the layout inside; mmaction2: tools/test.py --dump "
                        "results.pkl; slowfast: TEST.SAVE_RESULTS_PATH; epic: EPIC-Kitchens-100 action recognition "
                        "results (verb_output, noun_output, narration_id), evaluated against --labels; youtube8m: a "
                        "Kaggle submission CSV (VideoId,LabelConfidencePairs), evaluated against --labels as the "
                        "official eval.py (GAP@20, Hit@1, PERR, mAP)")
    r.add_argument("--labels", default=None, help="epic: annotations CSV with narration_id, verb_class, noun_class, "
                                                  "participant_id (EPIC_100_validation.csv); youtube8m: CSV "
                                                  "VideoId,Labels with space-separated label ids")
    y = r.add_argument_group("YouTube-8M (--format youtube8m)")
    y.add_argument("--num-classes", type=_positive_int, default=3862,
                   help="size of the vocabulary (default 3862, YouTube-8M 2018)")
    e = r.add_argument_group("EPIC-Kitchens (--format epic)")
    e.add_argument("--tail-verbs", default=None, help="CSV with a 'verb' column (EPIC_100_tail_verbs.csv)")
    e.add_argument("--tail-nouns", default=None, help="CSV with a 'noun' column (EPIC_100_tail_nouns.csv)")
    e.add_argument("--unseen-participants", default=None,
                   help="CSV with a 'participant_id' column (EPIC_100_unseen_participant_ids_validation.csv)")
    e.add_argument("--action-scores", choices=["product", "epic_script"], default="product",
                   help="product: actions ranked by the product of the heads' probabilities; epic_script: softmax of "
                        "the given scores as the official script (differs only for probability inputs)")
    r.add_argument("--out", required=True, help="report folder")
    _eval_options(r)
    r.add_argument("--bootstrap", type=_non_negative_int, default=0,
                   help="bootstrap replicates (resampling videos) for intervals next to every number (0: none)")
    r.add_argument("--fit-temperature", action="store_true",
                   help="fit a temperature (video level for mean_logits/mean_probs, else clip level) and report ECE "
                        "before/after, in-sample and cross-fitted over two halves of the videos")
    c = sub.add_parser("compare", help="paired comparison of two prediction files on the same videos",
                       description="Compare two checkpoints' per-clip predictions on the same videos: deltas of every "
                                   "key with paired bootstrap intervals and p-values, McNemar, per-class changes, "
                                   "flipped videos. Writes compare.json, compare.html and PNGs. Exit 1 when a "
                                   "--fail-if-worse gate trips, 2 on bad input.")
    c.add_argument("a", help="baseline predictions (.npz, .pt, .csv, or an mmaction2 / PySlowFast results .pkl)")
    c.add_argument("b", help="candidate predictions, on the same videos (result pickles: the same test list, paired "
                             "row by row)")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--format", choices=["auto", "mmaction2", "slowfast"], default="auto",
                   help="auto: by extension, and for .pkl by the layout inside; mmaction2 / slowfast: those frameworks' "
                        "result pickles (one row per test video)")
    _eval_options(c)
    c.add_argument("--bootstrap", type=_positive_int, default=1000, help="paired bootstrap replicates (default 1000)")
    c.add_argument("--fail-if-worse", nargs="+", default=None, metavar="KEY:DELTA",
                   help="exit 1 when the upper end of KEY's delta interval is below -DELTA (e.g. video/top1:0.005); "
                        "for keys where lower is better (ece, mce, nll, brier) when its lower end is above DELTA")
    for p_ in (r, c):
        p_.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
        p_.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """The ``video-metrics`` entry point: returns the exit status (2 for a usage or input error, named in one line)."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return demo(args)
    if args.command == "compare":
        return compare(args)
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
