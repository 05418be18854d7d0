"""Safe YAML reading that keeps the position of every node.

The text is read as a stream of events (never composed recursively, never
constructed into Python objects by tag), so hostile input cannot run code,
blow the stack or expand an alias bomb. Each value's path is mapped to its
line and column so later stages can point at the YAML that caused an error.
"""

from __future__ import annotations

import errno
import math
import os
import re
import select
import stat
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnspec.errors import Diagnostic, Location, SpecError
from cnnspec.spec.events import PathKey, pure_events, walk

MAX_DEPTH = 64
MAX_FILE_BYTES = 10 * 1024 * 1024
# How long a pipe may stay silent (no writer yet, or one that sends nothing) before reading it gives
# up: a named FIFO nobody writes to would otherwise hang validate, train or fmt forever.
PIPE_WAIT_SECONDS = 30.0

# `-` as a spec path is standard input; its errors are located at `<stdin>:LINE:COL`.
STDIN = "-"
STDIN_NAME = "<stdin>"

# Nodes that aliases may add on top of the text's own nodes; an alias bomb
# multiplies the node count exponentially and trips this long before memory.
MAX_ALIAS_NODES = 10_000

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_HEX = re.compile(r"^0x[0-9a-fA-F_]+$")
_OCT = re.compile(r"^0o[0-7_]+$")
# Digits after a leading zero (`010`): YAML 1.1 tools (PyYAML, most YAML in the wild) read them as an
# octal number (8), YAML 1.2 as 10. The same file would mean two things, so cnnspec says so instead of
# choosing (it once read `010` as the float 10.0).
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]*[0-9][0-9_]*$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
# Longer numbers are not hyper-parameters; Python refuses to convert over 4,300 digits anyway.
MAX_DIGITS = 100


@dataclass
class ReadCounts:
    """What reading spec text did, counted as it happens: the work bound of hostile input, without a clock.

    Pass one to `read_spec_text` and `parse_yaml`; the counts add up over the calls.
    """

    bytes_read: int = 0  # bytes read from the file
    chars_parsed: int = 0  # characters handed to a YAML parser (both, when libyaml finds a syntax error)
    events: int = 0  # YAML events consumed
    nodes_sized: int = 0  # nodes walked to size anchors for the alias budget


@dataclass
class SourceMap:
    """Where each node of a loaded document came from."""

    file: str
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    # Scalars that could not be read (a number that is not finite); reported with the schema's errors.
    problems: list[Diagnostic] = field(default_factory=list)
    problem_paths: set[PathKey] = field(default_factory=set)
    # Quoted scalars that hold '$' (an expression's columns start one after the quote).
    quoted: set[PathKey] = field(default_factory=set)

    def locate(self, path: Sequence[Hashable], *, key: bool = False) -> Location:
        """Position of the node at `path` (its key when `key`), else its nearest ancestor."""
        p = tuple(path)
        if key and p in self.keys:
            return Location(self.file, *self.keys[p])
        while p:
            if p in self.values:
                return Location(self.file, *self.values[p])
            p = p[:-1]
        return Location(self.file, *self.values.get((), (1, 1)))


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def _scalar(event: Any, source: SourceMap, path: PathKey) -> Any:
    """The value of a scalar by the YAML 1.2 core schema; a number that is not finite is a problem."""
    value: str = event.value
    if event.style:  # quoted or block scalar: always a string (plain is None or "")
        if event.style in ("'", '"') and "$" in value:
            source.quoted.add(path)
        return value
    low = value.lower()
    if value in ("", "~") or low == "null":
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(value) or _HEX.match(value) or _OCT.match(value):
        digits = value.replace("_", "")
        if len(digits) > MAX_DIGITS:
            message = f"'{value[:20]}…' has more than {MAX_DIGITS} digits"
            return _problem(source, path, event, message, "no setting needs a number this long")
        if _INT.match(value):
            return int(digits)
        return int(digits[2:], 16 if _HEX.match(value) else 8)
    if _LEADING_ZERO.match(value):
        return _leading_zero(source, path, event, value)
    if low.lstrip("+-") in (".nan", ".inf", "nan", "inf", "infinity"):
        return _problem(source, path, event, f"'{value}' is not a finite number")
    if not _FLOAT.match(value) or len(value) > MAX_DIGITS:
        return value
    number = float(value.replace("_", ""))
    if not math.isfinite(number):  # 1e999
        return _problem(source, path, event, f"'{value}' is not a finite number")
    return number


