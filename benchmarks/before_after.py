"""One benchmark script on two versions of the package, in one run: this checkout ("after") and
another checkout ("before", e.g. ``git worktree add /tmp/vm_before <commit>``), alternating, each
line of the two outputs printed one above the other (lines equal in both printed once).

    python benchmarks/before_after.py --before /tmp/vm_before -- benchmarks/run.py --threads 2
    python benchmarks/before_after.py --before /tmp/vm_before -- benchmarks/scale.py --ddp 1 2 3 --sizes 240000

The script is this checkout's (the same measurement for both); only ``video_metrics`` is imported
from the other tree (``PYTHONPATH``). ``--rounds`` runs the pair several times, alternating the
order; every round is printed. The machine's reference sort timings come first.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script_args, code: str) -> str:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable] + script_args, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{' '.join(script_args)} failed with {code or 'this checkout'}:\n{out.stderr[-3000:]}")
    return out.stdout + f"(wall {time.perf_counter() - t0:.0f} s)\n"


def check_version(code: str) -> str:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", "import video_metrics, os; print(os.path.dirname(video_metrics.__file__))"],
                          capture_output=True, text=True, env=env, cwd="/").stdout.strip()


def side_by_side(after: str, before: str) -> str:
    a, b = after.splitlines(), before.splitlines()
    out = []
    for i in range(max(len(a), len(b))):
        la = a[i] if i < len(a) else ""
        lb = b[i] if i < len(b) else ""
        if la == lb:
            out.append("        " + la)
        else:
            out += ["after:  " + la, "before: " + lb]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="a checkout of the earlier code")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("script", nargs=argparse.REMAINDER, help="-- script.py [its arguments]")
    args = ap.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        raise SystemExit("give the benchmark after --, e.g. -- benchmarks/run.py --threads 2")
    before = os.path.abspath(args.before)
    print(f"after:  video_metrics from {check_version(None)}")
    print(f"before: video_metrics from {check_version(before)}")
    print(subprocess.run([sys.executable, os.path.join(HERE, "machine.py")], capture_output=True, text=True).stdout)
    for r in range(args.rounds):
        order = [("after", None), ("before", before)] if r % 2 == 0 else [("before", before), ("after", None)]
        outs = {label: run(script, code) for label, code in order}
        print(f"## round {r + 1} of {args.rounds} (ran {order[0][0]} first): {' '.join(script)}")
        print(side_by_side(outs["after"], outs["before"]), flush=True)


if __name__ == "__main__":
    main()
