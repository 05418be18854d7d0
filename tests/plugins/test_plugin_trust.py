"""A plugin's kinds are code cnnspec does not trust: names and fields that would break the expander are
refused when the plugin loads, impossible figures are located errors, a built module that disagrees with
its rules stops `build`, torch imported at load is named, and `schema` reports a broken plugin.

Each plugin here is a real installed distribution as importlib.metadata finds one: a package and a
`NAME-1.0.dist-info` folder (METADATA, entry_points.txt) in a folder on PYTHONPATH, used by a real
`python -m cnnspec` process. No venv or pip is needed, so each case costs one process start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HEADER = """
from typing import ClassVar
from cnnspec.layers import LayerKind, register
"""

SPEC = "name: x\nmodel:\n  input: {channels: 4, height: 8, width: 8}\n  layers:\n    - relu\n    - KIND\n"


def install(tmp: Path, dist: str, module: str, body: str, entries: dict[str, str], *, first: str = "") -> Path:
    """A folder holding the package `module` (its __init__ is `first`, HEADER and `body`) and the
    distribution `dist` with `entries` in the cnnspec.layers entry-point group; put it on PYTHONPATH to
    install it."""
    site = tmp / "site"
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(first + HEADER + textwrap.dedent(body), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[cnnspec.layers]\n{lines}", encoding="utf-8")
    return site


def run(site: Path, args: list[str], cwd: Path, *, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m cnnspec ARGS` (or `python -c CODE ARGS`) with the plugin installed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "cnnspec"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def validate(tmp_path: Path, site: Path, kind: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "spec.yaml").write_text(SPEC.replace("KIND", kind), encoding="utf-8")
    return run(site, ["validate", "spec.yaml"], tmp_path)


# --- 1a: fields cnnspec reserves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "why"),
    [
        ("inputs", "a field every layer kind has already (the ids of the layers it reads)"),
        ("id", "a field every layer kind has already (the layer's name)"),
        ("params", "which would hide LayerKind.params, a rule cnnspec calls"),
    ],
)
def test_a_kind_with_a_reserved_field_is_refused_naming_the_plugin_and_the_field(
    tmp_path: Path, field: str, why: str
) -> None:
    body = f"""
    @register
    class Fieldy(LayerKind):
        kind: ClassVar[str] = "fieldy"
        {field}: int = 3
    """
    site = install(tmp_path, "plug-fields", "pfields", body, {"fieldy": "pfields"})
    proc = validate(tmp_path, site, "fieldy")
    assert proc.returncode == 1, proc.stderr
    assert (
        f"error: layer plugin 'fieldy = pfields' (from plug-fields 1.0): its layer kind 'fieldy' (Fieldy) "
        f"has a field named '{field}', {why}"
    ) in proc.stderr
    assert "hint: fix or uninstall plug-fields" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_kind_named_by_its_class_is_held_to_the_same_fields(tmp_path: Path) -> None:
    body = """
    class Fieldy(LayerKind):
        kind: ClassVar[str] = "fieldy"
        inputs: int = 3
    """
    site = install(tmp_path, "plug-cls", "pcls", body, {"fieldy": "pcls:Fieldy"})
    proc = validate(tmp_path, site, "fieldy")
    assert proc.returncode == 1, proc.stderr
    assert "layer plugin 'fieldy = pcls:Fieldy' (from plug-cls 1.0): its layer kind 'fieldy'" in proc.stderr
    assert "has a field named 'inputs'" in proc.stderr


@pytest.mark.parametrize("name", ["my.kind", "two words", "9lives", "dash-kind"])
def test_a_kind_whose_name_is_not_a_word_of_letters_digits_and_underscores_is_refused(
    tmp_path: Path, name: str
) -> None:
    body = f"""
    @register
    class Odd(LayerKind):
        kind: ClassVar[str] = "{name}"
    """
    site = install(tmp_path, "plug-odd", "podd", body, {"odd": "podd"})
    proc = validate(tmp_path, site, "relu")
    assert proc.returncode == 1, proc.stderr
    assert (
        f"error: layer plugin 'odd = podd' (from plug-odd 1.0): its layer kind name '{name}' (Odd) is not a "
        "name of letters, digits and '_' that starts with a letter"
    ) in proc.stderr


# --- 1d: names that differ only in case, '_' or '-' -----------------------------------------------------


@pytest.mark.parametrize("name", ["Conv2D", "conv_2d", "CONV-2D"])
def test_a_kind_that_differs_from_a_taken_one_only_in_case_is_refused_with_both_origins(
    tmp_path: Path, name: str
) -> None:
    body = f"""
    @register
    class Shadow(LayerKind):
        kind: ClassVar[str] = "{name}"
    """
    site = install(tmp_path, "plug-names", "pnames", body, {"names": "pnames"})
    proc = validate(tmp_path, site, "relu")
    assert proc.returncode == 1, proc.stderr
    assert (
        f"error: layer plugin 'names = pnames' (from plug-names 1.0): its layer kind '{name}' differs only in "
        "case, '_' or '-' from 'conv2d', defined by cnnspec.layers.conv.Conv2d"
    ) in proc.stderr


def test_cnnspec_s_own_kinds_pass_the_checks_a_plugin_s_kinds_get() -> None:
    from cnnspec.augments import AUGMENT_KINDS
    from cnnspec.layers.base import LAYER_KINDS

    for family in (LAYER_KINDS, AUGMENT_KINDS):
        for cls in family.classes.values():
            family.check_outsider(cls)  # raises for a clash or a reserved field


# --- 1c: impossible figures from a kind's rules ----------------------------------------------------------

FIGURES = """
from cnnspec.layers import Window

