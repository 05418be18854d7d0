"""The `cnnspec` command group: every command, in one table, in workflow order.

A command is a plain function in its area's module (spec.py, review.py, run.py, deploy.py)
and one line of COMMANDS; nothing else registers commands. Turning a typer function into a
click command reads its signature and type hints, which for all of them costs more than
`cnnspec validate` spends on a ResNet: the group converts the command it runs, and all of
them only to list them (`--help`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperArgument, TyperGroup, TyperOption

from cnnspec.commands import deploy, review, run, runs, spec, sweep
from cnnspec.commands.common import fail
from cnnspec.interrupts import interrupts_exit
from cnnspec.pathnames import is_utf8, not_utf8_error, too_long, too_long_error
from cnnspec.terminal import printable

if TYPE_CHECKING:
    from typer import _click as click  # typer's own copy of click, which TyperGroup derives from

# How a command ends on purpose (its exit status, a usage error): never taken for an interrupt.
TYPER_ENDINGS = (typer.Exit, typer.Abort, typer.TyperException)

# The order `cnnspec --help` lists them in: write a spec, check it, review it, train, ship it.
COMMANDS: dict[str, Callable[..., None]] = {
    "init": review.init,
    "validate": spec.validate,
    "summary": spec.summary,
    "graph": review.graph,
    "fmt": review.fmt,
    "diff": review.diff,
    "train": run.train,
    "evaluate": run.evaluate,
    "runs": runs.runs,
    "sweep": sweep.sweep,
    "lr-find": sweep.lr_find,
    "export": deploy.export,
    "quantize": deploy.quantize,
    "predict": deploy.predict,
    "bench": deploy.bench,
    "serve": deploy.serve,
    "schema": spec.schema,
}


def click_command(name: str, function: Callable[..., None]) -> click.Command:
    """The click command typer makes of `function`, named `name`, with plain placeholders in its help."""
    single = typer.Typer(add_completion=False)
    single.command(name=name)(paths_checked(function))
    command = typer.main.get_command(single)  # one command and no callback: the command itself
    command.name = name
    plain_placeholders(command.params)
    return command


class PlainArgument(TyperArgument):
    """An argument shown as its placeholder alone: `SPEC...` in the usage line and the table, `[PATH]`
    when it may be left out; typer would add its Python type (`<list[Path]>`) and braces (`{SPEC}`)."""

    @classmethod
    def of(cls, argument: TyperArgument) -> PlainArgument:
        """`argument` as a PlainArgument, every field the same: typer.main makes TyperArguments itself and
        takes no class to make them of."""
        plain = cls.__new__(cls)
        plain.__dict__.update(vars(argument))
        return plain

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None

    def _rich_display_name(self) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def plain_placeholders(params: list[click.Parameter]) -> None:
    """Give every parameter without a metavar one in the help's one style: none for a flag, the choices
    for a choice (`text|json`), the name in capitals for the rest (`SPEC`); never typer's Python types
    (`<bool>`, `<list[Path]>`, `<path>`). A command names its own where the name is not the word.
    Each argument in `params` is replaced by its PlainArgument."""
    for i, param in enumerate(params):
        if isinstance(param, TyperArgument) and not isinstance(param, PlainArgument):
            param = params[i] = PlainArgument.of(param)
        if param.metavar is not None:
            continue
        described = getattr(param, "type_descriptor", None)
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif described is not None and described.is_choice and described.choices:
            param.metavar = "|".join(str(getattr(c, "value", c)) for c in described.choices)
        else:
            param.metavar = (param.name or "value").upper()


# The options whose path a run records (run.json, safetensors' path argument): one that is not UTF-8 is
# refused before a run starts (a run trained there could not be read back). Paths only read (a model,
# an image folder) may be any bytes.
RECORDED_PATHS = frozenset({"out", "resume"})


def paths_checked(function: Callable[..., None]) -> Callable[..., None]:
    """`function` with every path it is given checked for its length first, and a path the OS refuses for
    its length while it runs (one it made from them) reported as one line: never a traceback.

    The paths are the command's Path arguments and options, so every command gets the check here, in
    one place, whether its path is read (a spec, a run, an image) or written (--out, --plot).
    """

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            for path in value if isinstance(value, list | tuple) else [value]:
                if isinstance(path, Path):
                    reason = too_long(path)
                    if reason is not None:
                        raise fail(too_long_error(path, reason))
                    if name in RECORDED_PATHS and not is_utf8(path):
                        raise fail(not_utf8_error(path))
        try:
            function(*args, **kwargs)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise fail(too_long_error(exc.filename if exc.filename is not None else "a path")) from None

    return checked


@contextlib.contextmanager
def usage_errors_as_lines() -> Iterator[None]:
    """A usage error (a missing argument, an unknown option, a value not among the choices) as the usage
    line, the help hint and one `error: ...` line, as every other error reads, and exit 2. typer would
    draw a box titled "Error", and click prints "Error: ..."."""
    from typer._click.exceptions import UsageError

    try:
        yield
    except UsageError as exc:
        from cnnspec.commands.common import echo

        lines = []
        if exc.ctx is not None:
            lines.append(exc.ctx.get_usage())
            lines.append(f"Try '{exc.ctx.command_path} {exc.ctx.help_option_names[0]}' for help.")
        message = exc.format_message().replace(": Value error, ", ": ")  # typer's words for a bad choice
        if message[:1].isupper() and message[1:2].islower():  # "Missing argument" → "missing argument"
            message = message[0].lower() + message[1:]
        lines.append(f"error: {printable(message)}")  # it quotes the command line: `cnnspec $'\e[2J'`
        echo("\n".join(lines), stderr=True)
        raise typer.Exit(exc.exit_code) from None


def refuse_empty_arguments(args: list[str]) -> None:
    """No cnnspec argument may be empty: a Path made of '' is '.', so `export RUN --out ''` (an unset shell
    variable) would write into the working folder and `train --out ''` train there."""
    from typer._click.exceptions import UsageError

    for i, arg in enumerate(args):
        if arg == "" or (arg.startswith("--") and arg.endswith("=")):
            given = f"{args[i - 1]} ''" if arg == "" and i > 0 and args[i - 1].startswith("-") else f"{arg}''"
            raise UsageError(f"{printable(given)}: an empty value; give a path, a name or a number")


class Commands(TyperGroup):
    """The command group: COMMANDS, each made into a click command when first asked for.

    A Ctrl-C anywhere in here (parsing, converting a command, a command that does not handle
    it) ends with `interrupted` and exit 130, where typer would exit 130 silently. A command that
    needs an extra that is not installed (cnnspec.extras) ends with the line naming it, exit 1.
    """

    def get_help_option(self, ctx: click.Context) -> TyperOption | None:
        option = super().get_help_option(ctx)
        plain_placeholders([*self.params, *([option] if option is not None else [])])  # --version, -h
        return option

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:  # bare `cnnspec`: the help, and success (click exits 2)
            typer.echo(ctx.get_help())
            ctx.exit(0)
        refuse_empty_arguments(args)
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            command = click_command(cmd_name, COMMANDS[cmd_name])
            help_option = command.get_help_option(ctx)  # made from ctx's names (-h, --help) and kept
            if help_option is not None:
                plain_placeholders([help_option])
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with interrupts_exit(passing=TYPER_ENDINGS), usage_errors_as_lines():
            return super().make_context(info_name, args, parent, **extra)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        from cnnspec.extras import extra_not_installed

        # Before the command reads anything: `evaluate RUN` would otherwise first say RUN is not a run.
        absent = extra_not_installed(name or "")
        if absent is not None:
            raise fail(absent)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        with interrupts_exit(passing=TYPER_ENDINGS), usage_errors_as_lines():
            try:
                return super().invoke(ctx)
            except ImportError as exc:  # torch, onnx, … of an extra that is not installed: say which extra
                from cnnspec.commands.common import fail
                from cnnspec.extras import missing_extra

                error = missing_extra(exc, ctx.invoked_subcommand or "")
                if error is None:
                    raise
                raise fail(error) from None


def _print_version(value: bool) -> None:
    if value:
        from cnnspec.version import __version__

        typer.echo(f"cnnspec {__version__}")
        raise typer.Exit(0)


def _group(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    # The group's own callback: its one option is --version. typer needs one to make a group of an app
    # whose commands are all added by Commands.get_command.
    pass


app = typer.Typer(
    name="cnnspec",
    callback=_group,
    help="Declarative CNN specs: validate, summarise, train, export, predict.",
    cls=Commands,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
)