def _leading_zero(source: SourceMap, path: PathKey, event: Any, value: str) -> str:
    digits = value.replace("_", "")
    sign, body = ("-" if digits[0] == "-" else ""), digits.lstrip("+-")
    decimal = f"{sign}{int(body)}"
    # Not octal digits: a string to YAML 1.1.
    yaml11 = f"octal ({sign}{int(body, 8)})" if set(body) <= set("01234567") else "text"
    return _problem(
        source,
        path,
        event,
        f"'{value}' has a leading zero: YAML 1.1 tools read it as {yaml11}, YAML 1.2 (cnnspec) as decimal ({decimal})",
        f"write {decimal} without the zero, or quote it ('{value}') if it is a name",
    )


def _problem(source: SourceMap, path: PathKey, event: Any, message: str, hint: str = "write a finite number") -> str:
    """Record a bad scalar and keep reading: every problem in the file is reported, not only the first."""
    source.problems.append(Diagnostic(message, Location(source.file, *_pos(event.start_mark)), hint=hint))
    source.problem_paths.add(path)
    return str(event.value)


def _node_count(value: Any, counts: ReadCounts) -> int:
    """Nodes in `value`, an aliased part each time it appears (what expanding would build); counted as walked."""
    stack, n = [value], 0
    while stack:
        v = stack.pop()
        n += 1
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    counts.nodes_sized += n
    return n


_BRACKETS = re.compile(r"[\[\]{}]")
# The pure-Python scanner looks ahead over every open flow bracket for a possible `[...]: value`
# key, which is quadratic: 10,000 nested `[` take seconds. Far deeper than MAX_DEPTH, so no
# spec is refused by this guard that the event stream would not refuse too.
FLOW_GUARD = 4 * MAX_DEPTH


def _flow_guard(text: str) -> int | None:
    """Where flow nesting first goes FLOW_GUARD levels deep (an index into `text`), or None."""
    if text.count("[") + text.count("{") <= FLOW_GUARD:
        return None
    depth = 0
    for match in _BRACKETS.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        if depth > FLOW_GUARD:
            return match.start()
    return None


# Set to "pure" to read every spec with ruamel.yaml's pure-Python parser even where libyaml is
# installed: to rule libyaml out when a spec reads oddly, and for the tests that compare the two.
PARSER_ENV = "CNNSPEC_YAML_PARSER"


def _c_parser() -> Any:
    """libyaml's event parser when installed (through PyYAML or ruamel.yaml.clib) and not ruled out
    by CNNSPEC_YAML_PARSER=pure, else None."""
    if os.environ.get(PARSER_ENV) == "pure":
        return None
    try:
        from _ruamel_yaml import CParser

        return CParser
    except ImportError:
        pass
    try:
        from yaml import __with_libyaml__  # type: ignore[import-untyped]
        from yaml._yaml import CParser  # type: ignore[import-untyped]
    except ImportError:
        return None
    return CParser if __with_libyaml__ else None


def _c_events(parser_class: Any, text: str) -> Iterator[Any]:
    parser = parser_class(text)
    try:
        while parser.check_event():
            yield parser.get_event()
    finally:
        parser.dispose()


