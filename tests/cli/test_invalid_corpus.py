"""Every broken spec in tests/fixtures/invalid/ gives exit 1 and exactly its expected, located errors.

The expected errors live in tests/fixtures/invalid/expected.yaml as "LINE:COL: error: MESSAGE"
(MESSAGE is a substring of the reported message) and "hint: TEXT" entries. Most files run
in-process through typer's CliRunner (fast), where an exception other than the SystemExit of a
clean exit fails the test (tests/cli_helpers.py); a few run as real `python -m cnnspec`
processes, where a bug would print a traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "fixtures" / "invalid"
EXPECTED: dict[str, list[str]] = YAML(typ="safe", pure=True).load((INVALID / "expected.yaml").read_text("utf-8"))
FIXTURES = sorted(p.name for p in INVALID.glob("*.yaml") if p.name != "expected.yaml")

LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning): (?P<message>.*)$")


@dataclass(frozen=True)
class Reported:
    line: int
    col: int
    message: str


def parse(output: str, file: str) -> tuple[list[Reported], list[str]]:
    """The errors (located in `file`) and the hints in `cnnspec validate`'s text output."""
    errors, hints = [], []
    for text in output.splitlines():
        m = LINE.match(text)
        if m and m["severity"] == "error":
            assert m["file"] == file, f"error located in another file: {text}"
            errors.append(Reported(int(m["line"]), int(m["col"]), m["message"]))
        elif text.startswith("  hint: "):
            hints.append(text.removeprefix("  hint: "))
    return errors, hints


def check_output(name: str, output: str, file: str) -> None:
    assert "Traceback" not in output  # what a real process prints for a bug (CliRunner prints nothing)
    errors, hints = parse(output, file)
    wanted_errors = [e for e in EXPECTED[name] if not e.startswith("hint: ")]
    wanted_hints = [e.removeprefix("hint: ") for e in EXPECTED[name] if e.startswith("hint: ")]
    assert len(errors) == len(wanted_errors), f"{name}: expected {wanted_errors}, got:\n{output}"
    for want in wanted_errors:
        where, message = want.split(": error: ", 1)
        line, col = (int(x) for x in where.split(":"))
        assert any(e.line == line and e.col == col and message in e.message for e in errors), (
            f"{name}: no error '{want}' in:\n{output}"
        )
    for hint in wanted_hints:
        assert any(hint in h for h in hints), f"{name}: no hint '{hint}' in:\n{output}"


def test_corpus_is_complete() -> None:
    """At least 60 broken specs, each with its expected errors (and no entry without a file)."""
    assert len(FIXTURES) >= 60
    assert sorted(EXPECTED) == FIXTURES
    assert all(EXPECTED[name] for name in FIXTURES)


@pytest.mark.parametrize("name", FIXTURES)
def test_invalid_spec_fails_with_located_error(name: str) -> None:
    path = INVALID / name
    result = run_cli("validate", str(path))
    assert result.exit_code == 1, result.output
    check_output(name, result.stdout + result.stderr, str(path))


REAL_PROCESS = [
    "empty.yaml",
    "syntax_unclosed_flow.yaml",
    "tag_python_apply.yaml",
    "alias_bomb.yaml",
    "linear_in_features_mismatch.yaml",
    "cycle.yaml",
]


@pytest.mark.parametrize("name", REAL_PROCESS)
def test_invalid_spec_in_a_real_process(name: str) -> None:
    rel = f"tests/fixtures/invalid/{name}"
    proc = subprocess.run(
        [sys.executable, "-m", "cnnspec", "validate", rel], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    check_output(name, proc.stdout + proc.stderr, rel)


def test_all_invalid_specs_at_once_report_each_file() -> None:
    """One run over the whole corpus: exit 1, every file named, and the tally line."""
    paths = [str(INVALID / n) for n in FIXTURES]
    result = run_cli("validate", *paths)
    assert result.exit_code == 1
    for p in paths:
        assert f"{p}:" in result.stderr
    # the whole line: "110 of 110 specs valid" contains "0 of 110 specs valid"
    assert any(line.strip().startswith(f"0 of {len(paths)} specs valid") for line in result.stdout.splitlines())
    print(f"\nRELIABILITY invalid corpus: {len(paths)} files, {len(paths)} rejected with exit 1, 0 tracebacks")


# --- inputs generated here rather than committed -------------------------------------------


def generated_inputs(tmp: Path) -> dict[str, Path]:
    """Binary garbage, other encodings and a 50 MB file: refused before parsing, located at 1:1 or the bad byte."""
    rng = __import__("random").Random(2)
    contents = {
        "random bytes": bytes(rng.randrange(256) for _ in range(2048)),
        "PNG image": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(48),
        "NUL in text": b"name: a\x00b\n",
        "Latin-1 text": "name: caf\u00e9\nmodel: {}\n".encode("latin-1"),
        "UTF-16 text": "name: x\n".encode("utf-16"),
    }
    paths = {}
    for i, (what, data) in enumerate(contents.items()):
        paths[what] = tmp / f"generated_{i}.yaml"
        paths[what].write_bytes(data)
    big = tmp / "big.yaml"
    with big.open("wb") as f:
        chunk = b"# padding\n" * 100_000
        while f.tell() < 50 * 10**6:
            f.write(chunk)
    paths["50 MB file"] = big
    return paths


def test_generated_non_specs_fail_located_without_traceback(tmp_path: Path) -> None:
    for what, path in generated_inputs(tmp_path).items():
        result = run_cli("validate", str(path))
        assert result.exit_code == 1, what
        errors, _ = parse(result.stderr, str(path))
        assert len(errors) == 1 and errors[0].line >= 1 and errors[0].col >= 1, (what, result.stderr)