@register
class BadOut(LayerKind):
    kind: ClassVar[str] = "bad_out"
    def output_shape(self, inputs):
        return (0, -1, 2.5)

@register
class Fractional(LayerKind):
    kind: ClassVar[str] = "fractional"
    def output_shape(self, inputs):
        c, h, w = inputs[0]
        return (c, h / 2, w / 2)

@register
class NegParams(LayerKind):
    kind: ClassVar[str] = "neg_params"
    def params(self, inputs):
        return -5

@register
class WordMacs(LayerKind):
    kind: ClassVar[str] = "word_macs"
    def macs(self, inputs, output):
        return "lots"

@register
class FloatParams(LayerKind):
    kind: ClassVar[str] = "float_params"
    def params(self, inputs):
        return 2.5

@register
class BadWindow(LayerKind):
    kind: ClassVar[str] = "bad_window"
    def window(self, inputs, output):
        return Window((0, 3), (1.0, 1.0))
"""


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("bad_out", "gave the output shape (0, -1, 2.5): a shape is C×H×W or F, of whole numbers ≥ 1"),
        ("fractional", "gave the output shape (4, 4.0, 4.0): a shape is C×H×W or F, of whole numbers ≥ 1"),
        ("neg_params", "counted -5 parameters: a count is a whole number ≥ 0"),
        ("float_params", "counted 2.5 parameters: a count is a whole number ≥ 0"),
        ("word_macs", "counted 'lots' multiply-accumulates: a count is a whole number ≥ 0"),
        ("bad_window", "gave the receptive-field step Window(kernel=(0, 3)"),
    ],
)
def test_impossible_figures_from_a_plugin_rule_are_a_located_error_naming_the_kind_and_plugin(
    tmp_path: Path, kind: str, what: str
) -> None:
    site = install(tmp_path, "plug-figures", "pfigures", FIGURES, {"figures": "pfigures"})
    proc = validate(tmp_path, site, kind)
    assert proc.returncode == 1, proc.stderr
    assert (
        f"spec.yaml:6:7: error: layer kind '{kind}' (plugin 'figures = pfigures' (plug-figures 1.0)) {what}"
    ) in proc.stderr
    assert "hint: this is a fault in the kind's rules, not in the spec" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- 1e: a plugin that imports torch when it loads -------------------------------------------------------

PROBE = """
import sys
sys.argv = ["cnnspec", *sys.argv[1:]]
from cnnspec.cli import run  # main() would end the process before the probe reads it
try:
    run()
except SystemExit as exc:
    print("EXIT", exc.code, "torch" in sys.modules, file=sys.stderr)
