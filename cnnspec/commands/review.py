"""CLI for reviewing architecture changes: `fmt`, `graph`, `diff` and `init` (none imports torch)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnnspec.commands.common import Overrides, echo, fail, is_pipe, stderr_console, stdout_console
from cnnspec.errors import CnnspecError, Diagnostic, Location
from cnnspec.terminal import printable


class DiffFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"
    html = "html"


def stdout_asked(out: Path | None) -> bool:
    """`-o -`: the output goes to stdout, as without -o (a file named `-` is written with its folder:
    `-o "$PWD/-"`; pathlib reads `./-` as `-`)."""
    return out is not None and str(out) == "-"


def write_output(path: Path, data: str | bytes, inputs: Sequence[str | Path] = ()) -> None:
    """Write a file the user named (-o): atomically, never through a directory or special file, never
    through a symbolic link to nothing (it would create the file, and folders, wherever the link points),
    and never over one of the command's `inputs` (a spec being drawn or diffed), through a link or not.
    A link to an existing file is followed, as `fmt` and `export` follow it: the link stays."""
    from cnnspec.atomic import NotRegularFileError, atomic_write_bytes, dangling_link, write_target

    pointed = dangling_link(path)
    if pointed is not None:
        raise fail(
            CnnspecError(
                Diagnostic(
                    f"cannot write {printable(path)}: it is a symbolic link to {printable(pointed)}, "
                    "which does not exist",
                    Location(str(path)),
                    hint="-o writes through a link only to a file that exists: remove the link, or name another file",
                )
            )
        )
    from cnnspec.rundir.owner import owning_run

    owner = owning_run(path)
    if owner is not None:
        raise fail(
            CnnspecError(
                Diagnostic(
                    f"cannot write {printable(path)}: it is {owner[1]} of the cnnspec run {printable(str(owner[0]))}",
                    Location(str(path)),
                    hint="name a file outside the run's own files for -o",
                )
            )
        )
    for given in inputs:
        # os.path.samefile sees through symbolic and hard links alike; an -o that does not exist yet is no input.
        if os.path.isfile(given) and os.path.exists(path) and os.path.samefile(given, path):
            raise fail(
                CnnspecError(
                    Diagnostic(
                        f"cannot write {printable(path)}: it is the input {printable(str(given))}",
                        Location(str(path)),
                        hint="name another file for -o",
                    )
                )
            )
    try:
        target = write_target(path)
        if not target.parent.is_dir():  # a mistyped folder is not created: say so, as summary --plot does
            raise FileNotFoundError(errno.ENOENT, f"the folder {printable(str(target.parent))} does not exist")
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except NotRegularFileError as exc:
        raise fail(CnnspecError(Diagnostic(f"cannot write {path}: {exc.strerror}", Location(str(path))))) from None
    except OSError as exc:
        raise fail(
            CnnspecError(Diagnostic(f"cannot write {path}: {exc.strerror or exc}", Location(str(path))))
        ) from None
    echo(f"wrote {printable(path)}", stderr=True)


def graph(
    spec: Annotated[Path, typer.Argument(help="Spec file.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write to FILE.svg, FILE.html or FILE.png; '-': SVG on stdout; none: SVG on stdout "
            "unless it is a terminal.",
        ),
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            min=1,
            help="Fold blocks, repeats and groups deeper than N id parts into one box (HTML: click to open).",
        ),
    ] = None,
    overrides: Overrides = None,
) -> None:
    """Draw the layer graph top to bottom: each layer's id, kind, key parameters and output shape (no torch)."""
    from cnnspec.checker.checker import check
    from cnnspec.extras import png_not_installed
    from cnnspec.render import graph as render
    from cnnspec.spec.overrides import load_with_overrides

    if out is None and sys.stdout.isatty():  # an SVG's text on a terminal helps no one (`-o -` still sends it)
        refused = CnnspecError(
            "cnnspec graph would write SVG text to the terminal",
            hint="write a file: -o FILE.svg, FILE.html or FILE.png; "
            f"or pipe it: cnnspec graph {printable(spec)} > FILE.svg",
        )
        echo(refused.format(), stderr=True)
        raise typer.Exit(2)  # a usage error: the command line lacks where to write
    if stdout_asked(out):
        out = None
    try:
        kind = render.graph_format(str(out)) if out is not None else "svg"
        if kind == "png":
            missing = png_not_installed("graph")
            if missing is not None:
                raise missing
        checked = check(load_with_overrides(spec, overrides or ()))
        if kind == "png":
            data: str | bytes = render.to_png(checked, depth, str(out))
        elif kind == "html":
            data = render.to_html(checked, depth)
        else:
            data = render.to_svg(checked, depth)
    except CnnspecError as exc:
        raise fail(exc) from None
    if out is None:
        sys.stdout.write(str(data))
        return
    write_output(out, data, [spec])