def parse_yaml(text: str, file: str, counts: ReadCounts | None = None) -> tuple[Any, SourceMap]:
    """Parse YAML text into plain data and a SourceMap, refusing hostile input.

    libyaml's C parser (about 30× faster) reads the text when it is installed; when it
    finds a syntax error, ruamel.yaml's pure-Python parser reads the text again and words
    the message, so messages do not depend on what is installed. `counts`, when given,
    adds up the work done.
    """
    counts = ReadCounts() if counts is None else counts
    if "\x00" in text:
        raise SpecError(Diagnostic("the file is binary, not YAML text", Location(file, 1, 1)))
    parser_class = _c_parser()
    if parser_class is not None:
        try:
            counts.chars_parsed += len(text)
            return _build(_c_events(parser_class, text), file, counts)
        except SpecError:
            raise  # found in the event stream, which both parsers produce alike (tested)
        except Exception:  # a syntax error: the reference parser below words the message
            pass
    # Read only up to absurd flow nesting: the event stream refuses it at MAX_DEPTH, as
    # libyaml's does, long before the cut; a syntax error at the cut means the same thing.
    cut = _flow_guard(text)
    try:
        counts.chars_parsed += len(text) if cut is None else cut
        return _build(pure_events(text if cut is None else text[:cut]), file, counts)
    except SpecError:
        raise
    except Exception as exc:
        from ruamel.yaml.error import MarkedYAMLError, YAMLError

        if cut is not None:
            where = Location(file, text.count("\n", 0, cut) + 1, cut - text.rfind("\n", 0, cut))
            raise SpecError(
                Diagnostic(f"nesting deeper than {MAX_DEPTH} levels", where, hint="flatten the spec")
            ) from None

        if isinstance(exc, MarkedYAMLError):
            raise SpecError(_syntax_error(exc, file, text)) from None
        if isinstance(exc, YAMLError):
            raise SpecError(Diagnostic(f"YAML error: {exc}", Location(file, 1, 1))) from None
        if isinstance(exc, RecursionError):
            raise SpecError(Diagnostic(f"nesting deeper than {MAX_DEPTH} levels", Location(file, 1, 1))) from None
        raise


def _syntax_error(exc: Any, file: str, text: str) -> Diagnostic:
    """A YAML syntax error with where the construct it broke started, and a hint for the usual causes."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    where = Location(file, *_pos(mark)) if mark else Location(file, 1, 1)
    notes: tuple[str, ...] = ()
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        notes = (f"{exc.context} that starts at {Location(file, *_pos(exc.context_mark))}",)
    hint = None
    if "'\\t'" in problem or "\t" in problem:
        hint = "YAML indents with spaces only: replace the tab"
    elif "<stream end>" in problem or "end of stream" in problem:
        hint = "a bracket or quote is never closed"
    elif "block end" in problem or "mapping values are not allowed" in problem:
        hint = "check the indentation of this line against the lines above"
    return Diagnostic(f"YAML syntax error: {problem}", where, notes=notes, hint=hint)


def _counted(events: Iterable[Any], counts: ReadCounts) -> Iterator[Any]:
    for event in events:
        counts.events += 1
        yield event


def _build(events: Iterable[Any], file: str, counts: ReadCounts) -> tuple[Any, SourceMap]:
    """Plain data and positions from a YAML event stream; raises SpecError for what a spec may not hold."""
    source = SourceMap(file)
    values, keys = source.values, source.keys
    loc = lambda mark: Location(file, *_pos(mark))  # noqa: E731
    anchors: dict[str, tuple[Any, int]] = {}
    alias_nodes = 0
    root: Any = None
    documents = 0

    for step in walk(_counted(events, counts)):
        event, name = step.event, step.name
        if step.kind == "document":
            documents += 1
            if documents > 1:
                raise SpecError(
                    Diagnostic("a spec file holds one YAML document, found a second", loc(event.start_mark))
                )
            continue
        if getattr(event, "tag", None) is not None:
            raise SpecError(
                Diagnostic(
                    f"YAML tag '{_short_tag(event.tag)}' is not allowed",
                    loc(event.start_mark),
                    hint="specs are plain data: remove the tag",
                )
            )
        if step.kind == "end":
            closed = step.opened
            assert closed is not None
            if closed.event.anchor:
                anchors[closed.event.anchor] = (closed.value, _node_count(closed.value, counts))
            continue
        if step.kind == "key":
            if name != "ScalarEvent":
                raise SpecError(Diagnostic("mapping keys must be plain names", loc(event.start_mark)))
            if step.first_line is not None:
                raise SpecError(
                    Diagnostic(
                        f"duplicate key '{event.value}' at line {event.start_mark.line + 1} "
                        f"(first at line {step.first_line})",
                        loc(event.start_mark),
                        hint="a key may appear once in a mapping: remove one",
                    )
                )
            keys[step.path] = _pos(event.start_mark)
            continue
        path = step.path
        if name == "ScalarEvent":
            value = _scalar(event, source, path)
            if event.anchor:
                anchors[event.anchor] = (value, 1)
        elif name == "AliasEvent":
            if event.anchor not in anchors:
                raise SpecError(Diagnostic(f"unknown alias '*{event.anchor}'", loc(event.start_mark)))
            value, size = anchors[event.anchor]
            alias_nodes += size
            if alias_nodes > MAX_ALIAS_NODES:
                raise SpecError(
                    Diagnostic(
                        f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes",
                        loc(event.start_mark),
                        hint="an alias bomb, or a spec that should use `repeat` or `blocks` instead",
                    )
                )
        else:  # MappingStartEvent, SequenceStartEvent
            if step.depth >= MAX_DEPTH:
                raise SpecError(
                    Diagnostic(
                        f"nesting deeper than {MAX_DEPTH} levels", loc(event.start_mark), hint="flatten the spec"
                    )
                )
            value = {} if name == "MappingStartEvent" else []
            assert step.opened is not None
            step.opened.value = value

        values[path] = _pos(event.start_mark)
        parent = step.parent
        if parent is None:
            root = value
        elif parent.mapping:
            parent.value[step.key.value] = value
        else:
            parent.value.append(value)
    values.setdefault((), (1, 1))
    return root, source


def _short_tag(tag: str) -> str:
    """A tag as people write it: tag:yaml.org,2002:python/object → !!python/object."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


