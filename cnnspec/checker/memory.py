"""Memory estimates from the checked graph: weights, activations per image, data held in memory; no torch.

Figures are fp32 bytes, like torchinfo's "Params size" and "Forward/backward pass size": the
weights are the parameters × 4; the forward/backward pass of one image is every layer's output
(the input included) × 4, twice (the output and its gradient). They are estimates (a torchvision
backbone counts only its output; kernels' workspaces are left out), good enough to refuse what
cannot run: `validate` refuses a spec whose weights, one image's pass, one image's training
augmentation (random_crop's padded image), or in-memory dataset is over the limit
(`CNNSPEC_MAX_MEMORY`, default 1 TiB), and `train` refuses one that does not fit
the device it would train on (cnnspec/training/memory.py).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from cnnspec.checker.data import DATASET_SHAPES
from cnnspec.checker.graph import Graph, Node
from cnnspec.datasets import DATASETS
from cnnspec.errors import Diagnostic, Location
from cnnspec.layers.base import pair
from cnnspec.spec.model import Spec

BYTES_FP32 = 4
LIMIT_ENV = "CNNSPEC_MAX_MEMORY"
DEFAULT_LIMIT = 1 << 40  # 1 TiB

# Images in the train and test splits of each registered dataset (held in memory as uint8); each
# dataset of cnnspec.datasets says its own.
DATASET_IMAGES = {name: cls.images for name, cls in DATASETS.items()}

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "pib": 1 << 50,
}


@dataclass(frozen=True)
class DataMemory:
    """The dataset's bytes in memory while training, and what they are made of (for messages)."""

    bytes: int
    what: str
    path: tuple[Hashable, ...]  # the spec key that decides it, for the error's location


@dataclass(frozen=True)
class AugmentMemory:
    """Bytes per image of the training augmentation's largest step (what it works on and gives)."""

    bytes: int
    what: str
    path: tuple[Hashable, ...]  # the augmentation's spec key, for the error's location


@dataclass(frozen=True)
class MemoryEstimate:
    """fp32 bytes of a model's weights and of one image's forward/backward pass."""

    weights: int
    forward_backward: int  # per image: every layer's output and its gradient
    heaviest_weights: Node | None  # the layer holding the most parameters
    heaviest_output: Node | None  # the layer with the largest output
    data: DataMemory
    augment: AugmentMemory = AugmentMemory(0, "no augmentation", ())


def format_bytes(n: float) -> str:
    """1536 → '1.50 KiB' (binary units, like `free -h`)."""
    for unit, size in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:,.2f} {unit}" if value < 1e6 else f"{value:.3g} {unit}"
    return f"{int(n)} B"


def parse_size(text: str) -> int:
    """'1TiB', '500 GB', '2e12' (bytes), '64MiB' → bytes; ValueError otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(text)
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return int(value)


def memory_limit() -> tuple[int | None, Diagnostic | None]:
    """The limit validate applies (CNNSPEC_MAX_MEMORY, default 1 TiB); a diagnostic when it is not a size."""
    raw = os.environ.get(LIMIT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_LIMIT, None
    try:
        return parse_size(raw), None
    except ValueError:
        return None, Diagnostic(
            f"{LIMIT_ENV}={raw!r} is not a size",
            Location(LIMIT_ENV),
            hint="write bytes with an optional unit: 1TiB, 500GB, 64MiB, 2e12",
        )


def available_cpu_memory() -> int | None:
    """Bytes this process can still allocate on the CPU; None when the system does not say.

    The kernel's MemAvailable (/proc/meminfo), capped by the cgroup's memory.max when the process
    runs in one. Read from files alone (no torch): train, evaluate and bench use it.
    """
    free: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        free = None
    try:  # cgroup v2: a container's own limit
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            room = max(int(limit) - used, 0)
            free = room if free is None else min(free, room)
    except (OSError, ValueError):
        pass
    return free


def estimate(graph: Graph) -> MemoryEstimate:
    """The memory figures of a checked graph and its spec's data section."""
    nodes = graph.nodes
    outputs = math.prod(graph.input_shape) + sum(math.prod(n.output_shape) for n in nodes)
    return MemoryEstimate(
        weights=graph.total_params * BYTES_FP32,
        forward_backward=2 * outputs * BYTES_FP32,
        heaviest_weights=max(nodes, key=lambda n: n.params, default=None),
        heaviest_output=max(nodes, key=lambda n: math.prod(n.output_shape), default=None),
        data=data_memory(graph.spec),
        augment=augment_memory(graph.spec),
    )


