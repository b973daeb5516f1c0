"""The engine's outputs equal those recorded before it was refactored (``tests/golden/cases.py``):
integers exactly, floats to 1e-12 (relative or absolute), every key and length the same."""
import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))
import cases  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def _same(got, want, path="") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _same(got[k], want[k], f"{path}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{path}[{i}]")
    elif isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, int):
        assert isinstance(got, int) and not isinstance(got, bool) and got == want, f"{path}: {got!r} != {want!r}"
    else:
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12), \
            f"{path}: {got!r} != {want!r}"


@pytest.mark.parametrize("section", list(cases.SECTIONS))
def test_outputs_equal_the_recorded_golden_file(section):
    with open(cases.GOLDEN) as f:
        want = json.load(f)[section]
    got = json.loads(json.dumps(cases.collect([section])[section]))  # the same JSON round trip as recorded
    _same(got, want, section)