_NOT_SPECS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_spec(file: str, mode: int) -> SpecError:
    kind = next((what for test, what in _NOT_SPECS if test(mode)), "a special file")
    hint = "name the .yaml file itself" if stat.S_ISDIR(mode) else "name a spec file, or pipe one in: <(cat spec.yaml)"
    return SpecError(Diagnostic(f"{file} is {kind}, not a spec file", Location(file), hint=hint))


def _read_bounded(file: str, limit: int, pipe_wait: float) -> bytes:
    """At most `limit` bytes of a regular file or a pipe; SpecError for anything else.

    Opened non-blocking, so that opening a FIFO with no writer returns at once, then checked with
    fstat on the open descriptor (the file checked is the file read).
    """
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise SpecError(Diagnostic(f"no such file: {file}", Location(file))) from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a Unix socket cannot be opened: say what it is
            try:
                mode = os.stat(file).st_mode
            except OSError:
                mode = None
            if mode is not None:
                raise _not_a_spec(file, mode) from None
        raise SpecError(Diagnostic(f"cannot read {file}: {exc.strerror}", Location(file))) from None
    try:
        return _read_open(fd, file, limit, pipe_wait)
    finally:
        os.close(fd)


def _read_open(fd: int, file: str, limit: int, pipe_wait: float) -> bytes:
    """`_read_bounded` of a descriptor already open (the file's, or standard input's), left open."""
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            return _read_pipe(fd, file, limit, pipe_wait)
        if not stat.S_ISREG(mode):
            raise _not_a_spec(file, mode)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as stream:
            return stream.read(limit)  # one buffer of the size read: no copy of a 10 MiB file
    except OSError as exc:
        raise SpecError(Diagnostic(f"cannot read {file}: {exc.strerror}", Location(file))) from None


