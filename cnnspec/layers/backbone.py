"""A torchvision backbone with its classifier cut off, known statically by a table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from cnnspec.layers.base import LayerKind, Shape, ShapeProblem, Window, register

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class BackboneFacts:
    features: int  # length of the feature vector once the classifier is cut off
    params: int  # parameters without the classifier
    gmacs_224: float  # torchvision's GFLOPS figure (really multiply-accumulates) at 224×224
    classifier: str  # attribute path of the classifier that is replaced by Identity
    min_size: int = 1  # smallest input H and W: unpadded downsampling (convnext's stem, densenet's pools) needs this
    # Batch norm down to the deepest maps, reached by 5 halvings: padded stride-2 convs and pools
    # halve rounding up, densenet's last 3 (its transitions' 2×2 average pools) rounding down.
    batch_norm: bool = True  # convnext normalises with LayerNorm
    floor_halvings: int = 0

    def deepest_map(self, size: int) -> int:
        """The side of the smallest map the backbone's batch norms see, for an input side of `size`."""
        for i in range(DOWNSAMPLINGS):
            size = size // 2 if i >= DOWNSAMPLINGS - self.floor_halvings else (size - 1) // 2 + 1
        return size


# A `weights` value with one of these endings names a local state_dict file (relative to the spec's folder).
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".safetensors")

# Every tabulated backbone downsamples by 32 (stride 2, five times) before its classifier.
DOWNSAMPLINGS = 5


# Checked against torchvision by tests/build/test_build_backbones.py.
BACKBONES: dict[str, BackboneFacts] = {
    "resnet18": BackboneFacts(512, 11_176_512, 1.814, "fc"),
    "resnet34": BackboneFacts(512, 21_284_672, 3.664, "fc"),
    "resnet50": BackboneFacts(2048, 23_508_032, 4.089, "fc"),
    "resnet101": BackboneFacts(2048, 42_500_160, 7.801, "fc"),
    "mobilenet_v2": BackboneFacts(1280, 2_223_872, 0.301, "classifier"),
    "mobilenet_v3_small": BackboneFacts(576, 927_008, 0.057, "classifier"),
    "mobilenet_v3_large": BackboneFacts(960, 2_971_952, 0.217, "classifier"),
    "efficientnet_b0": BackboneFacts(1280, 4_007_548, 0.386, "classifier"),
    "efficientnet_b1": BackboneFacts(1280, 6_513_184, 0.687, "classifier"),
    "convnext_tiny": BackboneFacts(768, 27_820_128, 4.456, "classifier.2", min_size=32, batch_norm=False),
    "regnet_y_400mf": BackboneFacts(440, 3_903_144, 0.402, "fc"),
    "shufflenet_v2_x1_0": BackboneFacts(1024, 1_253_604, 0.145, "fc"),
    "densenet121": BackboneFacts(1024, 6_953_856, 2.834, "classifier", min_size=29, floor_halvings=3),
}

# The `model` field accepts exactly the tabulated names (the JSON Schema's enum, the error's list).
if TYPE_CHECKING:
    BackboneName = str
else:
    BackboneName = Literal[tuple(BACKBONES)]


@register
class Torchvision(LayerKind):
    """A torchvision model without its classifier; outputs a feature vector."""

    kind: ClassVar[str] = "torchvision"
    macs_estimated: ClassVar[bool] = True
    model: BackboneName = Field(description="torchvision model name.")
    weights: str = Field(
        "none",
        description="'none' (random init), a torchvision weights name (DEFAULT, IMAGENET1K_V1, …; needs the "
        "torch hub cache or network), or a local .pth/.safetensors file of the model's state_dict (a relative "
        "path is relative to the spec file's folder).",
        min_length=1,
    )
    freeze: bool = Field(False, description="Freeze the backbone's parameters (train only what follows).")

    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.image(inputs)
        if c != 3:
            raise ShapeProblem(
                f"torchvision {self.model} expects 3 input channels, got {c}",
                hint="set model.input.channels: 3 and use an RGB dataset",
            )
        smallest = BACKBONES[self.model].min_size
        if min(h, w) < smallest:
            raise ShapeProblem(
                f"torchvision {self.model} needs an input of at least {smallest}×{smallest}, got {h}×{w}",
                hint="resize the images (data.resize) or downsample less before the backbone",
            )
        return (BACKBONES[self.model].features,)

    def params(self, inputs: Sequence[Shape]) -> int:
        return BACKBONES[self.model].params

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        # Scaled from torchvision's 224×224 figure: convolution cost grows with the pixel count.
        _, h, w = inputs[0]
        return round(BACKBONES[self.model].gmacs_224 * 1e9 * (h * w) / (224 * 224))

    def trainable(self) -> bool:
        return not self.freeze

    def batchnorm_map(self, inputs: Sequence[Shape], output: Shape) -> tuple[int, ...] | None:
        facts = BACKBONES[self.model]
        _, h, w = self.image(inputs)
        return (facts.deepest_map(h), facts.deepest_map(w)) if facts.batch_norm else None

    def tensors(self, inputs: Sequence[Shape]) -> dict[str, Shape] | None:
        # Only the ResNets are tabulated; other backbones' tensors are known once built.
        return resnet_tensors(self.model) if self.model in RESNET_STAGES else None

    def window(self, inputs: Sequence[Shape], output: Shape) -> Window:
        # Its features are pooled from a map DOWNSAMPLINGS halvings down: each step of that map is 32 pixels.
        step = float(2**DOWNSAMPLINGS)
        return Window(stride=(step, step), global_=True)

    def inner_layers(self) -> dict[str, object] | None:
        return backbone_layers(self.model)

    def with_files(self, resolve: Callable[[str], str]) -> LayerKind:
        if not self.weights.endswith(WEIGHT_FILE_SUFFIXES):  # 'none' or a torchvision weights name
            return self
        return self.model_copy(update={"weights": resolve(self.weights)})

    def build(self, inputs: Sequence[Shape]) -> nn.Module:
        from cnnspec.builder.backbone import build_backbone

        return build_backbone(self.model, self.weights, self.freeze, BACKBONES[self.model].classifier)


