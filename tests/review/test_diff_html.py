"""`cnnspec diff --format html -o FILE`: the page's marks and totals read back from the file.

OLD is specs/small_cnn.yaml; NEW widens conv2 (64 → 96 channels) and adds a residual block
(tests/review/data/small_cnn_wide_residual.yaml). tests/review/test_diff_html_browser.py opens the
same page in a real browser.
"""

from __future__ import annotations

from pathlib import Path

import cnnspec
from cnnspec.review.diff import diff_specs
from tests.cli_helpers import run_cli
from tests.review.drawing import read_html
from tests.review.review_helpers import DATA, SPECS

OLD = SPECS / "small_cnn.yaml"
NEW = DATA / "small_cnn_wide_residual.yaml"
ADDED = ["res.conv_a", "res.bn_a", "res.relu_2", "res.conv_b", "res.bn_b", "res.downsample", "res.add", "res.relu"]
OLD_DOWNSTREAM = ["bn2", "relu_6", "maxpool2d_7", "flatten_8", "linear_9", "relu_10", "dropout_11", "head"]
DOWNSTREAM = ["bn2", "relu_6", "maxpool2d_7", "flatten_9", "linear_10", "relu_11", "dropout_12", "head"]


def write_diff(tmp_path: Path, old: Path, new: Path) -> tuple[int, str]:
    out = tmp_path / "report.html"
    result = run_cli("diff", str(old), str(new), "--format", "html", "-o", str(out))
    assert result.stdout == ""
    return result.exit_code, out.read_text(encoding="utf-8")


def status(page_side: dict[str, dict[str, str]]) -> dict[str, str]:
    return {k: v["data-status"] for k, v in page_side.items() if "data-status" in v}


def test_the_page_marks_the_changed_added_and_downstream_layers(tmp_path: Path) -> None:
    code, text = write_diff(tmp_path, OLD, NEW)
    assert code == 1  # as diff(1): the architectures differ
    page = read_html(text)
    assert sorted(page.drawings) == ["new", "old"]
    new, old = page.drawings["new"], page.drawings["old"]
    marks = status(new.boxes)
    assert marks["conv2"] == "changed" and "changed" in new.boxes["conv2"]["class"].split()
    assert sorted(k for k, v in marks.items() if v == "added") == sorted(ADDED)
    assert sorted(k for k, v in marks.items() if v == "effect") == sorted(DOWNSTREAM)
    assert status(old.boxes) == {"conv2": "changed", **dict.fromkeys(OLD_DOWNSTREAM, "effect")}
    # Both graphs are drawn whole: every layer of each spec, one edge per input.
    for drawn, spec in ((old, OLD), (new, NEW)):
        graph = cnnspec.check(cnnspec.load(spec))
        assert sorted(drawn.layers) == sorted(n.id for n in graph.nodes)
        assert len(drawn.edges) == sum(len(n.inputs) for n in graph.nodes)


def test_the_changed_box_says_the_parameter_change_and_the_downstream_box_its_old_shape(tmp_path: Path) -> None:
    _, text = write_diff(tmp_path, OLD, NEW)
    assert "out_channels: 64 → 96</text>" in text
    assert "shape was 64×8×8</text>" in text  # maxpool2d_7, now 96×8×8


def test_the_totals_carry_their_deltas(tmp_path: Path) -> None:
    _, text = write_diff(tmp_path, OLD, NEW)
    d = diff_specs(str(OLD), str(NEW))
    params = d.new.total_params - d.old.total_params
    assert params == 437_728
    assert (
        f'<tr data-total="params"><td>params</td><td>{d.old.total_params:,}</td><td>{d.new.total_params:,}</td>'
        f'<td class="delta up">+{params:,} (+80.3%)</td></tr>'
    ) in text
    assert '<tr data-total="receptive_field"><td>receptive field</td><td>38</td><td>54</td>' in text
    assert '<li class="changed" data-goto="conv2" data-side=".side.new">' in text


def test_a_removed_layer_is_marked_on_the_old_side(tmp_path: Path) -> None:
    _, text = write_diff(tmp_path, NEW, OLD)  # the other way round: the residual block is removed
    page = read_html(text)
    assert sorted(k for k, v in status(page.drawings["old"].boxes).items() if v == "removed") == sorted(ADDED)
    assert '<td class="delta down">-437,728 (-44.5%)</td>' in text


def test_the_same_spec_is_the_same_architecture(tmp_path: Path) -> None:
    code, text = write_diff(tmp_path, OLD, OLD)
    assert code == 0
    assert '<p class="verdict">Same architecture.</p>' in text
    assert "data-status" not in text


def test_the_other_formats_write_to_a_file_too(tmp_path: Path) -> None:
    for fmt, first in (("markdown", "### Architecture diff"), ("json", "{"), ("text", f"{OLD} → {NEW}")):
        out = tmp_path / f"diff.{fmt}"
        result = run_cli("diff", str(OLD), str(NEW), "--format", fmt, "-o", str(out))
        assert result.exit_code == 1 and result.stdout == ""
        assert out.read_text(encoding="utf-8").startswith(first)
        assert "\x1b[" not in out.read_text(encoding="utf-8")  # no colour codes in a file
