"""`cnnspec validate`, `cnnspec summary` and `cnnspec schema`: the spec read statically (no torch)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnnspec.commands.common import Overrides, echo, fail
from cnnspec.errors import CnnspecError


class ValidateFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class Purpose(StrEnum):
    """What `validate --for` checks a spec is ready for, beyond checking."""

    train = "train"


class SummaryFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    lines = "lines"


def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check ('-' reads stdin).", metavar="SPEC")],
    format: Annotated[
        ValidateFormat, typer.Option("--format", "-f", help="text, json, or github (Actions annotations).")
    ] = ValidateFormat.text,
    overrides: Overrides = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat warnings as errors: report each as an error and exit 1.")
    ] = False,
    purpose: Annotated[
        Purpose | None,
        typer.Option(
            "--for",
            help="Also check what this command needs: train (a data section, an image folder's train folder).",
        ),
    ] = None,
) -> None:
    """Check spec files statically (schema, shapes, data); exit 1 when any is invalid (with --strict: any warning)."""
    from cnnspec.spec.source import STDIN_NAME, is_stdin
    from cnnspec.validate import as_errors, github_annotation, validate_file

    failed = 0
    report = []
    for path in specs:
        graph, diagnostics = validate_file(path, overrides or (), for_training=purpose is Purpose.train)
        shown = STDIN_NAME if is_stdin(path) else str(path)
        if strict:
            diagnostics = as_errors(diagnostics)
        errors = [d for d in diagnostics if d.severity == "error"]
        failed += bool(errors)
        if format is ValidateFormat.json:
            report.append(
                {
                    "file": shown,
                    "valid": not errors,
                    "diagnostics": [d.to_json() for d in diagnostics],
                    "total_params": graph.total_params if graph and not errors else None,
                }
            )
        elif format is ValidateFormat.github:
            for d in diagnostics:
                echo(github_annotation(d))
        else:
            for d in diagnostics:
                echo(d.format(), stderr=True)
            if not errors and graph is not None:
                shape = "×".join(map(str, graph.output_shape))
                n = len(graph.nodes)
                echo(f"{shown}: ok ({n} layer{'s' * (n != 1)}, {graph.total_params:,} params, output {shape})")
    if format is ValidateFormat.json:
        echo(json.dumps(report, indent=2))
    elif format is ValidateFormat.text and len(specs) > 1:
        echo(f"{len(specs) - failed} of {len(specs)} specs valid")
    if failed:
        raise typer.Exit(1)


def summary(
    spec: Annotated[Path, typer.Argument(help="Spec file ('-' reads stdin).", metavar="SPEC")],
    format: Annotated[
        SummaryFormat,
        typer.Option(
            "--format",
            "-f",
            help="text, json, markdown, or lines (for git diff: one line per layer; a spec that does not load"
            " prints its error and exits 0).",
        ),
    ] = SummaryFormat.text,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", metavar="FILE", help="Also draw receptive field and feature-map size per stage to this PNG."
        ),
    ] = None,
    overrides: Overrides = None,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            min=1,
            metavar="N",
            help="Show N levels of layer ids (layer1.0.conv1 is level 3), each deeper layer folded into its "
            "level-N row; a ResNet backbone is shown through its layers.",
        ),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", "-b", min=1, metavar="N", help="Batch size of the memory estimate.")
    ] = 1,
) -> None:
    """Per-layer table: output shape, params, MACs, receptive field, stride; parameter and activation
    memory as torchinfo counts it; computed statically."""
    from cnnspec.checker.checker import check
    from cnnspec.checker.summary import summarize
    from cnnspec.render import summary as render
    from cnnspec.spec.overrides import load_with_overrides

    try:
        if plot is not None:
            render.plot_format(str(plot))  # before any work: an extension matplotlib cannot write
        graph = check(load_with_overrides(spec, overrides or ()))
    except CnnspecError as exc:
        if format is SummaryFormat.lines:  # a git textconv: the error is the text, `git diff` goes on
            echo(render.error_lines(exc.format()), end="")
            return
        raise fail(exc) from None
    rows = summarize(graph, depth=depth, batch_size=batch)
    if format is SummaryFormat.lines:
        echo(render.to_lines(rows), end="")
    elif format is SummaryFormat.json:
        echo(render.to_json(rows), end="")
    elif format is SummaryFormat.markdown:
        echo(render.to_markdown(rows), end="")
    else:
        from rich.console import Console

        Console(highlight=False, soft_wrap=False).print(render.to_text(rows))
    if plot is not None:
        try:
            render.plot(rows, str(plot))
        except OSError as exc:
            raise fail(CnnspecError(f"cannot write {plot}: {exc.strerror or exc}")) from None
        from cnnspec.terminal import printable

        echo(f"wrote {printable(plot)}", stderr=True)


def schema(
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of the spec language (for editors and CI)."""
    from cnnspec.spec.schema import json_schema_text

    try:
        text = json_schema_text()
    except CnnspecError as exc:  # a broken plugin: its kinds would be missing from the schema
        raise fail(exc) from None
    if out_file is None:
        sys.stdout.write(text)
    else:
        from cnnspec.commands.review import write_output

        write_output(out_file, text)  # atomically, and never over a run's own files
