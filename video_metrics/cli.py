"""``video-metrics`` command line.

``video-metrics demo``: evaluate a bundled, generated set of per-clip predictions (seeded; a
long-tailed 50-class problem, 400 videos x 5 clips) with :class:`VideoClassificationMetrics`
and print the clip- and video-level metric table.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Optional

from .data import synthetic_predictions
from .suite import VideoClassificationMetrics


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


def demo(args: argparse.Namespace) -> int:
    d = synthetic_predictions(num_videos=args.videos, clips_per_video=args.clips, num_classes=args.classes, seed=args.seed)
    suite = VideoClassificationMetrics(args.classes, top_k=(1, 5), video_reduction=args.reduction, class_names=d.class_names)
    t0 = time.perf_counter()
    for i in range(0, len(d.target), args.batch_size):
        sl = slice(i, i + args.batch_size)
        suite.update(d.scores[sl], d.target[sl], d.video_ids[sl], d.clip_ids[sl])
    scalars = {k: float(v) for k, v in suite.compute().items()}
    took = time.perf_counter() - t0
    print(f"video_metrics demo: {len(d.target)} generated clip predictions of {args.videos} videos, "
          f"{args.classes} classes, video reduction '{args.reduction}'\n")
    print(format_table(scalars))
    print(f"\nevaluated in {took:.2f} s")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="video-metrics", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="evaluate bundled generated predictions and print the metric table")
    p.add_argument("--videos", type=int, default=400)
    p.add_argument("--clips", type=int, default=5)
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--reduction", default="mean_logits", choices=["mean_logits", "mean_probs", "max", "vote"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smaller run")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.quick:
            args.videos, args.classes = 60, 10
        return demo(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