def augment_memory(spec: Spec) -> AugmentMemory:
    """The training augmentation's largest step, per image: the image it works on (random_crop's padded
    image) and the one it gives. uint8 while only pixel-moving steps have run (the batch stays uint8
    until then), float32 from the first step that computes new values; mixup and cutmix, which mix the
    finished batch, are left out."""
    data = spec.data
    if data is None or not data.augment:
        return AugmentMemory(0, "no augmentation", ())
    c, h, w = spec.model.input.shape
    native = DATASET_SHAPES.get(data.dataset.name)
    if native is not None:
        c, h, w = native
    size = pair(data.resize) if data.resize is not None else (h, w)
    as_uint8 = True
    largest = AugmentMemory(0, "no augmentation", ())
    for index, item in enumerate(data.augment):
        op = item.op
        if op.mixes_labels:
            continue
        as_uint8 = as_uint8 and op.moves_pixels
        work, out = op.working_size(size), op.output_size(size)
        per_image = (1 if as_uint8 else BYTES_FP32) * c * (work[0] * work[1] + out[0] * out[1])
        if per_image > largest.bytes:
            dtype = "uint8" if as_uint8 else "float32"
            what = f"{item.name} works on {c}×{work[0]}×{work[1]} {dtype} images"
            largest = AugmentMemory(per_image, what, ("data", "augment", index, item.name))
        size = out
    return largest


def data_memory(spec: Spec) -> DataMemory:
    """Bytes of the dataset in memory while training (uint8 images; synthetic's float prototypes too)."""
    data = spec.data
    if data is None:
        return DataMemory(0, "no data section", ())
    name = data.dataset.name
    c, h, w = spec.model.input.shape
    native = DATASET_SHAPES.get(name)
    if native is not None:
        c, h, w = native
    resized = pair(data.resize) if data.resize is not None else None
    if DATASETS[name].streamed:  # a batch at a time
        rh, rw = resized or (h, w)
        return DataMemory(data.batch_size * c * rh * rw, f"a batch of {data.batch_size} decoded images", ("data",))
    extra = 0
    if name == "synthetic":
        n, k = data.dataset.num_samples, data.dataset.num_classes
        images = n + max(n // 5, k)
        extra = k * c * h * w * BYTES_FP32  # one float prototype image per class
        what = f"{images:,} synthetic images of {c}×{h}×{w} and {k:,} float prototypes"
        path: tuple[Hashable, ...] = (
            ("data", "dataset", "num_samples") if n >= k else ("data", "dataset", "num_classes")
        )
    else:
        images = DATASET_IMAGES.get(name, 0)
        what = f"{images:,} images of {c}×{h}×{w}"
        path = ("data", "dataset", "name")
    total = images * c * h * w + extra
    if resized is not None and resized != (h, w):
        total += images * c * resized[0] * resized[1]
        what += f", resized to {resized[0]}×{resized[1]}"
        path = ("data", "resize")
    return DataMemory(total, what, path)


def check_memory(spec: Spec, graph: Graph) -> list[Diagnostic]:
    """Errors for weights, one image's pass, or an in-memory dataset over the limit."""
    limit, problem = memory_limit()
    if problem is not None or limit is None:
        return [problem] if problem is not None else []
    est = estimate(graph)
    shown = format_bytes(limit)
    hint = f"make it smaller; the limit is {LIMIT_ENV} (now {shown}; e.g. {LIMIT_ENV}=4TiB to raise it)"
    out: list[Diagnostic] = []
    heavy = est.heaviest_weights
    if est.weights > limit and heavy is not None:
        out.append(
            Diagnostic(
                f"the model's weights need {format_bytes(est.weights)} ({graph.total_params:,} params × 4 bytes),"
                f" over the limit of {shown}",
                heavy.location,
                notes=(f"'{heavy.id}' ({heavy.kind}) holds {heavy.params:,} ({format_bytes(heavy.params * 4)})",),
                hint=hint,
            )
        )
    big = est.heaviest_output
    if est.forward_backward > limit and big is not None:
        size = math.prod(big.output_shape) * BYTES_FP32
        shape = "×".join(map(str, big.output_shape))
        out.append(
            Diagnostic(
                f"the forward/backward pass of one image needs {format_bytes(est.forward_backward)}"
                f" (every layer's fp32 output and its gradient), over the limit of {shown}",
                big.location,
                notes=(f"'{big.id}' ({big.kind}) alone outputs {shape} = {format_bytes(size)} per image",),
                hint=hint,
            )
        )
    if est.augment.bytes > limit:
        out.append(
            Diagnostic(
                f"the training augmentation of one image needs {format_bytes(est.augment.bytes)}"
                f" ({est.augment.what}), over the limit of {shown}",
                spec.source.locate(est.augment.path),
                hint=hint,
            )
        )
    if est.data.bytes > limit:
        out.append(
            Diagnostic(
                f"the dataset needs {format_bytes(est.data.bytes)} in memory ({est.data.what}),"
                f" over the limit of {shown}",
                spec.source.locate(est.data.path),
                hint=hint,
            )
        )
    return out
