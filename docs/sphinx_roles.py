"""Griffe extensions for the API reference (``mkdocs.yml``).

* :class:`SphinxRoles`: the docstrings' Sphinx roles (``:class:`~a.B```, ``:func:``, ``:meth:``,
  ``:mod:``, ``:attr:``, ``:data:``, ``:exc:``) become cross-references that mkdocs-autorefs
  resolves, so that ``mkdocs build --strict`` fails on a reference to a name that is not in the
  reference; doctest blocks become code blocks. A name without its package is looked up beside
  the documented object (its class, then its module, then the packages above), a re-exported name
  at the place it is defined; references outside video_metrics stay code spans.
* :class:`InstalledLayout`: ``callbacks/`` is installed as ``video_metrics.callbacks``
  (setuptools' ``package-dir``), which Griffe's finder does not read: it is loaded from its folder
  and attached where it is installed.
"""
from __future__ import annotations

import re
from typing import Optional

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([A-Za-z_][\w.]*)(?:\(\))?`")
PROMPT = re.compile(r"^(\s*)(>>>|\.\.\.)( |$)")


def canonical(obj: griffe.Object) -> str:
    try:
        return obj.target_path if obj.is_alias else obj.path
    except griffe.AliasResolutionError:
        return obj.path


def defined_anywhere(root: griffe.Object, name: str) -> Optional[str]:
    """The path of the one class or function called ``name`` in the package, if exactly one."""
    found = set()

    def walk(node):
        for member in node.members.values():
            if member.is_alias:
                continue
            if member.name == name and (member.is_class or member.is_function):
                found.add(member.path)
            if member.is_module:
                walk(member)
    walk(root)
    return found.pop() if len(found) == 1 else None


def resolve(obj: griffe.Object, target: str) -> str:
    parts = target.split(".")
    root = obj
    while root.parent is not None:
        root = root.parent
    if parts[0] == "video_metrics":
        node = root
        for i, part in enumerate(parts[1:], 1):
            if part not in node.members:
                if i == 1 and len(parts) == 2:  # a lazily re-exported name: video_metrics.Name
                    return defined_anywhere(root, part) or target
                return target
            node = node.members[part]
        return canonical(node)
    node = obj if obj.is_class or obj.is_module else obj.parent
    while node is not None:
        if parts[0] in node.members:
            base = canonical(node.members[parts[0]])
            return ".".join([base] + parts[1:])
        node = node.parent
    return target


def fence_doctests(text: str) -> str:
    """Doctest blocks (``>>>`` lines and their output, up to a blank line) as Python code blocks."""
    out, block = [], None
    for line in text.split("\n"):
        if block is None and PROMPT.match(line):
            indent = PROMPT.match(line).group(1)
            block = [indent + "```python"]
        if block is not None:
            if line.strip() == "":
                out += block + [block[0].replace("```python", "```"), line]
                block = None
                continue
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        out += block + [block[0].replace("```python", "```")]
    return "\n".join(out)


def rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        def link(m: re.Match) -> str:
            tilde, target = m.groups()
            full = resolve(obj, target)
            if full.split(".")[0] != "video_metrics":
                return f"`{target}`"
            return f"[`{full.rsplit('.', 1)[-1] if tilde else target}`][{full}]"

        obj.docstring.value = fence_doctests(ROLE.sub(link, obj.docstring.value))
    for member in obj.members.values():
        if not member.is_alias:
            rewrite(member)


class InstalledLayout(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.path != "video_metrics" or "callbacks" in pkg.members:
            return
        root = pkg.filepath[0].parent.parent if isinstance(pkg.filepath, list) else pkg.filepath.parent.parent
        pkg.set_member("callbacks", griffe.load("callbacks", search_paths=[str(root)], docstring_parser="sphinx"))


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.path == "video_metrics":
            rewrite(pkg)
