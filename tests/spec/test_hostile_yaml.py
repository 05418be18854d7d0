"""Hostile YAML (issue 7 item 3): tags run nothing, alias bombs and deep nesting are refused
quickly with bounded memory, duplicate keys name both lines, and files that are not specs
(huge, binary, other encodings) are refused before parsing.

Each hostile text is read by both parsers the loader can use: libyaml's C parser (the
fast path, when PyYAML or ruamel.yaml.clib provides it) and ruamel.yaml's pure-Python
parser (the reference). Figures are printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cnnspec.errors import SpecError
from cnnspec.spec import source
from cnnspec.spec.load import load, loads

ROOT = Path(__file__).resolve().parents[2]
C_PARSER = source._c_parser()

# Generous bounds: the issue asks for "under 1 s"; these catch a regression to seconds or
# gigabytes without failing on a busy CI machine. The real figures are printed.
TIME_BOUND_S = 5.0
MEMORY_BOUND_MB = 64.0


@pytest.fixture(params=["libyaml", "pure"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once through each YAML parser the loader can use."""
    if request.param == "libyaml" and C_PARSER is None:
        pytest.skip("libyaml is not installed (PyYAML with libyaml, or ruamel.yaml.clib): only the pure parser runs")
    if request.param == "pure":
        monkeypatch.setattr(source, "_c_parser", lambda: None)
    yield request.param


