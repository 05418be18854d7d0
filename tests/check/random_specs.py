"""Random specs for the property tests, and an independent torch interpreter of them.

Used by tests/check/test_check_property.py and tests/build/test_build_property.py.

Random stacks of conv/pool/norm/activation layers with random stride, padding, dilation
and groups, plus residual blocks and add/concat branches, are written as spec data and
loaded through `cnnspec.loads`. Two properties:

- valid specs (built layer by layer, keeping only what torch runs): the checker accepts
  them, and for every layer torch's output shape and parameter count equal the static ones;
- any spec: the checker rejects it exactly when torch fails to run it. torch's verdict comes
  from an independent interpreter below that feeds the spec data straight into torch.nn,
  not from cnnspec's builders.

The domain is image stacks followed by an optional vector head: cnnspec is deliberately
stricter than torch where torch would silently broadcast (linear on an image, groupnorm on a
vector), so those layouts are not generated here, the interpreter's add and multiply broadcast
only a gate's shapes (C×1×1, 1×H×W, 1×1×1), its slices refuse ranges torch would shorten, and
an empty (0×0) output, which torch returns without complaint in a few corners, counts as a failure.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops import StochasticDepth

import cnnspec
from cnnspec.checker.graph import Graph
from cnnspec.errors import ShapeError

Layer = dict[str, dict[str, Any]]  # {kind: params}, as in YAML
# Modest by default (the file runs in seconds); CNNSPEC_PROPERTY_EXAMPLES=2000 for a long hunt.
EXAMPLES = int(os.environ.get("CNNSPEC_PROPERTY_EXAMPLES", "60"))
PROFILE = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -----------------------------------------------------------------------------

small = st.integers
pair_or_int = lambda lo, hi: small(lo, hi) | st.lists(small(lo, hi), min_size=2, max_size=2)  # noqa: E731

ACTIVATIONS: list[Layer] = [
    {"relu": {}},
    {"gelu": {}},
    {"silu": {}},
    {"tanh": {}},
    {"sigmoid": {}},
    {"identity": {}},
    {"leaky_relu": {"negative_slope": 0.1}},
    {"elu": {"alpha": 0.5}},
    {"dropout": {"p": 0.1}},
    {"dropout2d": {"p": 0.1}},
    {"relu6": {}},
    {"hardswish": {}},
    {"hardsigmoid": {}},
    {"mish": {}},
    {"hardtanh": {"min_val": -0.5, "max_val": 2.0}},
    {"softplus": {"beta": 2.0}},
    {"prelu": {}},
    {"scale": {"init": 0.5}},
    {"drop_path": {"p": 0.2}},
]


@st.composite
def conv2d(draw: st.DrawFn) -> Layer:
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
    # Usually a multiple of groups; sometimes anything (then groups may not divide it).
    out = groups * draw(small(1, 3)) if draw(st.booleans()) or groups == 1 else draw(small(1, 8))
    params = draw(
        st.fixed_dictionaries(
            {"out_channels": st.just(out), "kernel_size": pair_or_int(1, 5)},
            optional={
                "stride": pair_or_int(1, 3),
                "padding": pair_or_int(0, 3) | st.sampled_from(["same", "valid"]),
                "dilation": pair_or_int(1, 3),
                "bias": st.booleans(),
                "padding_mode": st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
            },
        )
    )
    if groups > 1:
        params["groups"] = groups
    return {"conv2d": params}


conv_transpose2d = st.fixed_dictionaries(
    {"out_channels": small(1, 6), "kernel_size": pair_or_int(1, 3)},
    optional={
        "stride": pair_or_int(1, 3),
        "padding": pair_or_int(0, 2),
        "output_padding": small(0, 2),
        "dilation": small(1, 2),
        "groups": st.sampled_from([1, 2]),
    },
).map(lambda p: {"conv_transpose2d": p})

maxpool2d = st.fixed_dictionaries(
    {"kernel_size": pair_or_int(1, 4)},
    optional={
        "stride": pair_or_int(1, 3),
        "padding": small(0, 2),
        "dilation": small(1, 2),
        "ceil_mode": st.booleans(),
    },
).map(lambda p: {"maxpool2d": p})

avgpool2d = st.fixed_dictionaries(
    {"kernel_size": pair_or_int(1, 4)},
    optional={
        "stride": pair_or_int(1, 3),
        "padding": small(0, 2),
        "ceil_mode": st.booleans(),
        "count_include_pad": st.booleans(),
    },
).map(lambda p: {"avgpool2d": p})

norms = st.one_of(
    st.just({"batchnorm2d": {}}),
    st.builds(lambda g: {"groupnorm": {"num_groups": g}}, small(1, 4)),
    st.just({"layernorm": {}}),
)

upsample = st.one_of(
    small(1, 2).map(lambda s: {"upsample": {"scale_factor": s}}),
    st.lists(small(1, 9), min_size=2, max_size=2).map(lambda s: {"upsample": {"size": s, "mode": "bilinear"}}),
)

# Channel layers of issue 12: ranges that may run past the channels, groups and chunks that may not divide.
channel_slice = st.one_of(
    st.builds(lambda a, n: {"slice": {"start": a, "end": a + n}}, small(0, 4), small(1, 4)),
    st.builds(lambda n, i: {"slice": {"chunks": n, "index": i % n}}, small(1, 4), small(0, 3)),
)
channel_shuffle = small(1, 4).map(lambda g: {"channel_shuffle": {"groups": g}})
# A 1×1 map: merged with a full one, add and multiply broadcast it (a squeeze-excite gate's shape).
SQUEEZE: Layer = {"adaptive_avgpool2d": {"output_size": 1}}

image_layer = st.one_of(
    conv2d(),
    conv2d(),
    maxpool2d,
    avgpool2d,
    norms,
    st.sampled_from(ACTIVATIONS),
    conv_transpose2d,
    upsample,
    channel_slice,
    channel_shuffle,
)
chain = st.lists(image_layer, min_size=1, max_size=3)


@st.composite
def vector_head(draw: st.DrawFn) -> list[Layer]:
    """flatten or global_avgpool, linear, and maybe a vector layer."""
    to_vector: Layer = {draw(st.sampled_from(["flatten", "global_avgpool"])): {}}
    after: list[Layer] = draw(st.sampled_from([[], [{"relu": {}}], [{"batchnorm1d": {}}], [{"dropout": {"p": 0.2}}]]))
    return [to_vector, {"linear": {"out_features": draw(small(1, 5))}}, *after]


head: st.SearchStrategy[list[Layer]] = st.just([]) | vector_head()


@st.composite
def segment(draw: st.DrawFn, *, auto_shortcut: bool) -> list[Layer]:
    """One layer, a residual block, or two branches merged by add/concat: spec layers without ids yet."""
    shape = draw(st.sampled_from(["layer", "layer", "residual", "branches"]))
    if shape == "layer":
        return [draw(image_layer)]
    if shape == "residual":
        shortcuts: list[Any] = ["identity", draw(chain)] + (["auto"] * 4 if auto_shortcut else [])
        block: dict[str, Any] = {"body": draw(chain), "shortcut": draw(st.sampled_from(shortcuts))}
        if draw(st.booleans()):
            block["activation"] = "relu"
        return [{"residual": block}]
    merge = draw(st.sampled_from(["add", "concat", "multiply"]))
    b = draw(st.lists(image_layer, max_size=2)) + draw(st.sampled_from([[], [], [SQUEEZE]]))
    return [{"__branches__": {"a": draw(chain), "b": b, "merge": merge}}]


# --- turning segments into spec layers (ids wire the branches) ------------------------------


class Ids:
    def __init__(self) -> None:
        self.counter = itertools.count()

    def new(self) -> str:
        return f"n{next(self.counter)}"


def with_id(layer: Layer, node_id: str, inputs: list[str] | None = None) -> Layer:
    ((kind, params),) = layer.items()
    extra: dict[str, Any] = {"id": node_id} | ({"inputs": inputs} if inputs else {})
    return {kind: {**params, **extra}}


def lower(seg: list[Layer], ids: Ids) -> list[Layer]:
    """Spec layers for a segment: branches become a fork, two chains and a merge."""
    out: list[Layer] = []
    for layer in seg:
        if "__branches__" not in layer:
            out.append(with_id(layer, ids.new()))
            continue
        b = layer["__branches__"]
        fork = ids.new()
        out.append({"identity": {"id": fork}})
        a_layers = [with_id(x, ids.new()) for x in b["a"]]
        b_layers = [with_id(x, ids.new()) for x in b["b"]]
        if b_layers:
            b_layers[0] = with_id(b_layers[0], next(iter(b_layers[0].values()))["id"], [fork])
        out += a_layers + b_layers
        a_end = next(iter(a_layers[-1].values()))["id"]
        b_end = next(iter(b_layers[-1].values()))["id"] if b_layers else fork
        out.append({b["merge"]: {"id": ids.new(), "inputs": [a_end, b_end]}})
    return out


def spec_text(shape: tuple[int, int, int], layers: list[Layer]) -> str:
    c, h, w = shape
    data = {"name": "random", "model": {"input": {"channels": c, "height": h, "width": w}, "layers": layers}}
    return json.dumps(data)  # JSON is YAML: cnnspec.loads reads it like any spec file


# --- an independent torch interpreter of the same spec data ------------------------------------

ModuleFor = Callable[[dict[str, Any], torch.Tensor], nn.Module]

TORCH: dict[str, ModuleFor] = {
    "conv2d": lambda p, x: nn.Conv2d(x.shape[1], **p),
    "conv_transpose2d": lambda p, x: nn.ConvTranspose2d(x.shape[1], **p),
    "maxpool2d": lambda p, x: nn.MaxPool2d(**p),
    "avgpool2d": lambda p, x: nn.AvgPool2d(**p),
    "batchnorm2d": lambda p, x: nn.BatchNorm2d(x.shape[1]),
    "batchnorm1d": lambda p, x: nn.BatchNorm1d(x.shape[1]),
    "groupnorm": lambda p, x: nn.GroupNorm(p["num_groups"], x.shape[1]),
    "layernorm": lambda p, x: nn.LayerNorm(list(x.shape[1:])),
    "upsample": lambda p, x: nn.Upsample(**p),
    "relu": lambda p, x: nn.ReLU(),
    "gelu": lambda p, x: nn.GELU(),
    "silu": lambda p, x: nn.SiLU(),
    "tanh": lambda p, x: nn.Tanh(),
    "sigmoid": lambda p, x: nn.Sigmoid(),
    "identity": lambda p, x: nn.Identity(),
    "leaky_relu": lambda p, x: nn.LeakyReLU(**p),
    "elu": lambda p, x: nn.ELU(**p),
    "dropout": lambda p, x: nn.Dropout(**p),
    "dropout2d": lambda p, x: nn.Dropout2d(**p),
    "flatten": lambda p, x: nn.Flatten(),
    "global_avgpool": lambda p, x: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    "linear": lambda p, x: nn.Linear(x.shape[1], **p),
    "relu6": lambda p, x: nn.ReLU6(),
    "hardswish": lambda p, x: nn.Hardswish(),
    "hardsigmoid": lambda p, x: nn.Hardsigmoid(),
    "mish": lambda p, x: nn.Mish(),
    "hardtanh": lambda p, x: nn.Hardtanh(**p),
    "softplus": lambda p, x: nn.Softplus(**p),
    "prelu": lambda p, x: nn.PReLU(),
    "scale": lambda p, x: _Scale(x.shape[1], **p),
    "drop_path": lambda p, x: StochasticDepth(p["p"], "row"),
    "channel_shuffle": lambda p, x: nn.ChannelShuffle(**p),
    "slice": lambda p, x: _StrictSlice(x.shape[1], **p),
    "adaptive_avgpool2d": lambda p, x: nn.AdaptiveAvgPool2d(**p),
}


class _Scale(nn.Module):
    """ConvNeXt's layer scale, as torchvision's CNBlock holds it: a (C, 1, 1) parameter."""

    def __init__(self, channels: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _StrictSlice(nn.Module):
    """x[:, start:end] or x.chunk(chunks, 1)[index], refusing what torch would quietly shorten (a range past
    the channels, chunks of unequal size): a slice that silently loses channels is a mistake cnnspec refuses."""

    def __init__(self, channels: int, **p: int):
        super().__init__()
        if "chunks" in p:
            if channels % p["chunks"]:
                raise ValueError(f"{p['chunks']} chunks of {channels} channels")
            size = channels // p["chunks"]
            self.range = (p["index"] * size, (p["index"] + 1) * size)
        else:
            if p["end"] > channels:
                raise ValueError(f"channels {p['start']}:{p['end']} of {channels}")
            self.range = (p["start"], p["end"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.range[0] : self.range[1]]


def _projection(x: torch.Tensor, target: torch.Size) -> nn.Module:
    """torchvision's downsample: a 1×1 conv whose stride gives the target size, found by trying strides."""
    strides = []
    for axis in (2, 3):
        probe, one = torch.zeros(1, 1, x.shape[axis], 1), torch.ones(1, 1, 1, 1)
        sizes = {s: nn.functional.conv2d(probe, one, stride=(s, 1)).shape[2] for s in range(1, x.shape[axis] + 1)}
        fits = [s for s, size in sizes.items() if size == target[axis]]
        if not fits:
            raise RuntimeError("no 1×1 conv maps the shortcut onto the body")
        strides.append(fits[0])
    conv = nn.Conv2d(x.shape[1], target[1], 1, stride=(strides[0], strides[1]), bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(target[1]))