def _read_pipe(fd: int, file: str, limit: int, wait: float) -> bytes:
    """A pipe read to its end (its writer closed it), waiting at most `wait` seconds for each chunk.

    A FIFO opened non-blocking with no writer reads as empty at once; poll() waits until a writer
    has sent something or come and gone, so the wait is poll's. A signal handler that raises
    (Ctrl-C's) ends the wait; SIGTERM's default action ends the process.
    """
    if not hasattr(select, "poll"):  # no poll on pipes (Windows): a plain blocking read
        os.set_blocking(fd, True)
        return os.read(fd, limit)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        if not poller.poll(wait * 1000):
            said = f"after {total:,} bytes " if total else ""
            raise SpecError(
                Diagnostic(
                    f"nothing to read from {file}: a pipe that sent nothing {said}for {wait:g} s"
                    + ("" if total else " (a named pipe with no writer?)"),
                    Location(file),
                    hint="write the spec into the pipe and close it, or name the spec file itself",
                )
            )
        try:
            chunk = os.read(fd, min(limit - total, 1 << 16))
        except BlockingIOError:  # woken without data
            continue
        if not chunk:  # every writer has closed it
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_spec_text(path: str | Path, counts: ReadCounts | None = None, *, pipe_wait: float | None = None) -> str:
    """Read a spec file, refusing what cannot be a spec before parsing it.

    A regular file is read; a pipe (`<(make-spec)`, `/dev/stdin` fed by a pipe, a named FIFO) is
    read to its end as long as something comes through it at least every `pipe_wait` seconds
    (PIPE_WAIT_SECONDS); a folder, device or socket is refused. Either way at most
    MAX_FILE_BYTES + 1 bytes are read. Ctrl-C (SIGINT) and SIGTERM end a wait on a pipe at once.
    `counts`, when given, adds up the bytes read.
    """
    file = str(path)
    data = _read_bounded(file, MAX_FILE_BYTES + 1, PIPE_WAIT_SECONDS if pipe_wait is None else pipe_wait)
    if counts is not None:
        counts.bytes_read += len(data)
    return _spec_text(data, file)


def is_stdin(path: str | Path) -> bool:
    """Whether a command's SPEC argument is `-`, standard input (validate, summary, fmt)."""
    return str(path) == STDIN


def read_stdin_text(*, pipe_wait: float | None = None) -> str:
    """The spec on standard input (`cnnspec validate - < spec.yaml`), read as a file is: at most
    MAX_FILE_BYTES, a pipe that sends something at least every `pipe_wait` seconds. A terminal is
    refused rather than waited on. Its errors are located at STDIN_NAME (`<stdin>:LINE:COL`)."""
    import io
    import sys

    stream = getattr(sys.stdin, "buffer", sys.stdin)
    try:
        fd: int | None = stream.fileno() if stream is not None else None
    except (AttributeError, OSError, io.UnsupportedOperation):  # replaced by a test runner: read it as it is
        fd = None
    if fd is None:
        data = stream.read(MAX_FILE_BYTES + 1) if stream is not None else b""
        data = data.encode("utf-8") if isinstance(data, str) else data
    elif os.isatty(fd):
        raise SpecError(
            Diagnostic(
                "standard input is a terminal: '-' reads the spec from a pipe or a redirected file",
                Location(STDIN_NAME),
                hint="e.g. cnnspec validate - < spec.yaml, or name the spec file itself",
            )
        )
    else:
        data = _read_open(fd, STDIN_NAME, MAX_FILE_BYTES + 1, PIPE_WAIT_SECONDS if pipe_wait is None else pipe_wait)
    return _spec_text(data, STDIN_NAME)


def _spec_text(data: bytes, file: str) -> str:
    """The text of what was read from `file`; SpecError for what is too large, binary or not UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(
            Diagnostic(
                f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB: not a spec",
                Location(file, 1, 1),
                hint="a spec is a few kilobytes; use `repeat` and `blocks` for long networks",
            )
        )
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(Diagnostic("the file is binary, not YAML text", Location(file, 1, 1)))
    try:
        return data.decode("utf-8-sig")  # an editor's byte-order mark is not part of the text
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            Diagnostic(
                "the file is not UTF-8 text",
                Location(file, line, col),
                notes=(f"byte {exc.start} (0x{data[exc.start]:02x}) cannot be decoded",),
                hint="save the file as UTF-8",
            )
        ) from None
