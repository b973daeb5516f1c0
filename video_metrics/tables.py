"""Plain-text tables of a report's scalars (the command line's output, ``print(suite.report())``)."""
from __future__ import annotations

from typing import Dict, List, Optional

__all__ = ["format_table"]


def format_table(scalars: Dict[str, float], intervals: Optional[Dict[str, tuple]] = None) -> str:
    """Two-column table: one row per metric name, clip and video values side by side (with their
    bootstrap intervals when given)."""
    intervals = intervals or {}
    names: List[str] = []
    for k in scalars:
        level, _, name = k.partition("/")
        if level in ("clip", "video") and name not in names:
            names.append(name)
    width = max(len(n) for n in names) + 2
    cw = 28 if intervals else 10
    levels = [lv for lv in ("clip", "video") if any(k.startswith(lv + "/") for k in scalars)]
    lines = [f"{'metric':<{width}}" + "".join(f"{lv:>{cw}}" for lv in levels), "-" * (width + len(levels) * cw)]
    for n in names:
        cells = []
        for level in levels:
            v = scalars.get(f"{level}/{n}")
            iv = intervals.get(f"{level}/{n}")
            if v is None:
                cell = ""
            elif n.startswith("num_") or n.startswith("missing"):
                cell = f"{v:.0f}"
            else:
                cell = f"{v:.4f}" + (f" [{iv[0]:.4f}, {iv[1]:.4f}]" if iv is not None else "")
            cells.append(f"{cell:>{cw}}")
        lines.append(f"{n:<{width}}" + "".join(cells))
    return "\n".join(lines)
