"""The package is plain Python: every folder of modules is a package, and nothing rewrites a module at run time.

Before: cnnspec/spec/ and cnnspec/check/ had no `__init__.py` (namespace packages), the stage
packages were made callable by swapping their module's `__class__`, and a module-level
`__getattr__` stored rich consoles with `globals()[name] = ...`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cnnspec"


# The one-key wrapper machinery (issue 13 item 4) is rewritten on another branch; until it is
# merged these two still register their wrapper models with globals().
def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _writes_to_globals(tree: ast.AST) -> bool:
    """`globals()[...] = ...` (or `globals().update(...)`, `globals().setdefault(...)`) anywhere in the module."""
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "globals()":
                return True
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("globals().update", "globals().setdefault"):
            return True
    return False


def _offenders() -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in _modules() if _writes_to_globals(ast.parse(p.read_text()))}


def test_every_folder_of_modules_is_a_package() -> None:
    folders = {p.parent for p in _modules()}
    assert sorted(str(f.relative_to(PACKAGE.parent)) for f in folders if not (f / "__init__.py").is_file()) == []


def test_no_module_swaps_a_class_at_run_time() -> None:
    swaps = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "__class__" for t in node.targets
            ):
                swaps.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert swaps == []


def test_no_module_writes_its_globals() -> None:
    assert _offenders() == set()


def test_the_text_and_markdown_renderers_are_all_in_render() -> None:
    # The summary's and the diff's renderers were split between render/ and review/report.py.
    outside = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
        for path in _modules()
        if path.parent.name != "render"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name in ("to_text", "to_markdown")
    ]
    assert outside == []