def refused(text: str, file: str = "hostile.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        loads(text, file)
    return info.value


def measured(fn: Callable[[], object]) -> tuple[float, float]:
    """Seconds and peak traced memory (MB) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn()
    finally:
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return seconds, peak / 2**20


# --- tags --------------------------------------------------------------------------


def tag_payloads(sentinel: Path) -> list[str]:
    """Every way a YAML loader has been made to run code, plus plain custom tags."""
    s = str(sentinel)
    return [
        f"name: !!python/object/apply:os.system ['touch {s}']\n",
        f"name: !!python/object/apply:subprocess.check_call [[touch, {s}]]\n",
        f"name: !!python/object/new:subprocess.Popen [[touch, {s}]]\n",
        "name: !!python/name:os.system\n",
        "name: !!python/module:os\n",
        "name: !!python/object:builtins.object {}\n",
        f"? !!python/object/apply:os.system ['touch {s}']\n: value\n",
        f"model: {{layers: [!!python/object/apply:os.system ['touch {s}']]}}\n",
        f"- !!python/object/apply:os.system ['touch {s}']\n",
        f"!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {s}']\n",
        f"%TAG !p! tag:yaml.org,2002:python/object/apply:\n---\n!p!os.system ['touch {s}']\n",
        "name: !custom value\n",
        "name: !!str value\n",
        "name: ! value\n",
        "name: !!binary aGVsbG8=\n",
        "model: !!set {a, b}\n",
        "a: &x !!python/name:os.system\nb: *x\n",
    ]


def test_tags_are_refused_and_run_nothing(parser: str, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    payloads = tag_payloads(sentinel)
    for text in payloads:
        error = refused(text)
        assert "tag" in error.format() and "is not allowed" in error.format(), text
        assert error.diagnostics[0].location is not None and error.diagnostics[0].location.line >= 1
    assert not sentinel.exists()
    print(f"\nRELIABILITY tags ({parser}): {len(payloads)} tagged documents refused, sentinel absent, 0 executed")


def test_tag_payload_through_the_command_line(tmp_path: Path) -> None:
    """The real `cnnspec validate` process on a code-execution payload: exit 1, nothing runs."""
    sentinel = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"name: !!python/object/apply:os.system ['touch {sentinel}']\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "cnnspec", "validate", str(spec)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert f"{spec}:1:7: error: YAML tag '!!python/object/apply:os.system' is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not sentinel.exists()


# --- alias bombs -----------------------------------------------------------------------


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic: each level is `width` aliases of the level below (width**levels leaves)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def mapping_bomb(levels: int = 30) -> str:
    """Two aliases per level, as mappings: 2**30 nodes."""
    lines = ["m0: &m0 {a: lol, b: lol}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{a: *m{i - 1}, b: *m{i - 1}}}")
    return "\n".join(lines) + "\n"


def wide_alias_fan(n: int = 200_000) -> str:
    """One small anchor aliased very many times in a single list."""
    return "a: &a [x, y, z]\nb: [" + ", ".join(["*a"] * n) + "]\n"


@pytest.mark.parametrize("bomb", [billion_laughs, mapping_bomb, wide_alias_fan])
def test_alias_bombs_are_refused_fast_with_bounded_memory(parser: str, bomb: Callable[[], str]) -> None:
    text = bomb()
    seconds, peak = measured(lambda: refused(text))
    error = refused(text)
    assert "aliases expand to more than 10,000 nodes" in error.format()
    figures = f"refused in {seconds * 1000:.0f} ms, peak {peak:.1f} MB"
    print(f"\nRELIABILITY alias bomb {bomb.__name__} ({parser}): {figures}")
    assert seconds < TIME_BOUND_S
    assert peak < MEMORY_BOUND_MB


def test_aliases_below_the_budget_are_fine(parser: str) -> None:
    """Anchors and aliases are plain YAML; only their expansion is budgeted."""
    text = (
        "name: aliases\nmodel:\n  input: {channels: 3, height: 8, width: 8}\n"
        "  layers:\n    - conv2d: &c {out_channels: 4, kernel_size: 3, padding: 1}\n    - conv2d: *c\n"
    )
    spec = loads(text)
    assert len(spec.model.layers) == 2


# --- deep nesting --------------------------------------------------------------------------


DEPTH = 10_000
NESTINGS = {
    "flow sequence": "[" * DEPTH + "]" * DEPTH,
    "flow mapping": "{a: " * DEPTH + "1" + "}" * DEPTH,
    "block sequence": "- " * DEPTH + "x",
    "under a key": "name: x\nmodel: " + "[" * DEPTH + "]" * DEPTH,
}


@pytest.mark.parametrize("shape", list(NESTINGS))
def test_deep_nesting_is_refused_fast_with_bounded_memory(parser: str, shape: str) -> None:
    text = NESTINGS[shape] + "\n"
    seconds, peak = measured(lambda: refused(text))
    error = refused(text)
    assert f"nesting deeper than {source.MAX_DEPTH} levels" in error.format()
    d = error.diagnostics[0]
    assert d.location is not None and d.location.line >= 1 and d.location.col >= 1
    if shape == "flow sequence":  # both parsers point at the bracket that goes one level too deep
        assert (d.location.line, d.location.col) == (1, source.MAX_DEPTH + 1)
    figures = f"refused in {seconds * 1000:.0f} ms, peak {peak:.1f} MB"
    print(f"\nRELIABILITY nesting {DEPTH:,} ({shape}, {parser}): {figures}")
    assert seconds < TIME_BOUND_S
    assert peak < MEMORY_BOUND_MB


def test_nesting_up_to_the_limit_parses(parser: str) -> None:
    depth = source.MAX_DEPTH - 1
    data, _ = source.parse_yaml("[" * depth + "]" * depth, "ok.yaml")
    for _ in range(depth - 1):
        data = data[0]
    assert data == []


# --- duplicate keys --------------------------------------------------------------------


def test_duplicate_keys_name_both_lines(parser: str) -> None:
    text = (
        "name: dup\n"
        "model:\n"
        "  input: {channels: 3, height: 8, width: 8}\n"
        "  layers: [relu]\n"
        "optimizer:\n"
        "  lr: 0.1\n"
        "  momentum: 0.9\n"
        "  lr: 0.01\n"
    )
    error = refused(text, "dup.yaml")
    assert error.format().startswith("dup.yaml:8:3: error: duplicate key 'lr' at line 8 (first at line 6)")


def test_duplicate_keys_in_a_flow_mapping_and_a_nested_mapping(parser: str) -> None:
    assert "duplicate key 'a' at line 1 (first at line 1)" in refused("x: {a: 1, b: 2, a: 3}\n").format()
    text = "model:\n  input:\n    channels: 3\n    height: 8\n    channels: 1\n"
    assert "5:5: error: duplicate key 'channels' at line 5 (first at line 3)" in refused(text, "f").format()


def test_same_key_in_different_mappings_is_fine(parser: str) -> None:
    data, _ = source.parse_yaml("a: {x: 1}\nb: {x: 2}\n", "f")
    assert data == {"a": {"x": 1}, "b": {"x": 2}}


# --- files that are not specs -------------------------------------------------------------


def test_a_50_mb_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    line = b"# " + b"x" * 97 + b"\n"
    with big.open("wb") as f:
        for _ in range(50 * 2**20 // len(line)):
            f.write(line)
    assert big.stat().st_size >= 50 * 10**6

    def refuse() -> SpecError:
        with pytest.raises(SpecError) as info:
            load(big)
        return info.value

    seconds, peak = measured(refuse)
    assert refuse().format().startswith(f"{big}:1:1: error: the file is larger than 10 MiB")
    print(f"\nRELIABILITY 50 MB file: refused in {seconds * 1000:.0f} ms, peak {peak:.1f} MB")
    assert seconds < TIME_BOUND_S
    assert peak < 16  # only the first 10 MiB + 1 byte is ever read


def not_specs() -> dict[str, bytes]:
    """Binary garbage and text in the wrong encoding, all generated (nothing committed)."""
    rng = __import__("random").Random(7)
    return {
        "random bytes": bytes(rng.randrange(256) for _ in range(4096)),
        "random bytes without NUL": bytes(rng.randrange(1, 256) for _ in range(4096)),
        "PNG header": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
        "ELF header": b"\x7fELF\x02\x01\x01" + bytes(57),
        "gzip": b"\x1f\x8b\x08\x00" + bytes(rng.randrange(256) for _ in range(200)),
        "NUL in text": b"name: a\x00b\n",
        "latin-1 text": "name: café\n".encode("latin-1"),
        "UTF-16 with BOM": "name: x\nmodel: {}\n".encode("utf-16"),
        "lone surrogate": b"name: \xed\xa0\x80\n",
        "control character": b"name: ring\x07bell\n",
        "escape sequences": b"name: \x1b[31mred\x1b[0m\n",
        "only whitespace": b"   \n\n\t\n",
        "only a BOM": b"\xef\xbb\xbf",
    }


@pytest.mark.parametrize("kind", list(not_specs()))
def test_files_that_are_not_specs_are_refused(parser: str, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(not_specs()[kind])
    with pytest.raises(SpecError) as info:
        load(path)
    d = info.value.diagnostics[0]
    assert d.location is not None and d.location.file == str(path) and d.location.line >= 1
    assert "Traceback" not in info.value.format()


def test_special_files_are_refused(tmp_path: Path) -> None:
    for target, message in ((tmp_path, "is a folder"), (tmp_path / "absent.yaml", "no such file")):
        with pytest.raises(SpecError, match=message):
            load(target)
    if os.path.exists("/dev/zero"):  # endless: only a bounded read ends
        with pytest.raises(SpecError, match="larger than 10 MiB"):
            load("/dev/zero")


def test_parsers_agree_on_hostile_and_odd_documents(tmp_path: Path) -> None:
    """The fast path may only be faster: for every text here both parsers give the same answer."""
    if C_PARSER is None:
        pytest.skip("libyaml is not installed: there is only one parser")
    texts = [
        *tag_payloads(tmp_path / "s"),
        billion_laughs(3, 3),
        "[" * 5000 + "]" * 5000,
        "a: [1, {b: " + "[" * 2000 + "]" * 2000 + "}]\n",
        "a: 1\na: 2\n",
        "x: [1, 2\n",
        "key: value: other\n",
        "a: &a 1\nb: *a\nc: *nope\n",
        "- 0x1F\n- 0o17\n- 1_000\n- 1e3\n- .5\n- +1\n- -0.0\n- 1.\n- 00\n- 0b1\n- 1:30\n- yes\n- ~\n",
        "a: 'single'\nb: \"dou\\tble\"\nc: |\n  lit\nd: >\n  fold\n",
        "\ufeffname: x\n",
        "%YAML 1.2\n---\na: 1\n",
        "%YAML 1.1\n---\na: 1\n",
        "a: b\n...\n",
        "? a\n: b\n",
        "[a, b]: c\n",
        "a:\n\t- b\n",
        "a: @b\n",
        "a: `b\n",
        "{a: 1,}",
        "[,]",
        "a: b #c\n#d\n",
        "é: ü\n",
    ]
    agree = 0
    for text in texts:
        answers: list[object] = []
        for use_c in (True, False):
            parser = (lambda: C_PARSER) if use_c else (lambda: None)
            original = source._c_parser
            source._c_parser = parser  # type: ignore[assignment]
            try:
                answers.append(source.parse_yaml(text, "f"))
            except SpecError as exc:
                answers.append(exc.format())
            finally:
                source._c_parser = original  # type: ignore[assignment]
        assert answers[0] == answers[1], text
        agree += 1
    print(f"\nRELIABILITY parsers: libyaml and pure-Python agree on {agree} odd/hostile documents")
