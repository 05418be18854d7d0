"""`cnnspec fmt`: canonical layout, idempotent, every comment kept, refuses invalid specs."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from cnnspec.review.fmt import WIDTH, format_text
from cnnspec.spec.dump import spec_data
from cnnspec.spec.load import loads
from tests.review.review_helpers import DATA, ROOT, SPECS, cnnspec

SHIPPED = sorted(SPECS.glob("*.yaml"))


def comments(text: str) -> Counter[str]:
    """Every comment of a YAML text, found line by line (independently of the formatter's scanner)."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        quote = None
        for i, ch in enumerate(line):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"" and (i == 0 or line[i - 1] in " :[{,-"):
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
                found[line[i:].rstrip()] += 1
                break
    return found


def blank_groups(text: str) -> int:
    """Number of runs of blank lines."""
    return len(re.findall(r"\n\s*\n", text))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_spec_is_canonical_idempotent_and_keeps_comments(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    once = format_text(text, str(path))
    assert format_text(once, str(path)) == once  # idempotent
    assert comments(once) == comments(text)
    assert comments(text)  # every shipped spec has comments (the $schema line at least)
    assert once.splitlines()[0].startswith("# yaml-language-server: $schema=")
    assert spec_data(loads(once)) == spec_data(loads(text))  # the same spec
    assert once == text, f"{path.name} is not in fmt layout: run `cnnspec fmt {path.relative_to(ROOT)}`"


def test_fmt_check_passes_on_the_shipped_specs_and_templates() -> None:
    templates = sorted((ROOT / "cnnspec" / "templates").glob("*.yaml"))
    proc = cnnspec("fmt", "--check", *map(str, SHIPPED + templates))
    assert proc.returncode == 0, proc.stderr
    assert "would reformat" not in proc.stderr


def test_messy_spec_gets_the_canonical_layout() -> None:
    text = (DATA / "messy.yaml").read_text(encoding="utf-8")
    expected = (DATA / "messy.formatted.yaml").read_text(encoding="utf-8")
    out = format_text(text)
    assert out == expected
    assert comments(out) == comments(text)
    lines = out.splitlines()
    # Top-level keys in the schema's order; the header stays first.
    top = [line.split(":")[0] for line in lines if re.match(r"^[a-z]", line)]
    assert top == ["name", "description", "model", "optimizer", "train"]
    assert lines[0] == "# yaml-language-server: $schema=../schemas/cnnspec.schema.json"
    # One layer per line, id first; `- relu:` and `- batchnorm2d: {}` become bare.
    assert "    - conv2d: {id: c1, out_channels: 8, kernel_size: 3}" in lines
    assert "    - batchnorm2d" in lines
    assert "    - linear: {id: head, out_features: 10}" in lines
    # A layer with a comment inside stays in block style, so the comment keeps its key.
    assert "        out_channels: 8       # keep me" in lines
    # Two blank lines became one, and the comment after them is still before maxpool2d.
    i = lines.index("    # pool it")
    assert lines[i - 1] == "" and lines[i - 2] != "" and lines[i + 1].startswith("    - maxpool2d")
    # End-of-line comments move with their key.
    assert "train: {epochs: 3}   # few epochs" in lines


def test_sugar_kinds_with_layer_lists_are_block_style_and_long_layers_wrap() -> None:
    text = """name: t
model:
  input: {channels: 3, height: 8, width: 8}
  layers:
    - repeat: {id: r, n: 2, layers: [conv2d: {out_channels: 3, kernel_size: 3, padding: 1}, relu]}
    - residual: {activation: relu, body: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1, bias: false}]}
    - conv2d: {out_channels: 8, kernel_size: 3, stride: 1, padding: 1, dilation: 1, groups: 1, bias: true,
               padding_mode: zeros, id: a_long_layer_name}
    - global_avgpool
"""
    out = format_text(text)
    assert out == format_text(out)
    assert (
        "    - repeat:\n        id: r\n        n: 2\n        layers:\n"
        "          - conv2d: {out_channels: 3, kernel_size: 3, padding: 1}\n          - relu\n"
    ) in out
    # Declared order: body before activation.
    assert (
        "    - residual:\n        body:\n"
        "          - conv2d: {out_channels: 4, kernel_size: 3, padding: 1, bias: false}\n        activation: relu\n"
    ) in out
    assert "    - conv2d:\n        id: a_long_layer_name\n        out_channels: 8\n" in out
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    assert spec_data(loads(out)) == spec_data(loads(text))


def test_short_sections_become_flow_and_blocks_keep_their_parameter_order() -> None:
    text = """# yaml-language-server: $schema=x.json
model:
  layers:
    - block:
        name: cb
        args:
          c: 4
        id: b
  blocks:
    cb:
      layers:
        - conv2d: {kernel_size: 1, out_channels: $c}
      params:
        c: null
        k: 3
  input:
    channels: 1
    height: 4
    width: 4
name: t
optimizer:
  lr: 0.1
  momentum: 0.8
"""
    out = format_text(text)
    assert (
        out
        == """# yaml-language-server: $schema=x.json
name: t
model:
  input: {channels: 1, height: 4, width: 4}
  blocks:
    cb:
      params: {c: null, k: 3}
      layers:
        - conv2d: {out_channels: $c, kernel_size: 1}
  layers:
    - block: {id: b, name: cb, args: {c: 4}}
optimizer: {lr: 0.1, momentum: 0.8}
"""
    )


def test_commented_out_layer_at_the_end_of_a_list_stays_in_the_list() -> None:
    src = (SPECS / "small_cnn.yaml").read_text(encoding="utf-8")
    text = src.replace(
        "    - linear: {id: head, out_features: 10}\n", "    - linear: {id: head, out_features: 10}\n    # - softmax\n"
    )
    out = format_text(text)
    assert "    - linear: {id: head, out_features: 10}\n    # - softmax\ndata:\n" in out


def test_aliases_keep_their_order_and_still_load() -> None:
    text = """name: t
model:
  layers:
    - conv2d: {out_channels: &w 8, kernel_size: 3}
    - conv2d: {kernel_size: 1, out_channels: *w}
  input: {channels: 3, height: 8, width: 8}
"""
    out = format_text(text)
    assert out.index("layers:") < out.index("input:")  # not reordered: *w must follow &w
    assert spec_data(loads(out)) == spec_data(loads(text))


def test_fmt_rewrites_in_place_and_check_names_the_files(tmp_path: Path) -> None:
    messy = tmp_path / "messy.yaml"
    shutil.copy(DATA / "messy.yaml", messy)
    clean = tmp_path / "small_cnn.yaml"
    shutil.copy(SPECS / "small_cnn.yaml", clean)

    check = cnnspec("fmt", "--check", str(messy), str(clean))
    assert check.returncode == 1
    assert f"would reformat {messy}" in check.stderr
    assert str(clean) not in check.stderr
    assert messy.read_text() == (DATA / "messy.yaml").read_text()  # --check changes nothing

    shown = cnnspec("fmt", "--diff", str(messy))
    assert '+name: "messy"' in shown.stdout and shown.stdout.startswith("---")

    write = cnnspec("fmt", str(messy), str(clean))
    assert write.returncode == 0, write.stderr
    assert messy.read_text() == (DATA / "messy.formatted.yaml").read_text()
    assert cnnspec("fmt", "--check", str(messy)).returncode == 0


def test_fmt_reads_stdin() -> None:
    proc = cnnspec("fmt", "-", stdin=(DATA / "messy.yaml").read_text())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (DATA / "messy.formatted.yaml").read_text()


def test_fmt_refuses_a_spec_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (
        "name: bad\nmodel:\n  input: {channels: 3, height: 8, width: 8}\n"
        "  layers:\n    - conv2d: {out_chanels: 8, kernel_size: 3}\n"
    )
    bad.write_text(text)
    proc = cnnspec("fmt", str(bad))
    assert proc.returncode == 1
    assert f"{bad}:5:" in proc.stderr and "error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert bad.read_text() == text


def strip_comments(text: str) -> str:
    lines = []
    for line in text.splitlines():
        code = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if code.strip():
            lines.append(code)
    return "\n".join(lines) + "\n"


def relayout(text: str, seed: int) -> str:
    """The same spec in another layout: block style everywhere, 4-space indents, keys shuffled, `- relu: {}`."""
    import io
    import random

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rng = random.Random(seed)

    def walk(node: object, key: object = None) -> object:
        if isinstance(node, CommentedMap):
            items = list(node.items())
            if key not in ("params", "args", "space"):  # free-form: kept in the user's order (a space: its draws)
                rng.shuffle(items)
            out = CommentedMap()
            for k, v in items:
                out[k] = walk(v, k)
            out.fa.set_block_style()
            return out
        if isinstance(node, CommentedSeq):
            seq = CommentedSeq()
            for v in node:
                if isinstance(v, str) and key in ("layers", "body", "augment") and rng.random() < 0.5:
                    v = CommentedMap([(v, CommentedMap() if rng.random() < 0.5 else None)])
                seq.append(walk(v))
            if all(isinstance(v, (int, float)) for v in seq):
                seq.fa.set_flow_style()  # a YAML emitter writes `[1, 2]` in either style; keep it short
            else:
                seq.fa.set_block_style()
            return seq
        return node

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=4, sequence=4, offset=0)
    buf = io.StringIO()
    yaml.dump(walk(yaml.load(text)), buf)
    return buf.getvalue()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_any_layout_of_a_spec_formats_to_the_same_text(path: Path) -> None:
    canonical = format_text(strip_comments(path.read_text(encoding="utf-8")))
    for seed in range(3):
        other = relayout(canonical, seed)
        assert other != canonical
        assert format_text(other) == canonical, f"seed {seed}:\n{other}"


@pytest.mark.parametrize("empty", ["augment: []", "augment: [ ]"])
def test_an_empty_augment_list_stays_an_empty_list(empty: str) -> None:
    # fmt writes `augment` in block style; an empty block list written as nothing would mean null.
    text = (
        "name: e\nmodel:\n  input: {channels: 1, height: 8, width: 8}\n  layers:\n    - flatten\n"
        "    - linear: {out_features: 10}\n"
        f"data:\n  dataset: {{name: digits}}\n  {empty}\n"
    )
    out = format_text(text)
    assert "  augment: []\n" in out
    assert spec_data(loads(out)) == spec_data(loads(text))
    assert format_text(out) == out