# torchvision's ResNets: (block, blocks per stage); the stages have 64, 128, 256, 512 planes.
RESNET_STAGES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def resnet_tensors(model: str) -> dict[str, Shape]:
    """state_dict shapes of a torchvision ResNet with its `fc` cut off (torchvision/models/resnet.py)."""
    from cnnspec.layers.dense import batchnorm_tensors

    block, counts = RESNET_STAGES[model]
    expansion = 1 if block == "basic" else 4
    out: dict[str, Shape] = {"conv1.weight": (64, 3, 7, 7)} | batchnorm_tensors(64, prefix="bn1.")
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True), start=1):
        for i in range(count):
            p = f"layer{stage}.{i}."
            stride = 2 if stage > 1 and i == 0 else 1
            if block == "basic":
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            else:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * expansion, planes, 1)]
            for j, (c_out, c_in, k) in enumerate(convs, start=1):
                out[f"{p}conv{j}.weight"] = (c_out, c_in, k, k)
                out |= batchnorm_tensors(c_out, prefix=f"{p}bn{j}.")
            if stride != 1 or inplanes != planes * expansion:
                out[f"{p}downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                out |= batchnorm_tensors(planes * expansion, prefix=f"{p}downsample.1.")
            inplanes = planes * expansion
    return out


def backbone_layers(model: str) -> dict[str, object] | None:
    """The backbone written as cnnspec layers (a spec's `model` section without `input`), its ids
    torchvision's module names, down to the pooled feature vector its cut-off classifier took; None for
    a backbone known only by its table (BACKBONES). `summary --depth` shows a backbone through it.

    Only the ResNets (RESNET_STAGES) are written out: torchvision/models/resnet.py's BasicBlock and
    Bottleneck, whose `downsample` is the residual's `auto` shortcut (1×1 conv + batch norm when the
    shape changes). tests/render/test_render_depth.py checks the shapes against torchvision's modules."""
    if model not in RESNET_STAGES:
        return None
    block, counts = RESNET_STAGES[model]

    def conv(id_: str, width: str, k: int, stride: int | str = 1) -> dict[str, object]:
        spec = {"id": id_, "out_channels": width, "kernel_size": k, "stride": stride, "padding": k // 2, "bias": False}
        return {"conv2d": spec}

    if block == "basic":
        body = [conv("conv1", "$width", 3, "$stride"), {"batchnorm2d": {"id": "bn1"}}, "relu"]
        body += [conv("conv2", "$width", 3), {"batchnorm2d": {"id": "bn2"}}]
        expansion = 1
    else:
        body = [conv("conv1", "$width", 1), {"batchnorm2d": {"id": "bn1"}}, "relu"]
        body += [conv("conv2", "$width", 3, "$stride"), {"batchnorm2d": {"id": "bn2"}}, "relu"]
        body += [conv("conv3", "$out", 1), {"batchnorm2d": {"id": "bn3"}}]
        expansion = 4
    params = {"width": None, "out": None, "stride": 1}
    stem = {"id": "conv1", "out_channels": 64, "kernel_size": 7, "stride": 2, "padding": 3, "bias": False}
    layers: list[object] = [
        {"conv2d": stem},
        {"batchnorm2d": {"id": "bn1"}},
        {"relu": {"id": "relu"}},
        {"maxpool2d": {"id": "maxpool", "kernel_size": 3, "stride": 2, "padding": 1}},
    ]
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True), start=1):
        uses = [
            {
                "block": {
                    "id": str(i),
                    "name": "unit",
                    "args": {"width": planes, "out": planes * expansion, "stride": 2 if stage > 1 and i == 0 else 1},
                }
            }
            for i in range(count)
        ]
        layers.append({"group": {"id": f"layer{stage}", "layers": uses}})
    layers += [{"adaptive_avgpool2d": {"id": "avgpool", "output_size": 1}}, "flatten"]
    unit = {"params": params, "layers": [{"residual": {"body": body, "activation": "relu"}}]}
    return {"blocks": {"unit": unit}, "layers": layers}
