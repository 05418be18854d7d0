"""The `cnnspec` command line: parse, call the library, render.

User errors (CnnspecError) print a located message and exit 1; usage errors exit 2.
validate, summary, fmt, diff and schema never import torch.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cnnspec.errors import CnnspecError

app = typer.Typer(
    name="cnnspec",
    help="Declarative CNN specs: validate, summarise, train, export, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(exc: CnnspecError) -> typer.Exit:
    """Print a user error the way compilers do and return the exit to raise."""
    err.print(exc.format(), markup=False)
    return typer.Exit(1)


class ValidateFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"


class SummaryFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check.")],
    format: Annotated[ValidateFormat, typer.Option("--format", "-f", help="text, json, or github (Actions annotations).")] = ValidateFormat.text,
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
                out.print(github_annotation(d), markup=False)
        else:
            for d in diagnostics:
                err.print(d.format(), markup=False)
            if not errors and graph is not None:
                out.print(
                    f"{path}: ok ({len(graph.nodes)} layers, {graph.total_params:,} params, output {'×'.join(map(str, graph.output_shape))})",
                    markup=False,
                )
    if format is ValidateFormat.json:
        out.print(json.dumps(report, indent=2), markup=False)
    elif format is ValidateFormat.text and len(specs) > 1:
        out.print(f"{len(specs) - failed} of {len(specs)} specs valid", markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def summary(
    spec: Annotated[Path, typer.Argument(help="Spec file.")],
    format: Annotated[SummaryFormat, typer.Option("--format", "-f", help="text, json or markdown.")] = SummaryFormat.text,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw receptive field and feature-map size per stage to this PNG.")] = None,
) -> None:
    """Per-layer table: output shape, params, MACs, receptive field, stride; computed statically."""
    from cnnspec.check.checker import check
    from cnnspec.render import summary as render
    from cnnspec.spec.load import load

    try:
        graph = check(load(spec))
    except CnnspecError as exc:
        raise fail(exc) from None
    rows = render.summarize(graph)
    if format is SummaryFormat.json:
        out.print(render.to_json(rows), markup=False, end="")
    elif format is SummaryFormat.markdown:
        out.print(render.to_markdown(rows), markup=False, end="")
    else:
        out.print(render.to_text(rows))
    if plot is not None:
        render.plot(rows, str(plot))
        err.print(f"wrote {plot}", markup=False)


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
        out_file.write_text(text, encoding="utf-8")


def _register_commands() -> None:
    # Each area adds its commands; none of these modules imports torch at import time.
    import importlib
    import pkgutil

    import cnnspec.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"cnnspec.commands.{info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    app()