def gated(op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """op(a, b) where one operand is the other's shape, or that shape with every spatial axis 1 (a gate per
    channel), the channel axis 1 (per position), or both (one value). torch broadcasts more (a 1×W row, one
    channel of a vector); cnnspec refuses those on purpose, as wiring mistakes."""
    big, small = (a, b) if a.numel() >= b.numel() else (b, a)
    n, c, h, w = big.shape
    if small.shape not in ((n, c, h, w), (n, c, 1, 1), (n, 1, h, w), (n, 1, 1, 1)):
        raise RuntimeError(f"element-wise merge of {tuple(a.shape)} and {tuple(b.shape)}")
    return op(a, b)


class TorchRun:
    """Runs spec layers with plain torch.nn modules; counts their parameters. Raises where torch fails."""

    def __init__(self) -> None:
        self.params = 0

    def module(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        self.params += sum(p.numel() for p in m.parameters())
        out = m.eval()(x)
        if out.numel() == 0:  # e.g. conv_transpose2d can return 0×0 without an error: useless, so refused
            raise RuntimeError(f"{type(m).__name__} returned an empty {tuple(out.shape)} tensor")
        return out

    def chain(self, layers: list[Layer], x: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        for layer in layers:
            ((kind, raw),) = layer.items()
            params = {k: v for k, v in raw.items() if k not in ("id", "inputs")}
            args = [values[i] for i in raw["inputs"]] if "inputs" in raw else [x]
            if kind == "add":
                x = gated(torch.add, args[0], args[1])
            elif kind == "multiply":
                x = gated(torch.mul, args[0], args[1])
            elif kind == "concat":
                x = torch.cat(args, dim=1)
            elif kind == "residual":
                body = self.chain(params["body"], args[0], {})
                sc = params["shortcut"]
                if sc == "identity":
                    short = args[0]
                elif sc == "auto":
                    same = body.shape == args[0].shape
                    short = args[0] if same else self.module(_projection(args[0], body.shape), args[0])
                else:
                    short = self.chain(sc, args[0], {})
                x = gated(torch.add, body, short)  # a residual's add broadcasts as add does
                if params.get("activation"):
                    x = torch.relu(x)
            else:
                x = self.module(TORCH[kind](params, args[0]), args[0])
            if "id" in raw:
                values[raw["id"]] = x
        return x


def torch_verdict(shape: tuple[int, int, int], layers: list[Layer]) -> tuple[torch.Tensor, int] | Exception:
    run = TorchRun()
    x = torch.randn(2, *shape)
    try:
        with torch.no_grad():
            return run.chain(layers, x, {"input": x}), run.params
    except (RuntimeError, ValueError) as exc:  # construction (ValueError) or forward (RuntimeError) failed
        return exc


def cnnspec_verdict(text: str) -> Graph | ShapeError:
    spec = cnnspec.loads(text, "random.yaml")  # a SpecError here is a bug in the generator: let it raise
    try:
        return cnnspec.check(spec)
    except ShapeError as exc:
        return exc


# --- valid specs, built by keeping only what torch runs ----------------------------------------
