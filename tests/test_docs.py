"""Documentation the API reference is built from: every public class, function and method of the
package has a docstring, and every name the packages export has a runnable example (run as a
doctest by ``make test``; ``make docs`` builds the reference from them in strict mode)."""
from __future__ import annotations

import ast
import importlib
import inspect
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = sorted(list((ROOT / "video_metrics").rglob("*.py")) + list((ROOT / "callbacks").rglob("*.py")))
EXPORTING = ("video_metrics", "video_metrics.metrics", "video_metrics.functional", "video_metrics.explain",
             "video_metrics.callbacks")


def public_definitions(tree: ast.Module, prefix: str = ""):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield prefix + node.name, node
            if isinstance(node, ast.ClassDef):
                yield from public_definitions(node, prefix + node.name + ".")


def test_every_public_name_has_a_docstring():
    missing = []
    for path in FILES:
        for name, node in public_definitions(ast.parse(path.read_text())):
            if not ast.get_docstring(node):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_every_exported_name_has_a_runnable_example():
    missing = []
    for module_name in EXPORTING:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and ">>>" not in (obj.__doc__ or ""):
                missing.append(f"{module_name}.{name}")
    assert not missing, "exported names without an example:\n" + "\n".join(missing)


def test_the_reference_names_every_exporting_module():
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    for module_name in EXPORTING[1:]:
        assert f"::: {module_name}\n" in pages, module_name
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        assert f"api/{page.name}" in nav, page.name
