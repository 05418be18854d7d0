"""Hostile YAML (issue 7 item 3): tags run nothing, alias bombs and deep nesting are refused
with bounded work and memory, duplicate keys name both lines, and files that are not specs
(huge, binary, other encodings) are refused before parsing.

Work is bounded by the loader's own counts (`source.ReadCounts`: bytes read, characters
parsed, events consumed, nodes walked to size anchors), checked against hand arithmetic,
never by a clock; benchmarks/hostile_yaml.py times the same inputs.

Each hostile text is read by both parsers the loader can use: libyaml's C parser (the
fast path, when PyYAML or ruamel.yaml.clib provides it) and ruamel.yaml's pure-Python
parser (the reference). Figures are printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cnnspec.errors import SpecError
from cnnspec.spec import source
from cnnspec.spec.load import load, loads

ROOT = Path(__file__).resolve().parents[2]
HAS_LIBYAML = source._c_parser() is not None  # with CNNSPEC_YAML_PARSER unset

# A generous bound: it catches a regression to gigabytes; the real figures are printed.
MEMORY_BOUND_MB = 64.0


@pytest.fixture(params=["libyaml", "pure"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once through each YAML parser the loader can use."""
    if request.param == "libyaml" and not HAS_LIBYAML:
        pytest.skip("libyaml is not installed (PyYAML with libyaml, or ruamel.yaml.clib): only the pure parser runs")
    if request.param == "pure":
        monkeypatch.setenv(source.PARSER_ENV, "pure")
    yield request.param


