"""What a fresh user's first hour with the README and docs found (issue 15's trial), each done as they did it.

Real `python -m cnnspec` processes where a terminal, a pipe or standard input matters; the README and the
docs are read as the user reads them.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DIGITS = ROOT / "specs" / "digits.yaml"


def console(
    *args: str, cwd: Path = ROOT, input: str | None = None, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args],
        cwd=cwd,
        input=input,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """`cnnspec ARGS` with stdout and stdin a terminal (a pseudo-terminal): exit code, terminal text, stderr."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cnnspec", *args],
            cwd=ROOT,
            stdin=follower,
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    return done.returncode, shown.decode("utf-8", "replace"), done.stderr


# 1. --set with the bracket path that errors print


def test_a_bracketed_set_path_is_answered_with_the_dotted_path_to_write() -> None:
    result = run_cli("validate", str(DIGITS), "--set", "model.layers[0].conv2d.filters=8")
    assert result.exit_code == 1
    assert result.stderr.startswith("--set model.layers[0].conv2d.filters=8: error: ")
    assert "hint: write --set model.layers.0.conv2d.filters=8" in result.stderr
    # Following the hint reaches the next mistake (a Keras name), not the same error again.
    again = run_cli("validate", str(DIGITS), "--set", "model.layers.0.conv2d.filters=8")
    assert "unknown key 'filters' in model.layers.0.conv2d" in again.stderr


# 2. graph without -o


def test_graph_refuses_to_print_svg_on_a_terminal() -> None:
    code, shown, stderr = on_a_terminal("graph", "specs/digits.yaml")
    assert code == 2
    assert "<svg" not in shown and "<?xml" not in shown
    assert stderr.startswith("error: cnnspec graph would write SVG text to the terminal\n")
    assert "-o FILE.svg, FILE.html or FILE.png" in stderr and "cnnspec graph specs/digits.yaml > FILE.svg" in stderr


def test_graph_still_writes_svg_into_a_pipe_and_with_dash_o_dash_on_a_terminal() -> None:
    piped = console("graph", "specs/digits.yaml")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("<?xml") and "</svg>" in piped.stdout
    code, shown, stderr = on_a_terminal("graph", "specs/digits.yaml", "-o", "-")
    assert code == 0, stderr
    assert "</svg>" in shown


# 3. The README's command table names the flags the user looked for, as --help spells them


def _row(command: str) -> str:
    """The usage cell of the command's row: `cnnspec validate SPEC... [--format ...] ...`."""
    row = next(line for line in README.splitlines() if line.startswith(f"| `cnnspec {command} "))
    return row.split("` |", 1)[0]


@pytest.mark.parametrize(
    ("command", "written", "option"),
    [("validate", "--for train", "--for"), ("evaluate", "--split test\\|val", "--split")],
)
def test_readme_command_table_lists_real_flags(command: str, written: str, option: str) -> None:
    assert written in _row(command)
    help_text = run_cli(command, "--help", env={"COLUMNS": "200"}).stdout
    choices = written.split(" ", 1)[1].replace("\\|", "|")
    assert re.search(rf"{re.escape(option)}\s+{re.escape(choices)}\s", help_text), help_text