"""


def test_a_plugin_that_imports_torch_at_the_top_is_named_in_one_warning(tmp_path: Path) -> None:
    body = """
    @register
    class Heavy(LayerKind):
        kind: ClassVar[str] = "heavy"
    """
    site = install(tmp_path, "plug-torchtop", "ptorch", body, {"heavy": "ptorch"}, first="import torch\n")
    (tmp_path / "spec.yaml").write_text(SPEC.replace("KIND", "heavy"), encoding="utf-8")
    proc = run(site, ["validate", "spec.yaml"], tmp_path, code=PROBE)
    assert "EXIT 0 True" in proc.stderr, proc.stderr  # valid; torch came in with the plugin
    warning = (
        "warning: layer plugin 'heavy = ptorch' (plug-torchtop 1.0) imports torch when it loads, which makes "
        "`cnnspec validate` and `summary` as slow as torch's import"
    )
    assert proc.stderr.count(warning) == 1
    assert "hint: import torch inside the kind's `build` method" in proc.stderr


def test_a_plugin_that_leaves_torch_to_its_builder_gets_no_warning(tmp_path: Path) -> None:
    body = """
    @register
    class Light(LayerKind):
        kind: ClassVar[str] = "light"
    """
    site = install(tmp_path, "plug-light", "plight", body, {"light": "plight"})
    (tmp_path / "spec.yaml").write_text(SPEC.replace("KIND", "light"), encoding="utf-8")
    proc = run(site, ["validate", "spec.yaml"], tmp_path, code=PROBE)
    assert "EXIT 0 False" in proc.stderr, proc.stderr
    assert "warning" not in proc.stderr


# --- 1f: schema and a broken plugin ---------------------------------------------------------------------


def test_schema_reports_a_broken_plugin_instead_of_leaving_its_kinds_out(tmp_path: Path) -> None:
    site = install(
        tmp_path, "plug-raise", "praise", "raise RuntimeError('plugin exploded at import')\n", {"boom": "praise"}
    )
    proc = run(site, ["schema"], tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert (
        "error: layer plugin 'boom = praise' (from plug-raise 1.0): RuntimeError: plugin exploded at import"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    out = tmp_path / "schema.json"
    proc = run(site, ["schema", "--out", str(out)], tmp_path)
    assert proc.returncode == 1 and not out.exists()


# --- 1b: a built module held to its kind's rules ---------------------------------------------------------

MODULES = """
@register
class WrongParams(LayerKind):
    kind: ClassVar[str] = "wrong_params"

    def build(self, inputs):
        import torch
        c = inputs[0][0]
        return torch.nn.Conv2d(c, c, 1)  # 20 parameters on 4 channels; the rules count 0

@register
class WrongShape(LayerKind):
    kind: ClassVar[str] = "wrong_shape"

    def build(self, inputs):
        import torch
        return torch.nn.MaxPool2d(2)  # halves H and W; the rule keeps them

@register
class NotModule(LayerKind):
    kind: ClassVar[str] = "not_module"

    def build(self, inputs):
        return lambda x: x

@register
class Failing(LayerKind):
    kind: ClassVar[str] = "failing"

    def build(self, inputs):
        import torch
        return torch.nn.Linear(3, 3)  # an image in: the forward pass fails

    def params(self, inputs):
        return 12

@register
class Honest(LayerKind):
    kind: ClassVar[str] = "honest"

    def params(self, inputs):
        return inputs[0][0] * inputs[0][0] + inputs[0][0]

    def build(self, inputs):
        import torch
        c = inputs[0][0]
        return torch.nn.Conv2d(c, c, 1)
"""

BUILD = """
import json, sys
import cnnspec
out = {}
for kind in sys.argv[1:]:
    spec = cnnspec.loads(SPEC.replace("KIND", kind), "spec.yaml")
    try:
        model = cnnspec.build(spec)
        out[kind] = "built"
    except cnnspec.CnnspecError as exc:
        out[kind] = exc.format()
print(json.dumps(out))
"""


def test_build_refuses_a_plugin_module_that_disagrees_with_its_rules(tmp_path: Path) -> None:
    site = install(tmp_path, "plug-modules", "pmodules", MODULES, {"modules": "pmodules"})
    kinds = ["wrong_params", "wrong_shape", "not_module", "failing", "honest"]
    proc = run(site, kinds, tmp_path, code=f"SPEC = {SPEC!r}\n" + BUILD)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    who = "(plugin 'modules = pmodules' (plug-modules 1.0))"
    assert got["wrong_params"].startswith(
        f"spec.yaml:6:7: error: layer kind 'wrong_params' {who} built a module with 20 parameters, "
        "but its rules count 0"
    )
    assert got["wrong_shape"].startswith(
        f"spec.yaml:6:7: error: layer kind 'wrong_shape' {who} built a module whose output is 4×4×4 for an "
        "input of 4×8×8, but its shape rule gives 4×8×8"
    )
    assert got["not_module"].startswith(
        f"spec.yaml:6:7: error: layer kind 'not_module' {who} built 'function', not a torch.nn.Module"
    )
    assert got["failing"].startswith(
        f"spec.yaml:6:7: error: layer kind 'failing' {who} built a module that fails on an input of 2×4×8×8 "
        "(zeros): RuntimeError"
    )
    for kind in kinds[:-1]:
        assert "hint: this is a fault in the kind's rules or builder, not in the spec" in got[kind]
    assert got["honest"] == "built"  # a module that keeps its kind's word builds as before
