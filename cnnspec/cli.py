"""The `cnnspec` command line: parse, call the library, render.

User errors (CnnspecError) print a located message and exit 1; usage errors exit 2.
validate, summary, fmt, diff and schema never import torch.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from cnnspec.errors import CnnspecError

if TYPE_CHECKING:
    from typer import _click as click  # typer's own copy of click, which TyperGroup derives from


class Commands(TyperGroup):
    """The command group. The commands of cnnspec/commands/*.py are added the first time
    a command that is not built in is asked for (or the list, for --help).

    Turning a typer command into a click command reads its signature and type hints; for
    every area's commands that is more time than `cnnspec validate` spends on a ResNet.
    """

    _discovered = False

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        areas = typer.Typer(add_completion=False)
        register_commands(areas)
        if not (areas.registered_commands or areas.registered_groups):
            return
        found = typer.main.get_command(areas)
        more = found.commands if isinstance(found, TyperGroup) else {found.name or "": found}
        for name, command in more.items():
            self.commands.setdefault(name, command)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._discover()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._discover()
        return super().list_commands(ctx)


app = typer.Typer(
    name="cnnspec",
    help="Declarative CNN specs: validate, summarise, train, export, predict.",
    cls=Commands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def __getattr__(name: str) -> Any:
    # `out` and `err` are rich consoles for commands that draw tables or progress; made on
    # first use because importing rich costs more than `cnnspec validate` itself.
    if name in ("out", "err"):
        from rich.console import Console

        console = Console(stderr=name == "err", highlight=False, soft_wrap=True)
        globals()[name] = console
        return console
    raise AttributeError(name)


def _print(text: str, *, stderr: bool = False, end: str = "\n") -> None:
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text + end)


def fail(exc: CnnspecError) -> typer.Exit:
    """Print a user error the way compilers do and return the exit to raise."""
    _print(exc.format(), stderr=True)
    return typer.Exit(1)


class ValidateFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class SummaryFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check.")],
    format: Annotated[
        ValidateFormat, typer.Option("--format", "-f", help="text, json, or github (Actions annotations).")
    ] = ValidateFormat.text,
) -> None:
    """Check spec files statically (schema, shapes, data); exit 1 when any is invalid."""
    from cnnspec.validate import github_annotation, validate_file

    failed = 0
    report = []
    for path in specs:
        graph, diagnostics = validate_file(path)
        errors = [d for d in diagnostics if d.severity == "error"]
        failed += bool(errors)
        if format is ValidateFormat.json:
            report.append(
                {
                    "file": str(path),
                    "valid": not errors,
                    "diagnostics": [d.to_json() for d in diagnostics],
                    "total_params": graph.total_params if graph and not errors else None,
                }
            )
        elif format is ValidateFormat.github:
            for d in diagnostics:
                _print(github_annotation(d))
        else:
            for d in diagnostics:
                _print(d.format(), stderr=True)
            if not errors and graph is not None:
                shape = "×".join(map(str, graph.output_shape))
                n = len(graph.nodes)
                _print(f"{path}: ok ({n} layer{'s' * (n != 1)}, {graph.total_params:,} params, output {shape})")
    if format is ValidateFormat.json:
        _print(json.dumps(report, indent=2))
    elif format is ValidateFormat.text and len(specs) > 1:
        _print(f"{len(specs) - failed} of {len(specs)} specs valid")
    if failed:
        raise typer.Exit(1)


@app.command()
def summary(
    spec: Annotated[Path, typer.Argument(help="Spec file.")],
    format: Annotated[
        SummaryFormat, typer.Option("--format", "-f", help="text, json or markdown.")
    ] = SummaryFormat.text,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw receptive field and feature-map size per stage to this PNG."),
    ] = None,
) -> None:
    """Per-layer table: output shape, params, MACs, receptive field, stride; computed statically."""
    from cnnspec.checker.checker import check
    from cnnspec.render import summary as render
    from cnnspec.spec.load import load

    try:
        graph = check(load(spec))
    except CnnspecError as exc:
        raise fail(exc) from None
    rows = render.summarize(graph)
    if format is SummaryFormat.json:
        _print(render.to_json(rows), end="")
    elif format is SummaryFormat.markdown:
        _print(render.to_markdown(rows), end="")
    else:
        from rich.console import Console

        Console(highlight=False, soft_wrap=False).print(render.to_text(rows))
    if plot is not None:
        try:
            render.plot(rows, str(plot))
        except OSError as exc:
            raise fail(CnnspecError(f"cannot write {plot}: {exc.strerror or exc}")) from None
        _print(f"wrote {plot}", stderr=True)


@app.command()
def schema(
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of the spec language (for editors and CI)."""
    from cnnspec.spec.schema import json_schema_text

    text = json_schema_text()
    if out_file is None:
        sys.stdout.write(text)
    else:
        try:
            out_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(CnnspecError(f"cannot write {out_file}: {exc.strerror or exc}")) from None


def register_commands(target: typer.Typer) -> None:
    """Let every module in cnnspec/commands/ add its commands (`register(app)`) to `target`.

    None of these modules imports torch at import time.
    """
    import importlib
    import pkgutil

    import cnnspec.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"cnnspec.commands.{info.name}")
        module.register(target)


def main() -> None:
    """The console script."""
    # The first validator pydantic builds makes it read every installed package's metadata,
    # looking for plugins (observability hooks): ~20 ms of a `validate` run, for nothing here.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    app()
