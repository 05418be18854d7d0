"""`cnnspec diff`: layer matching, reported changes, deltas, checkpoint fit, git revisions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnspec.checker.checker import check
from cnnspec.review.diff import diff_graphs, diff_specs, is_named
from cnnspec.spec.load import load, loads
from tests.review.review_helpers import SPECS, cnnspec, git, git_repo

SMALL = SPECS / "small_cnn.yaml"


def small_with(tmp_path: Path, old: str, new: str, name: str = "small_cnn.yaml") -> Path:
    text = SMALL.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_one_out_channels_change_is_reported_exactly(tmp_path: Path) -> None:
    new = small_with(tmp_path, "{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,")
    d = diff_specs(str(SMALL), str(new))
    assert not d.same
    assert d.added == [] and d.removed == [] and d.input_change is None
    assert [(p.new.id, [(c.field, c.old, c.new) for c in p.changes]) for p in d.changed] == [
        ("conv2", [("out_channels", 64, 96)])
    ]
    # The shape changes that follow, layer by layer, up to the flatten; the next linear only grows its weights.
    effects = {p.new.id: (p.old.output_shape, p.new.output_shape) for p in d.effects}
    assert effects == {
        "conv2": ((64, 16, 16), (96, 16, 16)),
        "bn2": ((64, 16, 16), (96, 16, 16)),
        "relu_6": ((64, 16, 16), (96, 16, 16)),
        "maxpool2d_7": ((64, 8, 8), (96, 8, 8)),
        "flatten_8": ((4096,), (6144,)),
        "linear_9": ((128,), (128,)),
    }
    linear = next(p for p in d.effects if p.new.id == "linear_9")
    assert (linear.old.params, linear.new.params) == (4096 * 128 + 128, 6144 * 128 + 128)
    assert d.settings == []
    # Checkpoint: exactly the tensors of conv2, bn2 (not its step counter) and linear_9's weight stop fitting.
    reshaped = {t.new_key for t in d.checkpoint.by_status("reshaped")}
    assert reshaped == {
        "conv2.weight",
        "conv2.bias",
        "bn2.weight",
        "bn2.bias",
        "bn2.running_mean",
        "bn2.running_var",
        "linear_9.weight",
    }
    assert d.checkpoint.fitting == 18 - 7 and d.checkpoint.old_total == 18


def test_params_delta_equals_the_difference_of_the_summary_totals(tmp_path: Path) -> None:
    new = small_with(tmp_path, "{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,")
    old_total = json.loads(cnnspec("summary", "--format", "json", str(SMALL)).stdout)["total_params"]
    new_total = json.loads(cnnspec("summary", "--format", "json", str(new)).stdout)["total_params"]
    proc = cnnspec("diff", "--format", "json", str(SMALL), str(new))
    assert proc.returncode == 1, proc.stderr  # different architectures
    data = json.loads(proc.stdout)
    assert data["totals"]["params"] == {"old": old_total, "new": new_total, "delta": new_total - old_total}
    assert data["totals"]["params"]["delta"] == 271_456  # 9,248 conv + 64 bn + 262,144 linear
    assert data["changed"] == [
        {
            "old_id": "conv2",
            "id": "conv2",
            "kind": "conv2d",
            "changes": [{"field": "out_channels", "old": 64, "new": 96}],
        }
    ]
    assert data["added"] == [] and data["removed"] == []
    assert [e["id"] for e in data["effects"]] == ["conv2", "bn2", "relu_6", "maxpool2d_7", "flatten_8", "linear_9"]
    assert data["effects"][4]["output_shape"] == {"old": [4096], "new": [6144]}
    assert data["totals"]["receptive_field"] == {"old": [38, 38], "new": [38, 38]}


def test_text_and_markdown_name_the_change(tmp_path: Path) -> None:
    new = small_with(tmp_path, "{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,")
    text = cnnspec("diff", str(SMALL), str(new))
    assert text.returncode == 1
    assert "conv2 (conv2d)  out_channels: 64 → 96" in text.stdout
    assert "64×16×16 → 96×16×16" in text.stdout
    assert "+271,456" in text.stdout
    md = cnnspec("diff", "--format", "markdown", str(SMALL), str(new))
    assert md.returncode == 1
    assert "- ✏️ `conv2` (conv2d): `out_channels` 64 → 96" in md.stdout
    assert "| params | 545,290 | 816,746 | +271,456 (+49.8%) |" in md.stdout
    assert "`flatten_8` | 4096 → 6144" in md.stdout


def test_same_architecture_exits_0_even_when_layout_and_training_differ(tmp_path: Path) -> None:
    other = small_with(tmp_path, "optimizer: {name: sgd, lr: 0.1,", "optimizer: {name: sgd, lr: 0.05,")
    other.write_text(
        "# reformatted\n" + other.read_text().replace("{id: head, out_features: 10}", "{out_features: 10, id: head}")
    )
    proc = cnnspec("diff", str(SMALL), str(other))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "same architecture" in proc.stdout
    d = diff_specs(str(SMALL), str(other))
    assert d.same and [(c.field, c.old, c.new) for c in d.settings] == [("optimizer.lr", 0.1, 0.05)]
    assert d.checkpoint.fitting == d.checkpoint.old_total == 18


def test_an_inserted_unnamed_layer_keeps_the_others_paired(tmp_path: Path) -> None:
    new = small_with(tmp_path, "    - flatten\n", "    - dropout2d: {p: 0.1}\n    - flatten\n")
    d = diff_specs(str(SMALL), str(new))
    assert [(n.id, n.kind) for n in d.added] == [("dropout2d_8", "dropout2d")]
    assert d.removed == [] and d.changed == [] and d.effects == []
    # Unnamed layers after it changed their automatic ids: their weights fit under the new names.
    assert d.checkpoint.remap == {"linear_9.weight": "linear_10.weight", "linear_9.bias": "linear_10.bias"}
    assert d.checkpoint.fitting == d.checkpoint.old_total


def test_layers_are_matched_by_id_before_position(tmp_path: Path) -> None:
    # Swap the two convolutions' ids: matching by id pairs conv1 with conv1 wherever it is.
    text = SMALL.read_text()
    text = text.replace("{id: conv1, out_channels: 32,", "{id: tmp, out_channels: 32,")
    text = text.replace("{id: conv2, out_channels: 64,", "{id: conv1, out_channels: 64,").replace(
        "{id: tmp,", "{id: conv2,"
    )
    new = tmp_path / "swapped.yaml"
    new.write_text(text)
    d = diff_specs(str(SMALL), str(new))
    changed = {p.new.id: {c.field: (c.old, c.new) for c in p.changes} for p in d.changed}
    assert changed == {"conv1": {"out_channels": (32, 64)}, "conv2": {"out_channels": (64, 32)}}


def test_a_renamed_layer_is_paired_by_position_and_kind(tmp_path: Path) -> None:
    new = small_with(tmp_path, "{id: head, out_features: 10}", "{id: classifier, out_features: 10}")
    d = diff_specs(str(SMALL), str(new))
    assert [(p.old.id, p.new.id, [(c.field, c.old, c.new) for c in p.changes]) for p in d.changed] == [
        ("head", "classifier", [("id", "head", "classifier")])
    ]
    assert not d.same
    assert d.checkpoint.remap == {"head.weight": "classifier.weight", "head.bias": "classifier.bias"}


def test_removed_layers_and_a_changed_input(tmp_path: Path) -> None:
    model_only = SMALL.read_text().split("data:")[0]  # no data section: any input size checks
    old = tmp_path / "old.yaml"
    old.write_text(model_only)
    new = tmp_path / "big.yaml"
    text = model_only.replace(
        "input: {channels: 3, height: 32, width: 32}", "input: {channels: 3, height: 64, width: 64}"
    )
    new.write_text(text.replace("    - dropout: {p: 0.2}\n", ""))
    d = diff_specs(str(old), str(new))
    assert d.input_change is not None and (d.input_change.old, d.input_change.new) == ([3, 32, 32], [3, 64, 64])
    assert [(n.id, n.kind) for n in d.removed] == [("dropout_11", "dropout")]
    assert d.added == [] and d.changed == [] and d.settings == []
    assert [t.new_key for t in d.checkpoint.by_status("reshaped")] == ["linear_9.weight"]
    assert (d.old_rf, d.new_rf) == ((38, 38), (70, 70))  # the flatten sees the whole 16×16 map


def test_is_named_tells_user_ids_from_automatic_ones() -> None:
    assert is_named("conv1") and is_named("layer2.0.conv1") and is_named("layer1.0.downsample")
    assert not is_named("relu_2") and not is_named("residual_2.conv2d_0") and not is_named("stage.batchnorm2d_1")
    assert is_named("block_2x")  # not KIND_INDEX


def test_resnet18_against_itself_with_a_wider_stage(tmp_path: Path) -> None:
    text = (SPECS / "resnet18.yaml").read_text()
    old_args = '{id: "1", name: basic, args: {width: 512}}'
    assert old_args in text
    wide = loads(text.replace(old_args, '{id: "1", name: basic, args: {width: 512, stride: 1}}'), "wide.yaml")
    d = diff_graphs(check(load(SPECS / "resnet18.yaml")), check(wide))
    assert d.same  # writing a default explicitly is the same architecture
    narrow = loads(text.replace("args: {width: 64}", "args: {width: 32}"), "narrow.yaml")
    d = diff_graphs(check(load(SPECS / "resnet18.yaml")), check(narrow))
    changed = {p.new.id for p in d.changed}
    assert changed == {"layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"}
    assert {p.new.id for p in d.effects} >= {"layer1.0.downsample", "layer2.0.downsample", "layer1.0.bn1"}


def test_diff_against_git_revisions(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    (repo / "specs").mkdir()
    shutil.copy(SMALL, repo / "specs" / "small_cnn.yaml")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "base", cwd=repo)
    spec = repo / "specs" / "small_cnn.yaml"
    spec.write_text(spec.read_text().replace("{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,"))

    worktree = cnnspec("diff", "HEAD:specs/small_cnn.yaml", "specs/small_cnn.yaml", cwd=repo)
    assert worktree.returncode == 1, worktree.stderr
    assert "HEAD:specs/small_cnn.yaml → specs/small_cnn.yaml" in worktree.stdout
    assert "out_channels: 64 → 96" in worktree.stdout

    git("commit", "-qam", "wider conv2", cwd=repo)
    revs = cnnspec("diff", "--format", "json", "HEAD~1:specs/small_cnn.yaml", "HEAD:specs/small_cnn.yaml", cwd=repo)
    assert revs.returncode == 1, revs.stderr
    assert json.loads(revs.stdout)["changed"][0]["changes"] == [{"field": "out_channels", "old": 64, "new": 96}]

    same = cnnspec("diff", "HEAD:specs/small_cnn.yaml", "specs/small_cnn.yaml", cwd=repo)
    assert same.returncode == 0 and "same architecture" in same.stdout


def test_diff_trouble_exits_2_with_a_located_message(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    missing = cnnspec("diff", "HEAD:nothing.yaml", str(SMALL), cwd=repo)
    assert missing.returncode == 2
    assert "cannot read HEAD:nothing.yaml from git" in missing.stderr and "Traceback" not in missing.stderr

    broken = small_with(tmp_path, "{id: conv2, out_channels: 64,", "{id: conv2, out_channels: -1,")
    proc = cnnspec("diff", str(SMALL), str(broken))
    assert proc.returncode == 2
    assert f"{broken}:" in proc.stderr and "error:" in proc.stderr


@pytest.mark.parametrize("args", [("fmt", "--check"), ("diff",), ("init", "--list")])
def test_review_commands_do_not_import_torch(tmp_path: Path, args: tuple[str, ...]) -> None:
    other = small_with(tmp_path, "{id: conv2, out_channels: 64,", "{id: conv2, out_channels: 96,")
    files = {"fmt": [str(SMALL)], "diff": [str(SMALL), str(other)], "init": []}[args[0]]
    code = (
        "import sys\n"
        "from cnnspec.commands.app import app\n"
        f"sys.argv = ['cnnspec', *{list(args)!r}, *{files!r}]\n"
        "try:\n    app()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "NO-TORCH", proc.stdout + proc.stderr


def test_backbones_whose_tensors_are_not_tabulated(tmp_path: Path) -> None:
    transfer = SPECS / "resnet18_transfer.yaml"
    mobile = tmp_path / "mobile.yaml"
    mobile.write_text(transfer.read_text().replace("model: resnet18,", "model: mobilenet_v2,"))
    d = diff_specs(str(transfer), str(mobile))
    assert [(p.new.id, [(c.field, c.old, c.new) for c in p.changes]) for p in d.changed] == [
        ("backbone", [("model", "resnet18", "mobilenet_v2")])
    ]
    ck = d.checkpoint
    assert ck.unknown == ["backbone"]
    assert len(ck.by_status("unknown")) == 120  # resnet18 without its fc: known on the OLD side only
    assert [t.new_key for t in ck.by_status("reshaped")] == ["fc.weight"]  # 512 → 1280 features
    same = diff_specs(str(mobile), str(mobile))
    assert same.same and same.checkpoint.whole == ["backbone"] and same.checkpoint.unknown == []


def test_a_change_that_moves_only_the_receptive_field_reports_the_layers_after_it(tmp_path: Path) -> None:
    # Dilation 2 with padding 2 keeps conv2's shape, parameters and MACs: only what the layers after it see grows.
    new = small_with(
        tmp_path,
        "{id: conv2, out_channels: 64, kernel_size: 3, padding: 1}",
        "{id: conv2, out_channels: 64, kernel_size: 3, padding: 2, dilation: 2}",
    )
    d = diff_specs(str(SMALL), str(new))
    assert [(p.new.id, [(c.field, c.old, c.new) for c in p.changes]) for p in d.changed] == [
        ("conv2", [("padding", 1, 2), ("dilation", 1, 2)])
    ]
    rf = {p.new.id: (p.old.receptive_field[0], p.new.receptive_field[0]) for p in d.effects}
    # By hand: conv1 3, pool 4 (jump 2); conv2 4 + (3 − 1)·2 = 8, dilated 4 + (5 − 1)·2 = 12; pool +2;
    # flatten + (8 − 1)·4 = 28; every layer after it sees what the flatten sees.
    after = {"flatten_8", "linear_9", "relu_10", "dropout_11", "head"}
    assert rf == {"conv2": (8, 12), "bn2": (8, 12), "relu_6": (8, 12), "maxpool2d_7": (10, 14)} | {
        layer: (38, 42) for layer in after
    }
    assert all(p.old.params == p.new.params and p.old.output_shape == p.new.output_shape for p in d.effects)
    assert (d.old_rf, d.new_rf) == ((38, 38), (42, 42))
    assert d.checkpoint.fitting == d.checkpoint.old_total  # every tensor still fits


def test_a_layer_that_reads_another_input_is_a_change(tmp_path: Path) -> None:
    def spec(second_input: str) -> Path:
        path = tmp_path / f"{second_input}.yaml"
        path.write_text(
            "name: t\nmodel:\n  input: {channels: 2, height: 8, width: 8}\n  layers:\n"
            "    - conv2d: {id: a, out_channels: 2, kernel_size: 3, padding: 1}\n"
            "    - conv2d: {id: b, out_channels: 2, kernel_size: 1, inputs: [input]}\n"
            f"    - add: {{id: sum, inputs: [a, {second_input}]}}\n",
            encoding="utf-8",
        )
        return path

    d = diff_specs(str(spec("b")), str(spec("input")))
    assert not d.same
    assert [(p.new.id, [(c.field, c.old, c.new) for c in p.changes]) for p in d.changed] == [
        ("sum", [("inputs", ["a", "b"], ["a", "input"])])
    ]
    assert d.added == [] and d.removed == []
