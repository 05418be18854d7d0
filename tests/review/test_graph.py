"""`cnnspec graph`: the drawn structure read back from the SVG and HTML files the real command writes.

At full depth a drawing has one box per layer (and one for the input) and one edge per input of
every layer; at `--depth 1` each block, repeat or group is one box counting its layers, and the
HTML page holds a view for every group it folds. The specs: ResNet-18 (residual blocks), GoogLeNet
(Inception modules: concat of four branches) and the zoo's MobileNetV3-Small (squeeze-excite,
multiply).
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec.checker.graph import Graph
from cnnspec.render.layout import GAP_X, layered
from tests.cli_helpers import run_cli
from tests.review.drawing import Drawn, read_html, read_svg
from tests.review.review_helpers import ROOT

SPECS = {
    "resnet18": ROOT / "specs" / "resnet18.yaml",
    "googlenet": ROOT / "specs" / "zoo" / "googlenet.yaml",
    "mobilenet_v3_small": ROOT / "specs" / "zoo" / "mobilenet_v3_small.yaml",
}


@pytest.fixture(scope="module")
def graphs() -> dict[str, Graph]:
    return {name: cnnspec.check(cnnspec.load(path)) for name, path in SPECS.items()}


def draw(tmp_path: Path, spec: str, suffix: str, *options: str) -> Path:
    out = tmp_path / f"{spec}{'-'.join(options)}.{suffix}"
    result = run_cli("graph", str(SPECS[spec]), "-o", str(out), *options)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == f"wrote {out}"
    return out


def expected_edges(graph: Graph) -> Counter[tuple[str, str]]:
    return Counter((source, n.id) for n in graph.nodes for source in n.inputs)


def assert_every_layer(drawn: Drawn, graph: Graph) -> None:
    assert sorted(drawn.layers) == sorted(n.id for n in graph.nodes)
    assert set(drawn.boxes) == {"input", *(n.id for n in graph.nodes)}
    for n in graph.nodes:
        box = drawn.layers[n.id]
        assert (box["data-kind"], int(box["data-params"]), int(box["data-macs"])) == (n.kind, n.params, n.macs)
    assert drawn.edge_pairs() == expected_edges(graph)
    assert len(drawn.edges) == sum(len(n.inputs) for n in graph.nodes)


@pytest.mark.parametrize("spec", list(SPECS))
def test_the_svg_has_one_box_per_layer_and_one_edge_per_input(
    tmp_path: Path, graphs: dict[str, Graph], spec: str
) -> None:
    assert_every_layer(read_svg(draw(tmp_path, spec, "svg").read_text(encoding="utf-8")), graphs[spec])


@pytest.mark.parametrize("spec", list(SPECS))
def test_the_html_page_has_one_box_per_layer_and_one_edge_per_input(
    tmp_path: Path, graphs: dict[str, Graph], spec: str
) -> None:
    page = read_html(draw(tmp_path, spec, "html").read_text(encoding="utf-8"))
    assert list(page.drawings) == [""]  # nothing folded: one view
    assert_every_layer(page.drawings[""], graphs[spec])


def test_edges_into_a_concat_are_concat_edges_and_into_an_add_residual(
    tmp_path: Path, graphs: dict[str, Graph]
) -> None:
    inception = read_svg(draw(tmp_path, "googlenet", "svg").read_text(encoding="utf-8"))
    concat_inputs = sum(len(n.inputs) for n in graphs["googlenet"].nodes if n.kind == "concat")
    assert concat_inputs == 4 * 9
    assert Counter(style for *_, style, _ in inception.edges)["concat"] == concat_inputs
    resnet = read_svg(draw(tmp_path, "resnet18", "svg").read_text(encoding="utf-8"))
    styles = {(s, t): style for s, t, style, _ in resnet.edges}
    assert styles[("layer1.0.bn2", "layer1.0.add")] == "residual"
    assert styles[("maxpool", "layer1.0.downsample")] == "residual"  # the skip connection itself
    assert styles[("layer1.0.bn2", "layer1.0.downsample")] == "shape"  # read only for its shape
    assert styles[("layer1.0.conv1", "layer1.0.bn1")] == "seq"


def folded(graph: Graph, parts: int) -> dict[str, list[str]]:
    """Box id → the layers it stands for, folding ids to their first `parts` parts."""
    boxes: dict[str, list[str]] = {}
    for n in graph.nodes:
        boxes.setdefault(".".join(n.id.split(".")[:parts]), []).append(n.id)
    return boxes


@pytest.mark.parametrize("spec", list(SPECS))
def test_depth_1_folds_each_top_level_group_into_one_box_counting_its_layers(
    tmp_path: Path, graphs: dict[str, Graph], spec: str
) -> None:
    graph = graphs[spec]
    drawn = read_svg(draw(tmp_path, spec, "svg", "--depth", "1").read_text(encoding="utf-8"))
    boxes = folded(graph, 1)
    groups = {k: v for k, v in boxes.items() if v != [k]}
    assert groups, "the spec has groups to fold"
    assert sorted(drawn.with_class("group")) == sorted(groups)
    for name, members in groups.items():
        assert int(drawn.boxes[name]["data-members"]) == len(members)
        assert int(drawn.boxes[name]["data-params"]) == sum(graph.node(m).params for m in members)
    assert sorted(drawn.layers) == sorted(k for k, v in boxes.items() if v == [k])
    owner = {m: box for box, members in boxes.items() for m in members} | {"input": "input"}
    crossing = Counter((owner[s], owner[n.id]) for n in graph.nodes for s in n.inputs if owner[s] != owner[n.id])
    assert Counter({(s, t): c for s, t, _, c in drawn.edges}) == crossing


def test_resnet18_at_depth_1_is_its_stem_four_stages_and_head(tmp_path: Path) -> None:
    drawn = read_svg(draw(tmp_path, "resnet18", "svg", "--depth", "1").read_text(encoding="utf-8"))
    assert {k: int(v["data-members"]) for k, v in drawn.with_class("group").items()} == {
        f"layer{i}": 16 for i in range(1, 5)
    }
    assert sorted(drawn.layers) == sorted(["conv1", "bn1", "relu_2", "maxpool", "avgpool", "flatten_9", "fc"])


def test_the_html_page_at_depth_1_opens_every_group_it_folds(tmp_path: Path, graphs: dict[str, Graph]) -> None:
    page = read_html(draw(tmp_path, "resnet18", "html", "--depth", "1").read_text(encoding="utf-8"))
    stages = [f"layer{i}" for i in range(1, 5)]
    blocks = [f"{s}.{b}" for s in stages for b in (0, 1)]
    assert sorted(page.drawings) == sorted(["", *stages, *blocks])
    for path, drawn in page.drawings.items():  # each group box has the view that opens it
        for group in drawn.with_class("group"):
            assert group in page.drawings, f"{group} (in view '{path}') has no view"
    block = page.drawings["layer2.0"]
    inside = [n.id for n in graphs["resnet18"].nodes if n.id.startswith("layer2.0.")]
    assert sorted(block.layers) == sorted(inside)
    assert sorted(block.with_class("external")) == ["layer1.1.relu"]  # what the block reads from outside
    for section in page.sections:  # the whole model is shown first; a group's view when it is opened
        assert ("hidden" in section) == (section["data-view"] != "")


def test_no_script_or_style_is_fetched_from_elsewhere(tmp_path: Path) -> None:
    page = read_html(draw(tmp_path, "resnet18", "html", "--depth", "1").read_text(encoding="utf-8"))
    for tag, attrs in page.elements:
        assert not ({"src", "href"} & set(attrs)) or tag in ("a",), (tag, attrs)
        assert tag not in ("link", "img", "iframe")


def test_png_is_an_image_of_the_drawing(tmp_path: Path) -> None:
    from PIL import Image

    from cnnspec.render.graph_boxes import draw as lay_out
    from cnnspec.review.graphview import view

    out = draw(tmp_path, "resnet18", "png", "--depth", "1")
    layout = lay_out(view(cnnspec.check(cnnspec.load(SPECS["resnet18"])), 1)).layout
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (round(layout.width * 2), round(layout.height * 2))
        colours = {c for _, c in image.getcolors(maxcolors=1 << 20) or []}
    assert (0xE0, 0xF2, 0xFE) in colours  # a group box's fill


def test_svg_on_stdout_without_out() -> None:
    result = run_cli("graph", str(SPECS["resnet18"]), "--depth", "1")
    assert result.exit_code == 0
    assert sorted(read_svg(result.stdout.split("\n", 1)[1]).with_class("group")) == [f"layer{i}" for i in range(1, 5)]


def test_an_unknown_extension_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "model.pdf"
    result = run_cli("graph", str(SPECS["resnet18"]), "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{out}: error: cnnspec graph cannot write .pdf files"
    assert not out.exists()


def test_a_folder_named_as_the_output_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "drawing.svg"
    out.mkdir()
    result = run_cli("graph", str(SPECS["resnet18"]), "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{out}: error: cannot write {out}: it is a directory")
    assert out.is_dir() and not any(out.iterdir())


def test_an_invalid_spec_is_reported_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel:\n  input: {channels: 3, height: 8, width: 8}\n  layers:\n    - linear: {}\n")
    result = run_cli("graph", str(bad), "-o", str(tmp_path / "x.svg"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{bad}:5:")
    assert not (tmp_path / "x.svg").exists()


def test_depth_below_1_is_a_usage_error() -> None:
    result = run_cli("graph", str(SPECS["resnet18"]), "--depth", "0")
    assert result.exit_code == 2


# --- the layout --------------------------------------------------------------------------------


@st.composite
def dags(draw_: st.DrawFn) -> tuple[dict[str, tuple[float, float]], list[tuple[str, str]]]:
    n = draw_(st.integers(1, 25))
    sizes = {
        f"n{i}": (draw_(st.sampled_from([96.0, 140.0, 260.0])), draw_(st.sampled_from([40.0, 54.0]))) for i in range(n)
    }
    edges = []
    for j in range(1, n):
        for i in draw_(st.sets(st.integers(0, j - 1), min_size=1, max_size=3)):
            edges.append((f"n{i}", f"n{j}"))
    return sizes, edges


@settings(max_examples=25, deadline=None)
@given(dags())
def test_the_layout_keeps_boxes_apart_and_edges_pointing_down(
    dag: tuple[dict[str, tuple[float, float]], list[tuple[str, str]]],
) -> None:
    sizes, edges = dag
    layout = layered(sizes, edges)
    for s, t in edges:
        assert layout.ranks[t] > layout.ranks[s]
    for route in layout.routes:
        ys = [y for _, y in route]
        assert ys == sorted(ys)  # every edge runs downwards
    by_rank: dict[int, list[str]] = {}
    for box, rank in layout.ranks.items():
        by_rank.setdefault(rank, []).append(box)
    for boxes in by_rank.values():
        spans = sorted(
            (layout.boxes[b].x - layout.boxes[b].width / 2, layout.boxes[b].x + layout.boxes[b].width / 2)
            for b in boxes
        )
        for (_, right), (left, _) in itertools.pairwise(spans):
            assert left - right >= GAP_X - 1e-6
    for placed in layout.boxes.values():
        assert placed.x - placed.width / 2 >= 0 and placed.x + placed.width / 2 <= layout.width
        assert placed.y >= 0 and placed.y + placed.height <= layout.height


def test_control_characters_in_a_string_field_leave_the_svg_well_formed(tmp_path: Path) -> None:
    # A weights path holding NUL, U+0001, ESC and U+FFFE validates; XML forbids those characters even escaped.
    spec = Path(__file__).parent / "data" / "control_characters.yaml"
    out = tmp_path / "drawing.svg"
    result = run_cli("graph", str(spec), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    root = ET.parse(out).getroot()
    assert "\ufffd" in "".join(root.itertext())
