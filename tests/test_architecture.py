"""The package's own rules, read from its syntax tree: no module reads another module's private
names, imports run downwards (functional kernels <- metric classes <- the rest), and no function
is longer than 80 lines without a reason written in its docstring."""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = sorted(list((ROOT / "video_metrics").rglob("*.py")) + list((ROOT / "callbacks").rglob("*.py")))

#: private names of other libraries that we read on purpose, each with its reason
THIRD_PARTY = {
    # the safe unpickler's allow-list names the functions pickles of tensors call (pickled.py)
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils",
    # explain/trace.py tells convolution, normalisation and pooling layers by their torch base classes
    "nn.modules.conv._ConvNd", "nn.modules.batchnorm._BatchNorm", "nn.modules.instancenorm._InstanceNorm",
    "nn.modules.pooling._MaxPoolNd", "nn.modules.pooling._AvgPoolNd", "nn.modules.pooling._AdaptiveAvgPoolNd",
    "nn.modules.pooling._AdaptiveMaxPoolNd",
    # Lightning's step counter of the current epoch (the figure callbacks' x axis), not exposed publicly
    "trainer.fit_loop.epoch_loop._batches_that_stepped",
}
#: modules of other libraries imported from a private path, with the reason
THIRD_PARTY_MODULES = {"numpy._core"}  # pickles written by NumPy 2 name numpy._core.multiarray


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def trees():
    for path in FILES:
        yield path.relative_to(ROOT), ast.parse(path.read_text(), filename=str(path))


def test_no_module_reads_another_modules_private_names():
    found = []
    for rel, tree in trees():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and private(node.attr)):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            if ast.unparse(node) not in THIRD_PARTY:
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    assert not found, "private names read across objects:\n" + "\n".join(found)


def test_no_private_names_imported_across_modules():
    found = []
    for rel, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if module in THIRD_PARTY_MODULES:
                    continue
                parts = module.split(".") + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                parts = [p for a in node.names for p in a.name.split(".")]
            else:
                continue
            if any(private(p) for p in parts):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    assert not found, "private names imported:\n" + "\n".join(found)


def package_imports(rel: pathlib.Path, tree: ast.AST):
    """The video_metrics modules a file imports (relative imports resolved), at any depth."""
    package = list(rel.with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("video_metrics"):
                yield node.module
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("video_metrics"):
                    yield a.name


@pytest.mark.parametrize("layer,allowed", [
    ("video_metrics/functional", ("video_metrics.functional",)),
    ("video_metrics/metrics", ("video_metrics.functional", "video_metrics.metrics")),
])
def test_imports_run_downwards(layer, allowed):
    found = []
    for rel, tree in trees():
        if not str(rel).startswith(layer):
            continue
        for module in package_imports(rel, tree):
            if not module.startswith(allowed):
                found.append(f"{rel} imports {module}")
    assert not found, "\n".join(found)


def test_functions_are_at_most_80_lines_or_say_why():
    found = []
    for rel, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if length > 80 and "longer than 80 lines" not in doc.lower():
                    found.append(f"{rel}:{node.lineno} {node.name} ({length} lines)")
    assert not found, "functions over 80 lines with no reason in their docstring:\n" + "\n".join(found)


def test_the_checks_can_fail():
    """Each rule finds the violation it is written for (so that a pass means something)."""
    tree = ast.parse("from .levels import _private\nx = level._rank_t\n")
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and private(n.attr)]
    assert [ast.unparse(n) for n in names] == ["level._rank_t"]
    assert any(private(a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names)
    rel = pathlib.Path("video_metrics/functional/x.py")
    assert list(package_imports(rel, ast.parse("from ..suite import A\nfrom .ranking import B\n"))) == [
        "video_metrics.suite", "video_metrics.functional.ranking"]
