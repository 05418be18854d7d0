"""A run's metrics.jsonl and result.json read back for `cnnspec runs`, every figure checked (no torch).

A file edited by hand, damaged on disk or written by something else can hold any JSON: an accuracy of
1.7, a loss that is NaN, an epoch that is a string. `cnnspec runs` shows such a run as damaged, naming
the file and what is wrong, and never shows (or sorts by) a figure from it: a wrong number in the table
would look like a result. The checks are those of the figures the trainer writes
(cnnspec/training/loop.py); keys they do not know are left alone (a later cnnspec may add some).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnspec.atomic import describe_mode
from cnnspec.terminal import printable

MAX_PROBLEMS = 3  # of a file's problems named in the note (the count says how many more)
MAX_FILE_BYTES = 64 * 1024 * 1024  # a metrics.jsonl of a million epochs is smaller; more is not a record


@dataclass
class Read:
    """What a record file held: its epoch records (metrics.jsonl) or object (result.json), and what is wrong."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    exists: bool = True

    def note(self, path: Path) -> str | None:
        """The row's problem: the file and what is wrong with it (None: nothing is)."""
        if not self.problems:
            return None
        more = len(self.problems) - MAX_PROBLEMS
        listed = "; ".join(self.problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        return f"{printable(str(path))}: {listed}"


def read_metrics(path: Path) -> Read:
    """metrics.jsonl's epoch records, each checked; a blank line is nothing, any other line that is not an
    epoch record (or repeats an epoch) is a problem "line N: why"."""
    text, problem = _read_text(path)
    if problem is not None:
        return Read(problems=[problem] if problem else [], exists=problem != "")
    read = Read()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            read.problems.append(f"line {number} is not JSON")
            continue
        wrong = epoch_problem(record)
        if wrong is None and read.records and record["epoch"] <= read.records[-1]["epoch"]:
            wrong = f"epoch {record['epoch']} after epoch {read.records[-1]['epoch']}"
        if wrong is not None:
            read.problems.append(f"line {number}: {wrong}")
        else:
            read.records.append(record)
    return read


def read_result(path: Path) -> Read:
    """result.json's object (as the one record), checked; absent is no problem (`exists` False)."""
    text, problem = _read_text(path)
    if problem is not None:
        return Read(problems=[problem] if problem else [], exists=problem != "")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return Read(problems=[f"not valid JSON ({exc})"])
    wrong = result_problem(data)
    return Read(problems=[wrong]) if wrong is not None else Read(records=[data])


def epoch_problem(record: Any) -> str | None:
    """What is wrong with one metrics.jsonl record (None: it is an epoch record)."""
    if not isinstance(record, dict):
        return f"a JSON {_kind(record)}, not an epoch record (an object)"
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        return f"epoch is {_shown(epoch)}, not a whole number from 1"
    return _figures_problem(record)


def result_problem(data: Any) -> str | None:
    """What is wrong with result.json's object (None: its figures are what training writes)."""
    if not isinstance(data, dict):
        return f"a JSON {_kind(data)}, not an object"
    epochs = data.get("epochs")
    if "epochs" in data and not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 0):
        return f"epochs is {_shown(epochs)}, not a whole number"
    device = data.get("device")
    if device is not None and not isinstance(device, str):
        return f"device is {_shown(device)}, not text"
    return _figures_problem(data)


def _figures_problem(record: dict[str, Any]) -> str | None:
    """An accuracy outside [0, 1], a loss or timing that is not a finite number (null is allowed: no figure)."""
    for key, value in record.items():
        if not isinstance(key, str) or value is None:
            continue
        if key.endswith("accuracy"):
            if not _number(value) or not 0 <= value <= 1:
                return f"{printable(key)} is {_shown(value)}, not a fraction in [0, 1]"
        elif key.endswith("loss"):
            if not _number(value):
                return f"{printable(key)} is {_shown(value)}, not a finite number"
        elif key in ("lr", "seconds", "wall_seconds", "images_per_second") and not (_number(value) and value >= 0):
            return f"{printable(key)} is {_shown(value)}, not a finite number from 0"
    return None


def _read_text(path: Path) -> tuple[str, str | None]:
    """The file's text, or ("", why not): "" for a file that is not there, else a problem to name."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "", ""
    except OSError as exc:
        return "", f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(mode):  # a FIFO would block the read; a folder cannot be read
        return "", f"{describe_mode(mode)}, not a regular file"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return "", f"cannot be read ({exc.strerror or exc})"
    if len(data) > MAX_FILE_BYTES:
        return "", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, more than any run's record"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return "", f"not UTF-8 text (byte {exc.start})"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return printable(text if len(text) <= 40 else text[:39] + "…")
