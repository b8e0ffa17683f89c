"""The package's shape: imports run one way and no module reaches into another's privates.

DESIGN.md: ``widgets -> {saliency, methods, optimize, metrics, atlas} -> model -> {data,
skeleton}``; each concept lives once, so a module that needs another's helper uses a public
name (a private *module* such as ``_checks`` is fine: its names are its public API).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skvis_widgets"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``from X import ...`` reads, or None outside the package."""
    if node.level == 0:
        return node.module if (node.module or "").startswith("skvis_widgets") else None
    base = _dotted(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    target = PACKAGE / rel
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    modules_bound: dict[str, str] = {}  # local name -> package module it names
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(path, node)
            if source is None:
                continue
            for alias in node.names:
                local = alias.asname or alias.name
                if _is_module(f"{source}.{alias.name}"):
                    modules_bound[local] = f"{source}.{alias.name}"
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {source} import {alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules_bound
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"line {node.lineno}: {modules_bound[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_uses_another_modules_private_names(path: Path) -> None:
    assert _private_uses(path) == []


def test_the_checker_sees_a_private_import(tmp_path: Path) -> None:
    # the rule above must be able to fail: a module written to break it is caught
    bad = PACKAGE / "_architecture_probe_tmp.py"
    bad.write_text(
        "from .metrics import _not_public\nfrom . import _checks\nx = _checks._hidden\n",
        encoding="utf-8",
    )
    try:
        found = _private_uses(bad)
    finally:
        bad.unlink()
    assert found == [
        "line 1: from skvis_widgets.metrics import _not_public",
        "line 3: skvis_widgets._checks._hidden",
    ]


_LAYERS = {
    # a module and the package modules it must never import (directly or through others)
    "skvis_widgets.skeleton": ["torch", "skvis_widgets.model", "ipywidgets"],
    "skvis_widgets.data": ["skvis_widgets.model", "skvis_widgets.saliency", "ipywidgets"],
    "skvis_widgets.model": ["skvis_widgets.saliency", "skvis_widgets.optimize", "ipywidgets"],
    "skvis_widgets.saliency": ["skvis_widgets.widgets", "ipywidgets", "pythreejs", "bqplot"],
    "skvis_widgets.methods": ["skvis_widgets.widgets", "ipywidgets", "pythreejs", "bqplot"],
    "skvis_widgets.metrics": ["skvis_widgets.widgets", "ipywidgets", "pythreejs", "bqplot"],
    "skvis_widgets.optimize": ["skvis_widgets.widgets", "ipywidgets", "pythreejs", "bqplot"],
    "skvis_widgets.anatomy": ["skvis_widgets.widgets", "skvis_widgets.model", "ipywidgets"],
}


@pytest.mark.parametrize("module", sorted(_LAYERS))
def test_imports_run_one_way(module: str) -> None:
    forbidden = _LAYERS[module]
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print('\\n'.join(m for m in {forbidden!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    )
    assert out.stdout.split() == [], f"importing {module} imports {out.stdout.split()}"


# -- the README's module map is the tree -------------------------------------------------------
def _tree() -> set[str]:
    """Every module of the package but ``__init__.py``, and every subpackage (``data/``)."""
    out = set()
    for p in _modules():
        rel = p.relative_to(PACKAGE).as_posix()
        if p.name == "__init__.py":
            if p.parent != PACKAGE:
                out.add(rel.removesuffix("__init__.py"))
        else:
            out.add(rel)
    return out


def _module_map(readme: str) -> set[str]:
    """The paths named in the README's module map (the code block of "## Module map")."""
    section = readme.split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    lines = block.splitlines()[1:]  # the first is "skvis_widgets/"
    names, stack = set(), []  # stack: (indent, folder) of the folders above a line
    for line in lines:
        m = re.match(r"^( +)([\w.]+/|[\w]+\.py)(\s|$)", line)
        if not m:
            continue  # a description's continuation
        indent, name = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(folder for _, folder in stack) + name
        names.add(path)
        if name.endswith("/"):
            stack.append((indent, name))
    return names


def test_the_readme_module_map_matches_the_tree() -> None:
    mapped = _module_map((ROOT / "README.md").read_text(encoding="utf-8"))
    tree = _tree()
    assert sorted(tree - mapped) == [], "modules missing from the README's module map"
    assert sorted(mapped - tree) == [], "the README's module map names modules that do not exist"


def test_the_module_map_reader_can_fail() -> None:
    readme = (
        "# x\n## Module map\n\n```\nskvis_widgets/\n  a.py  x\n  d/\n    b.py  y\n```\n## Next\n"
    )
    assert _module_map(readme) == {"a.py", "d/", "d/b.py"}


# -- mypy, and the slow tests run by default ----------------------------------------------------
@pytest.mark.slow
def test_mypy_passes() -> None:
    # CI installs mypy with the test extra (pyproject.toml); its config is [tool.mypy] there
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "skvis_widgets"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_the_default_pytest_runs_the_slow_tests_and_ci_has_mypy(request) -> None:
    # "slow" only labels tests (pytest -m "not slow" for a quick look); CI runs them all
    assert "not slow" not in " ".join(request.config.getini("addopts"))
    assert any(m.startswith("slow:") for m in request.config.getini("markers"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    test_extra = re.search(r"^test = \[(.*?)^\]", pyproject, re.S | re.M)
    assert test_extra and re.search(r'"mypy\b', test_extra.group(1)), "mypy: not in the test extra"