def fmt(
    specs: Annotated[
        list[Path],
        typer.Argument(help="Spec files to format in place ('-' reads stdin, writes stdout).", metavar="SPEC"),
    ],
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 and name the files that would change.")
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Change nothing; print what would change as a unified diff.")
    ] = False,
) -> None:
    """Write specs in the canonical layout (key order, one line per layer, indentation); comments are kept."""
    from cnnspec.atomic import rewrite_text
    from cnnspec.review.fmt import format_file, format_text, unified_diff

    err, out = stderr_console(), stdout_console()

    failed = would_change = changed = 0
    for path in specs:
        try:
            if str(path) == "-":
                from cnnspec.spec.load import loads
                from cnnspec.spec.source import STDIN_NAME, read_stdin_text

                text = read_stdin_text()  # bounded as a file is; a terminal is refused, not waited on
                loads(text, STDIN_NAME)
                sys.stdout.write(format_text(text, STDIN_NAME))
                continue
            if not (check or diff) and is_pipe(path):  # its text can be read, but not replaced
                raise CnnspecError(
                    Diagnostic(
                        f"cannot reformat {path} in place: it is a pipe",
                        Location(str(path)),
                        hint="`cnnspec fmt - < FILE` prints the formatted text; --check and --diff only read",
                    )
                )
            before, after = format_file(path)
        except CnnspecError as exc:
            err.print(exc.format(), markup=False)
            failed += 1
            continue
        if before == after:
            continue
        if diff:
            out.print(unified_diff(str(path), before, after), markup=False, end="")
        if check or diff:
            would_change += 1
            err.print(f"would reformat {printable(path)}", markup=False)
        else:
            try:
                rewrite_text(path, after)  # hard links keep sharing the file (docs/review.md)
            except OSError as exc:
                err.print(
                    f"{printable(path)}: error: cannot write {printable(path)}: {exc.strerror or exc}", markup=False
                )
                failed += 1
                continue
            changed += 1
            err.print(f"reformatted {printable(path)}", markup=False)
    files = [p for p in specs if str(p) != "-"]
    if files and len(files) > 1:
        verb = "would be reformatted" if check or diff else "reformatted"
        done = would_change if check or diff else changed
        err.print(f"{done} of {len(files)} files {verb}" + (f", {failed} refused" if failed else ""), markup=False)
    if failed or (would_change and check):
        raise typer.Exit(1)


def diff(
    old: Annotated[
        str,
        typer.Argument(
            help="The old spec: a file, or REV:PATH read with git show (e.g. HEAD~1:specs/x.yaml).", metavar="OLD"
        ),
    ],
    new: Annotated[str, typer.Argument(help="The new spec: a file or REV:PATH.")],
    format: Annotated[
        DiffFormat,
        typer.Option("--format", "-f", help="text (coloured), markdown (PR comment), json, or html (the two graphs)."),
    ] = DiffFormat.text,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the report to this file instead of stdout ('-': stdout).")
    ] = None,
) -> None:
    """Architecture diff: layers added/removed/changed, shape, params, MACs and receptive-field deltas, checkpoint fit.

    Exit status as diff(1): 0 same architecture, 1 different, 2 trouble (a spec does not load or check).
    """
    from cnnspec.render import diff as report
    from cnnspec.review.diff import diff_specs

    err, console = stderr_console(), stdout_console()
    if stdout_asked(out):
        out = None
    try:
        d = diff_specs(old, new)
    except CnnspecError as exc:
        err.print(exc.format(), markup=False)
        raise typer.Exit(2) from None
    if format is DiffFormat.text and out is None:
        console.print(report.to_text(d))
    else:
        if format is DiffFormat.html:
            from cnnspec.render.diff_html import to_html

            text = to_html(d)
        elif format is DiffFormat.json:
            text = report.to_json(d)
        elif format is DiffFormat.markdown:
            text = report.to_markdown(d)
        else:
            text = report.to_plain_text(d)
        if out is None:
            sys.stdout.write(text)
        else:
            try:
                from cnnspec.review.sources import working_file

                # A REV:PATH input's working copy is an input too: `diff HEAD:a.yaml b.yaml -o a.yaml` refuses.
                checkouts = [f for f in (working_file(old), working_file(new)) if f is not None]
                write_output(out, text, [old, new, *checkouts])
            except typer.Exit:
                raise typer.Exit(2) from None
    if not d.same:
        raise typer.Exit(1)


def init(
    template: Annotated[
        str, typer.Argument(help="Template: small-cnn, deeper-cnn, resnet18-transfer or digits.")
    ] = "small-cnn",
    # A str, not a Path: a Path drops the trailing slash that says "a folder to create".
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="PATH",
            help="File to write, or a folder to write TEMPLATE.yaml into: an existing folder, or a path "
            "ending with / (created). Default ./TEMPLATE.yaml.",
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the templates and exit.")] = False,
) -> None:
    """Write a starting spec from a template (with the `$schema` line for editors); never overwrites a file."""
    from cnnspec.review import templates

    err, out = stderr_console(), stdout_console()

    if list_:
        for name in templates.template_names():
            out.print(name, markup=False)
        return
    try:
        target = templates.init(template, path)
    except CnnspecError as exc:
        raise fail(exc) from None
    err.print(
        f"wrote {printable(target)} (template {template}); next: cnnspec validate {printable(target)}", markup=False
    )
    note = templates.local_schema_note(target)
    if note is not None:
        err.print(printable(note), markup=False)