# 4. Every error line starts with a lowercase `error:`, usage errors too


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "runs/x", "--split", "train"],  # the split the no-test-split hint made them try
        ["validate"],
        ["validate", "--stirct", "specs/digits.yaml"],
        ["nonsense"],
    ],
    ids=" ".join,
)
def test_usage_errors_read_like_every_other_error(args: list[str]) -> None:
    done = console(*args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("Usage: ")
    assert lines[-1].startswith("error: ") and lines[-1][len("error: ")].islower(), done.stderr
    assert "Error" not in done.stderr and "╭" not in done.stderr


def test_a_bad_choice_names_the_choices_without_typer_words() -> None:
    done = console("evaluate", "runs/x", "--split", "train")
    assert done.stderr.splitlines()[-1] == "error: invalid value for '--split': 'train' is not one of 'test', 'val'."


# 5. Exit codes: a missing file is wrong input (1), a malformed command line is usage (2)


@pytest.mark.parametrize("command", ["validate", "summary", "graph", "fmt"])
def test_a_missing_spec_file_is_wrong_input_exit_1(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run_cli(command, str(missing))
    assert result.exit_code == 1
    assert f"{missing}: error: no such file: {missing}" in result.stderr


def test_the_readme_states_the_exit_code_contract_the_commands_follow(tmp_path: Path) -> None:
    contract = README[README.index("Exit codes, for every command") :].split("\n\n", 1)[0]
    assert "**1** the input is wrong" in contract and "does not exist" in contract
    assert "**2** usage" in contract and "missing argument" in contract and "unknown command or option" in contract
    assert run_cli("validate", str(tmp_path / "nope.yaml")).exit_code == 1
    assert run_cli("validate").exit_code == 2
    assert run_cli("validate", "--bogus", str(DIGITS)).exit_code == 2


# 6 and 7 are entries of the invalid corpus: groups_not_dividing_equal.yaml (the groups hint names
# 32 once) and model_without_input.yaml (the hint says what to write), tests/cli/test_invalid_corpus.py.


# 8. The editor line of a spec `init` writes into a project of one's own


def _schema_target(spec: Path) -> str:
    first = spec.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    return first.split("$schema=", 1)[1]


def test_init_into_a_new_project_says_how_to_get_a_local_schema_and_then_points_at_it(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    first = console("init", "digits", "specs/", cwd=project)
    assert first.returncode == 0, first.stderr
    assert _schema_target(project / "specs" / "digits.yaml").startswith("https://")
    note = first.stderr.splitlines()[-1]
    assert "mkdir -p schemas && cnnspec schema -o schemas/cnnspec.schema.json" in note
    assert "$schema=../schemas/cnnspec.schema.json" in note
    # What the note says to do, done: the schema written, and the next spec's line leads to it.
    (project / "schemas").mkdir()
    assert console("schema", "-o", "schemas/cnnspec.schema.json", cwd=project).returncode == 0
    second = console("init", "small-cnn", "specs/nets/", cwd=project)
    assert second.returncode == 0 and "note:" not in second.stderr, second.stderr
    spec = project / "specs" / "nets" / "small_cnn.yaml"
    target = _schema_target(spec)
    assert not target.startswith("https://")
    assert (spec.parent / target).resolve() == (project / "schemas" / "cnnspec.schema.json").resolve()


# 9. What README and the user's docs tell a user to open exists in what they have


USER_DOCS = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]
# Written for contributors (how the suite is kept green, where code goes, what was tried): they cite tests.
CONTRIBUTOR_DOCS = {"docs/testing.md", "docs/architecture.md", "docs/reliability.md", "docs/benchmarks.md"}


@pytest.mark.parametrize("doc", [d for d in USER_DOCS if d not in CONTRIBUTOR_DOCS])
def test_user_docs_send_no_one_to_data_or_specs_under_tests(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert not re.search(r"tests/(fixtures|data)\b|tests/\S*\.(ya?ml|png|jpe?g|onnx|npz)\b", text), doc


def test_the_readme_error_example_is_what_validate_prints(tmp_path: Path) -> None:
    """README: `cnnspec init small-cnn mine.yaml`, write `in_features: 100` into its last layer, validate."""
    assert console("init", "small-cnn", "mine.yaml", cwd=tmp_path).returncode == 0
    spec = tmp_path / "mine.yaml"
    text = spec.read_text(encoding="utf-8")
    told = re.search(r"`(- linear: \{id: head, in_features: 100, out_features: 10\})`", README)
    assert told is not None
    spec.write_text(text.replace("- linear: {id: head, out_features: 10}", told.group(1)), encoding="utf-8")
    example = README.split("and `cnnspec validate mine.yaml`):\n\n```\n", 1)[1].split("```", 1)[0]
    done = console("validate", "mine.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == example


# 10. The image-folder layout, as the README draws it


def test_the_readme_image_folder_layout_validates_for_training(tmp_path: Path) -> None:
    from PIL import Image

    section = README.split("## Your own images", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```\n", 1)[1].split("```", 1)[0]
    data_block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    root = tree.splitlines()[0].rstrip("/")
    assert "train/CLASS/*.png" in tree and "test/CLASS/*.png" in tree
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / root / split / name).mkdir(parents=True)
            Image.new("RGB", (20, 12), (200, 10, 10)).save(tmp_path / root / split / name / "001.png")
    spec = tmp_path / "spec.yaml"
    model = (
        "name: pets\nmodel:\n  input: {channels: 3, height: 16, width: 16}\n  layers:\n"
        "    - conv2d: {out_channels: 4, kernel_size: 3}\n    - flatten\n    - linear: {out_features: 2}\n"
    )
    spec.write_text(model + data_block, encoding="utf-8")
    assert YAML(typ="safe").load(data_block)["data"]["dataset"] == {"name": "image_folder", "root": root}
    done = console("validate", "--for", "train", str(spec), cwd=ROOT)  # run elsewhere: root is the spec's folder's
    assert done.returncode == 0, done.stderr
    # A third class folder without images is refused, as the README says.
    (tmp_path / root / "train" / "bird").mkdir()
    refused = console("validate", "--for", "train", str(spec), cwd=ROOT)
    assert refused.returncode == 1 and "bird: a class folder with no images" in refused.stderr


# 11. `-`: the spec on standard input


BROKEN = "name: x\nmodel:\n  input: {channels: 1, height: 8, width: 8}\n  layers:\n    - conv2d: {out_channel: 3}\n"


def test_validate_dash_reads_stdin_and_locates_errors_at_stdin() -> None:
    ok = console("validate", "-", input=DIGITS.read_text(encoding="utf-8"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "<stdin>: ok (12 layers, 151,498 params, output 10)\n"
    bad = console("validate", "-", input=BROKEN)
    assert bad.returncode == 1
    assert "<stdin>:5:16: error: unknown key 'out_channel' in model.layers[0].conv2d" in bad.stderr
    as_json = console("validate", "--format", "json", "-", input=BROKEN)
    assert '"file": "<stdin>"' in as_json.stdout


def test_summary_and_fmt_read_dash_from_stdin() -> None:
    text = DIGITS.read_text(encoding="utf-8")
    summary = console("summary", "--format", "json", "-", input=text)
    assert summary.returncode == 0, summary.stderr
    assert '"total_params": 151498' in summary.stdout
    with open(DIGITS, encoding="utf-8") as spec:  # a redirected file (`fmt - < specs/digits.yaml`)
        formatted = subprocess.run(
            [sys.executable, "-m", "cnnspec", "fmt", "-"], cwd=ROOT, stdin=spec, capture_output=True, text=True
        )
    assert formatted.returncode == 0, formatted.stderr
    assert formatted.stdout == text  # the shipped spec is in the canonical layout already
    assert console("summary", "-", input=BROKEN).stderr.startswith("<stdin>:5:")


def test_dash_on_a_terminal_is_refused_rather_than_waited_on() -> None:
    code, _, stderr = on_a_terminal("validate", "-")
    assert code == 1
    assert stderr.startswith("<stdin>: error: standard input is a terminal")
    assert "cnnspec validate - < spec.yaml" in stderr
