"""Imports follow the pipeline (docs/architecture.md): no package imports a later stage, and there are no cycles.

Every `import` in cnnspec/ is read with `ast` (those under `if TYPE_CHECKING:` are for the type
checker alone and are left out) and mapped to its unit: a top-level package or module of
cnnspec, or one of the foundation modules everything may use. MAY_IMPORT is the table that
docs/architecture.md describes in words; a new package or module needs a row here and a
paragraph there.
"""

from __future__ import annotations

import ast
import graphlib
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cnnspec"

# Used by everything; they import nothing of cnnspec beyond each other.
FOUNDATION = frozenset(
    {
        "errors",
        "atomic",
        "terminal",
        "pathnames",
        "background",
        "interrupts",
        "version",
        "image_listing",
        "spec.base",
        "spec.dispatch",
    }
)
STAGES = ("layers", "augments", "datasets", "spec", "checker", "preprocess", "builder", "rundir", "training", "deploy")
F = set(FOUNDATION)
MAY_IMPORT: dict[str, set[str]] = {
    "errors": {"terminal"},  # a message is shown with its control characters escaped
    "version": set(),
    "terminal": set(),
    "pathnames": {"errors", "terminal"},  # paths too long for the OS, and how a message shows a path
    "background": {"terminal"},
    "interrupts": set(),
    "spec.base": set(),
    "spec.dispatch": {"errors", "spec.base"},  # the registry machinery layer kinds and augmentations share
    "atomic": {"errors"},
    "image_listing": {"errors", "terminal"},  # an image folder's classes and files, listed without torch
    "layers": F,
    "augments": F | {"layers"},
    "datasets": F,  # one class per dataset a spec can name
    "spec": F | {"layers", "augments", "datasets"},
    "checker": F | {"layers", "augments", "datasets", "spec"},
    "preprocess": F | {"layers", "augments", "datasets", "spec", "checker"},
    "builder": F | {"layers", "augments", "datasets", "spec", "checker"},
    "rundir": F | {"layers", "augments", "datasets", "spec", "checker", "preprocess", "builder"},  # the run directory
    "training.callbacks": set(),  # the Callback base and the hooks' types; imports nothing of cnnspec
    # train.loggers, `cnnspec runs` and `runs compare`: below training, which makes a spec's loggers
    "tracking": F
    | {"layers", "augments", "datasets", "spec", "checker", "preprocess", "builder", "rundir", "review", "render"}
    | {"training.callbacks"},
    "training": F
    | {"layers", "augments", "datasets", "spec", "checker", "preprocess", "builder", "rundir", "metrics", "render"}
    | {"training.callbacks", "tracking", "cpu_tuning"},
    # training: the dataset splits `quantize` calibrates on and measures with
    "deploy": F
    | {"layers", "augments", "datasets", "spec", "checker", "preprocess", "builder", "rundir", "training", "metrics"},
    "reference": F,
    "metrics": set(),  # classification figures (scikit-learn) that evaluate and predict share
    "review": F | {"layers", "augments", "datasets", "spec", "checker"},  # fmt, diff and init compute; render/ draws
    "render": F | {"layers", "augments", "datasets", "spec", "checker", "review"},  # summary, diff, doc tables
    "validate": F | {"layers", "augments", "datasets", "spec", "checker", "sweep"},  # sweep: the space's paths
    "extras": {"errors"},  # which extra of the distribution a module comes with
    # the command's own process's CPU settings; training logs the line it leaves
    "cpu_tuning": set(),
    # cnnspec sweep: Optuna studies whose trials are training runs
    "sweep": F | {"layers", "augments", "datasets", "spec", "checker", "rundir", "training", "training.callbacks"},
    "commands": F | {*STAGES, "render", "review", "validate", "extras", "tracking", "sweep", "cpu_tuning"},
    "cli": F | {"commands", "cpu_tuning"},
    "__main__": {"cli"},
    "cnnspec": F | {"spec", "checker", "builder", "training", "deploy"},  # the public API, cnnspec/__init__.py
}
# Allowed only inside a function: the public API imports its stage when called (`import cnnspec`
# stays cheap); a layer kind's torch builder and sugar expansion reach the stage that runs them.
LAZY_ONLY = {
    ("cnnspec", "spec"),
    ("cnnspec", "checker"),
    ("cnnspec", "builder"),
    ("cnnspec", "training"),
    ("cnnspec", "deploy"),
    ("layers", "builder"),
    ("layers", "checker"),
    ("augments", "training"),  # an augmentation's batch op imports its torch kernel when asked for it
    ("augments", "preprocess"),  # its evaluation fit, a value of cnnspec.preprocess
    ("datasets", "training"),  # a dataset's loader, as an augmentation's batch op
    ("training", "tracking"),  # train.loggers: a logger's library is imported only when a spec names it
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    lazy: bool  # inside a function: runs when called, not when the module is imported
    where: str


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "cnnspec":
        raise ValueError(module)
    if len(parts) == 1:
        return "cnnspec"
    if parts[1:2] == ["spec"] and parts[2:3] in (["base"], ["dispatch"]):
        return f"spec.{parts[2]}"
    if parts[1:3] == ["training", "callbacks"]:  # the hooks' types: what tracking/ builds its loggers on
        return "training.callbacks"
    return parts[1]


def _is_module(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package
        package = module if is_package else module.rpartition(".")[0]
        anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{anchor}.{base}" if base else anchor
    # `from cnnspec.spec import base` imports the module cnnspec.spec.base
    return [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]


def _file_edges(path: Path) -> list[Edge]:
    module = _module_name(path)
    source = _unit(module)
    edges = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other, lazy)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in _imported(child, module, path.name == "__init__.py"):
                    if (name == "cnnspec" or name.startswith("cnnspec.")) and _unit(name) != source:
                        where = f"{path.relative_to(PACKAGE.parent)}:{child.lineno}"
                        edges.append(Edge(source, _unit(name), lazy, where))
            visit(child, lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return edges


def _edges() -> list[Edge]:
    return [edge for path in sorted(PACKAGE.rglob("*.py")) for edge in _file_edges(path)]


EDGES = _edges()


def test_every_unit_has_a_row_in_the_table() -> None:
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert sorted(units - set(MAY_IMPORT)) == [], "add it to MAY_IMPORT and to docs/architecture.md"


def test_the_table_itself_is_layered() -> None:
    assert set().union(*MAY_IMPORT.values()) <= set(MAY_IMPORT)
    graphlib.TopologicalSorter(MAY_IMPORT).prepare()  # CycleError if two rows allow each other


def test_no_unit_imports_a_later_stage() -> None:
    wrong = [
        f"{e.where}: {e.source} imports {e.target}"
        for e in EDGES
        if e.target not in MAY_IMPORT.get(e.source, set()) and not (e.lazy and (e.source, e.target) in LAZY_ONLY)
    ]
    assert wrong == []


def test_lazy_only_imports_are_inside_functions() -> None:
    eager = [e.where for e in EDGES if not e.lazy and (e.source, e.target) in LAZY_ONLY]
    assert eager == []


def test_no_import_cycles_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        if e.lazy and (e.source, e.target) in LAZY_ONLY:
            continue
        graph.setdefault(e.source, set()).add(e.target)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle
