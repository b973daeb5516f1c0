"""``video-metrics`` command line.

* ``video-metrics demo``: train a tiny 3D CNN on generated moving-object clips with Lightning,
  with ``VideoMetricsCallback`` and ``ExplainCallback`` attached and TensorBoard logging; print
  the final clip/video metric table and write a report folder.
* ``video-metrics report PREDICTIONS --out DIR``: evaluate saved per-clip predictions
  (``.npz``, ``.pt``, ``.csv``) and write ``metrics.json``, ``report.html`` and PNG figures.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

__all__ = ["main", "format_table"]


def format_table(scalars: Dict[str, float]) -> str:
    """Two-column table: one row per metric name, clip and video values side by side."""
    names: List[str] = []
    for k in scalars:
        level, _, name = k.partition("/")
        if level in ("clip", "video") and name not in names:
            names.append(name)
    width = max(len(n) for n in names) + 2
    lines = [f"{'metric':<{width}}{'clip':>10}{'video':>10}", "-" * (width + 20)]
    for n in names:
        cells = []
        for level in ("clip", "video"):
            v = scalars.get(f"{level}/{n}")
            cells.append(f"{'':>10}" if v is None else (f"{v:>10.0f}" if n.startswith("num_") or n.startswith("missing") else f"{v:>10.4f}"))
        lines.append(f"{n:<{width}}" + "".join(cells))
    return "\n".join(lines)


# ------------------------------------------------------------------ demo
def demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    kw = dict(out=args.out, seed=args.seed, progress=not args.no_progress)
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**kw)
    print(f"video_metrics demo: training a tiny 3D CNN for {cfg.epochs} epochs on {cfg.train_videos} generated clips "
          f"({cfg.frames} x {cfg.size} x {cfg.size}, 12 classes = shape x direction); validating on "
          f"{cfg.val_videos} videos x {cfg.clips_per_video} clips", flush=True)
    res = run_demo(cfg)
    print("\nFinal validation (clip level vs video level, mean of clip logits):\n")
    print(format_table(res["scalars"]))
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


def report(args: argparse.Namespace) -> int:
    from .io import PredictionFileError, open_predictions

    try:
        names = None
        if args.class_names:
            try:
                with open(args.class_names) as f:
                    names = [ln.strip() for ln in f if ln.strip()]
            except OSError as e:
                raise _Fail(f"--class-names {args.class_names}: cannot read ({e.strerror})")
        pf = open_predictions(args.predictions, names)
        task = args.task or ("multilabel" if pf.multilabel else "multiclass")
        if task == "multiclass" and pf.multilabel:
            raise _Fail(f"{args.predictions}: targets are multi-label but --task multiclass was given")
        if task == "multilabel" and not pf.multilabel:
            raise _Fail(f"{args.predictions}: targets are class indices but --task multilabel was given")
        reduction = args.reduction
        if reduction is None and pf.has_video_ids and not args.histogram_bins:
            reduction = "mean_logits" if args.input == "logits" else "mean_probs"
        if reduction is not None and not pf.has_video_ids:
            raise _Fail(f"{args.predictions}: --reduction {reduction} needs video ids (video_ids / video_id column)")
        suite = _make_suite(args, pf, task, reduction)
        _stream(args, pf, suite)
        rep = suite.report()
        from .report import write_report

        paths = write_report(rep, args.out, title=f"video_metrics report: {os.path.basename(args.predictions)}",
                             source=args.predictions)
    except (PredictionFileError, _Fail) as e:
        print(f"video-metrics report: error: {(str(e).splitlines() or [''])[0]}", file=sys.stderr)
        return 2
    except ValueError as e:  # the suite's own checks (raised at compute) and bad options
        print(f"video-metrics report: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(format_table(rep.scalars))
    print(f"\nReport: {paths['report.html']}")
    return 0


def _make_suite(args, pf, task, reduction):
    from .suite import VideoClassificationMetrics

    kw = dict(task=task, input=args.input, video_reduction=reduction, class_names=pf.class_names,
              calibration_bins=args.calibration_bins)
    if args.top_k:
        kw["top_k"] = tuple(args.top_k)
    if args.preset:
        kw["preset"] = args.preset
    if args.histogram_bins:
        kw["bins"] = args.histogram_bins
    return VideoClassificationMetrics(pf.num_classes, **kw)


def _stream(args, pf, suite) -> None:
    from tqdm import tqdm

    bar = tqdm(total=pf.num_rows, unit="clip", desc="evaluating", disable=args.no_progress, file=sys.stderr,
               leave=False)
    try:
        ids = getattr(suite, "bins", None) is None  # histogram mode: clip level only, ids unused
        for ch in pf.chunks(args.chunk_size):
            suite.update(ch.scores, ch.target, ch.video_ids if ids else None, ch.clip_ids if ids else None)
            bar.update(ch.scores.shape[0])
    finally:
        bar.close()
    if pf.registry is not None:
        pf.registry.check()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="video-metrics", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a tiny 3D CNN on generated clips and report clip/video metrics")
    p.add_argument("--out", default="video_metrics_demo", help="output folder (report, TensorBoard logs)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r = sub.add_parser("report", help="evaluate saved per-clip predictions and write an HTML/PNG/JSON report")
    r.add_argument("predictions", help=".npz, .pt or .csv file of per-clip predictions")
    r.add_argument("--out", required=True, help="report folder")
    r.add_argument("--task", choices=["multiclass", "multilabel"], default=None, help="default: from the targets")
    r.add_argument("--input", choices=["logits", "probs"], default="logits")
    r.add_argument("--reduction", choices=["mean_logits", "mean_probs", "max", "vote"], default=None,
                   help="clip->video reduction (default with video ids: mean_logits for logits, mean_probs for probs)")
    r.add_argument("--top-k", type=int, nargs="+", default=None)
    r.add_argument("--histogram-bins", type=int, default=None,
                   help="bounded-memory histogram mode: clip level only, AP/AUROC from score histograms (see README)")
    r.add_argument("--calibration-bins", type=int, default=15)
    r.add_argument("--preset", choices=["kinetics", "charades"], default=None)
    r.add_argument("--class-names", default=None, help="text file, one class name per line")
    r.add_argument("--chunk-size", type=int, default=8192)
    r.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args)
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