def refused(text: str, file: str = "hostile.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        loads(text, file)
    return info.value


def peak_memory(fn: Callable[[], object]) -> float:
    """Peak traced memory (MB) of one call."""
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def refused_counted(text: str) -> tuple[SpecError, source.ReadCounts]:
    """The error parse_yaml refuses `text` with, and the work it did until then."""
    counts = source.ReadCounts()
    with pytest.raises(SpecError) as info:
        source.parse_yaml(text, "hostile.yaml", counts)
    return info.value, counts


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


# Each bomb with, by hand: the events read until the alias that takes the expansion past
# 10,000 nodes, where that alias is, and the nodes walked to size the anchors before it.
BOMBS = [
    # l0 is 10 nodes, l1 = 1 + 9·10 = 91, l2 = 820, l3 = 7,381. The aliases of l1–l3 add
    # 90 + 819 + 7,380 = 8,289 nodes; l4's first alias (5:10) would add 7,381 more. Events:
    # 3 open the stream, document and mapping, 12 per level l0–l3 (key, [, 9 items, ]), 3 on l4's line.
    pytest.param(billion_laughs, 3 + 4 * 12 + 3, (5, 10), 10 + 91 + 820 + 7381, id="billion_laughs"),
    # m0 is 3 nodes, m_i = 1 + 2·m_(i-1): 7, 15, …, 4,095 = m10. The aliases of m1–m10 add
    # 2·(3 + 7 + … + 2,047) = 8,164; m11's first alias (12:15) would add 4,095. Events: 3, then 7
    # per level m0–m10 (key, {, a, value, b, value, }), 4 on m11's line.
    pytest.param(mapping_bomb, 3 + 11 * 7 + 4, (12, 15), sum(2**k - 1 for k in range(2, 13)), id="mapping_bomb"),
    # [x, y, z] is 4 nodes: alias 2,501 of 200,000 takes the total to 10,004, at column
    # 4 + 4·2,500 + 1 of line 2. Events: 11 before the first alias (3, key, [, x, y, z, ], key, [).
    pytest.param(wide_alias_fan, 11 + 2501, (2, 4 + 4 * 2500 + 1), 4, id="wide_alias_fan"),
]


@pytest.mark.parametrize(("bomb", "events", "where", "sized"), BOMBS)
def test_alias_bombs_are_refused_with_bounded_work_and_memory(
    parser: str, bomb: Callable[[], str], events: int, where: tuple[int, int], sized: int
) -> None:
    text = bomb()
    peak = peak_memory(lambda: refused(text))
    assert "aliases expand to more than 10,000 nodes" in refused(text).format()
    error, counts = refused_counted(text)
    d = error.diagnostics[0]
    assert d.location is not None and (d.location.line, d.location.col) == where
    # Refused at that alias: no event after it is read, no alias is expanded.
    assert counts.events == events
    assert counts.nodes_sized == sized
    assert counts.chars_parsed == len(text)  # one parser, one pass
    figures = f"refused after {counts.events:,} events and {counts.nodes_sized:,} nodes sized, peak {peak:.1f} MB"
    print(f"\nRELIABILITY alias bomb {bomb.__name__} ({parser}): {figures}")
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
# By hand, for 64 levels: the events read until the 65th level opens (2 open the stream and
# the document), and the characters the pure-Python parser is given: the text up to the 257th
# open bracket (the flow guard, 4 × 64 levels), or all of it when it has no brackets.
NESTING_WORK = {
    "flow sequence": (2 + 65, 256),  # 65 [
    "flow mapping": (2 + 64 * 2 + 1, 256 * len("{a: ")),  # 64 × ({, a), then the 65th {
    "block sequence": (2 + 65, len("- ") * DEPTH + len("x\n")),  # 65 sequence starts
    "under a key": (2 + 4 + 64, len("name: x\nmodel: ") + 256),  # {, name, x, model, 64 [
}

LIBYAML_READ_AHEAD = 16  # events; measured at most 7 (see below), a full read would be > 10,000


@pytest.mark.parametrize("shape", list(NESTINGS))
def test_deep_nesting_is_refused_with_bounded_work_and_memory(parser: str, shape: str) -> None:
    text = NESTINGS[shape] + "\n"
    peak = peak_memory(lambda: refused(text))
    error = refused(text)
    assert f"nesting deeper than {source.MAX_DEPTH} levels" in error.format()
    d = error.diagnostics[0]
    assert d.location is not None and d.location.line >= 1 and d.location.col >= 1
    if shape == "flow sequence":  # both parsers point at the bracket that goes one level too deep
        assert (d.location.line, d.location.col) == (1, source.MAX_DEPTH + 1)
    _, counts = refused_counted(text)
    events, pure_chars = NESTING_WORK[shape]
    # Of the 10,000 levels, none read past the 65th. The pure-Python parser hands over events one
    # at a time; libyaml reads a few ahead, by an amount that changes between releases (PyYAML
    # 6.0.3: 0 extra for every shape; 6.0.4: +1 for "flow sequence", +7 for "under a key").
    if parser == "libyaml":
        assert events <= counts.events <= events + LIBYAML_READ_AHEAD
    else:
        assert counts.events == events
    # libyaml is given the whole text; the pure parser, whose scanner is quadratic in open flow
    # brackets, only the part the flow guard lets through.
    if parser == "libyaml":  # with PyYAML 6.0.4, the pure parser also words some of these errors
        assert counts.chars_parsed in (len(text), len(text) + pure_chars)
    else:
        assert counts.chars_parsed == pure_chars
    figures = f"refused after {counts.events} events, {counts.chars_parsed:,} characters parsed, peak {peak:.1f} MB"
    print(f"\nRELIABILITY nesting {DEPTH:,} ({shape}, {parser}): {figures}")
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

    peak = peak_memory(refuse)
    assert refuse().format().startswith(f"{big}:1:1: error: the file is larger than 10 MiB")
    counts = source.ReadCounts()
    with pytest.raises(SpecError, match="larger than 10 MiB"):
        source.read_spec_text(big, counts)
    assert counts.bytes_read == 10 * 2**20 + 1  # one byte past the limit, of the 50 MB
    assert counts.chars_parsed == counts.events == 0  # refused before parsing
    print(f"\nRELIABILITY 50 MB file: refused after {counts.bytes_read:,} bytes read, peak {peak:.1f} MB")
    assert peak < 16


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
    if os.path.exists("/dev/zero"):  # a device is refused before a byte is read (it was read to 10 MiB)
        counts = source.ReadCounts()
        with pytest.raises(SpecError, match="/dev/zero is a character device, not a spec file"):
            source.read_spec_text("/dev/zero", counts)
        assert counts.bytes_read == 0


def test_an_endless_pipe_is_read_to_the_bound_only(tmp_path: Path) -> None:
    """A pipe is read (process substitution), but at most 10 MiB + 1 bytes of it, however much comes."""
    import threading

    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)
    stop = threading.Event()

    def write_forever() -> None:
        with open(fifo, "wb") as out:  # blocks until the reader opens the FIFO
            try:
                while not stop.is_set():
                    out.write(b"#" * 65536)
            except BrokenPipeError:  # the reader stopped and closed its end
                pass

    writer = threading.Thread(target=write_forever)
    writer.start()
    counts = source.ReadCounts()
    try:
        with pytest.raises(SpecError, match="larger than 10 MiB"):
            source.read_spec_text(fifo, counts)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert counts.bytes_read == 10 * 2**20 + 1


def test_parsers_agree_on_hostile_and_odd_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path may only be faster: for every text here both parsers give the same answer."""
    if not HAS_LIBYAML:
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
        for setting in ("auto", "pure"):
            monkeypatch.setenv(source.PARSER_ENV, setting)
            try:
                answers.append(source.parse_yaml(text, "f"))
            except SpecError as exc:
                answers.append(exc.format())
        assert answers[0] == answers[1], text
        agree += 1
    print(f"\nRELIABILITY parsers: libyaml and pure-Python agree on {agree} odd/hostile documents")
