"""Static checks of the data section against the model's input."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import replace
from pathlib import Path

from cnnspec.augments.base import AugmentItemBase, AugmentKind, ImageSize
from cnnspec.checker.graph import Graph
from cnnspec.datasets import DATASETS
from cnnspec.errors import DataError, Diagnostic
from cnnspec.layers.base import pair
from cnnspec.spec.base import Size
from cnnspec.spec.model import Spec

# The channel counts an image folder's files can be converted to (PIL modes L and RGB).
FOLDER_CHANNELS = (1, 3)

# Image shape (C, H, W) of each registered dataset; None: given by the spec. A view of
# cnnspec.datasets, where each dataset says its own.
DATASET_SHAPES: dict[str, tuple[int, int, int] | None] = {name: cls.shape for name, cls in DATASETS.items()}


def check_data(spec: Spec) -> list[Diagnostic]:
    """Dataset and augmentation shapes must end at the model's input shape."""
    data = spec.data
    if data is None:
        return []
    src = spec.source
    want = spec.model.input.shape
    name = data.dataset.name
    dataset = DATASETS[name]
    native = dataset.shape
    out: list[Diagnostic] = []
    if dataset.streamed and want[0] not in FOLDER_CHANNELS:
        out.append(
            Diagnostic(
                f"{name} images are read as grey (1 channel) or RGB (3) but model.input has {want[0]} channels",
                src.locate(("model", "input", "channels")),
                hint="set model.input.channels to 1 or 3, or use the synthetic dataset",
            )
        )
    channels = native[0] if native else want[0]
    size = (native[1], native[2]) if native else (want[1], want[2])
    if native and channels != want[0]:
        out.append(
            Diagnostic(
                f"{dataset.title} images have {channels} channel{'s' if channels > 1 else ''} "
                f"but model.input has {want[0]}",
                src.locate(("model", "input", "channels")),
                notes=(f"{dataset.title} is {native[0]}×{native[1]}×{native[2]}",),
                hint=f"set model.input.channels: {channels}",
            )
        )
    if data.resize is not None:
        size = pair(data.resize)
    where: tuple[str | int, ...] = ("data", "resize") if data.resize is not None else ("data", "dataset", "name")
    for index, item in enumerate(data.augment):
        op, at = item.op, ("data", "augment", index, item.name)
        problem = op.size_problem(size)
        if problem is not None:
            field = (problem.field,) if problem.field else ()
            out.append(Diagnostic(problem.message, src.locate((*at, *field)), notes=problem.notes, hint=problem.hint))
        size = op.output_size(size)
        if op.size_field is not None:
            where = (*at, op.size_field)
    if size != (want[1], want[2]):
        native_note: tuple[str, ...] = ()
        if native:
            native_note = (f"{dataset.title} is {native[0]}×{native[1]}×{native[2]}",)
        start = (native[1], native[2]) if native else (want[1], want[2])
        out.append(
            Diagnostic(
                f"the data pipeline gives {size[0]}×{size[1]} images but model.input is {want[1]}×{want[2]}",
                src.locate(where),
                notes=native_note,
                hint=_size_hint(start, data.resize, data.augment, size, (want[1], want[2])),
            )
        )
    return out


def _pipeline_size(start: ImageSize, resize: ImageSize | None, ops: Sequence[AugmentKind]) -> ImageSize | None:
    """The size the pipeline gives, or None when one of its steps refuses its input size."""
    size = resize if resize is not None else start
    for op in ops:
        if op.size_problem(size) is not None:
            return None
        size = op.output_size(size)
    return size


def _size_hint(
    start: ImageSize, resize: Size | None, items: Sequence[AugmentItemBase], size: ImageSize, want: ImageSize
) -> str:
    """How to make the pipeline give `want`: model.input set to what it gives, or the edit of the data
    section that gives `want`, each edit tried on the pipeline first (a crop's size alone cannot grow past
    its image: then data.resize as well)."""
    ops = [item.op for item in items]
    hint = f"set model.input height/width to {size[0]}×{size[1]}"
    last = max((i for i, op in enumerate(ops) if op.size_field is not None), default=None)
    resized = f"data.resize: [{want[0]}, {want[1]}]"
    if last is None:
        if _pipeline_size(start, want, ops) == want:
            hint += f", or {resized}"
        return hint
    op, field = ops[last], ops[last].size_field
    assert field is not None
    value: Size = want[0] if want[0] == want[1] else [want[0], want[1]]
    shaped = [*ops[:last], op.model_copy(update={field: value}), *ops[last + 1 :]]
    setting = f"{items[last].name}'s {field}: {value}"
    if _pipeline_size(start, pair(resize) if resize is not None else None, shaped) == want:
        hint += f", or {setting}"
    elif _pipeline_size(start, want, shaped) == want:
        hint += f", or {setting} with {resized}"
    return hint


def class_problems(graph: Graph, count: int | None = None) -> list[Diagnostic]:
    """An error when the model's output is not one score per class of its dataset: `count` classes
    (the ones training loaded), or by default the count the dataset's class knows statically
    (`Dataset.class_count`: 10 for digits, num_classes for synthetic; None for an image folder,
    checked once its folders are read). No data section, or an unknown count: nothing to check."""
    spec = graph.spec
    if spec.data is None or not graph.nodes:
        return []
    name = spec.data.dataset.name
    if count is None:
        count = DATASETS[name].class_count(spec.data)
        if count is None:
            return []
    out = graph.output_shape
    node = graph.node(graph.output)
    if len(out) != 1:
        return [
            Diagnostic(
                f"the model ends in a {'×'.join(map(str, out))} tensor; a classifier ends in one score per class",
                node.location,
                notes=(f"{name} has {count} classes",),
                hint=f"end with `- flatten` (or global_avgpool) and `- linear: {{out_features: {count}}}`",
            )
        ]
    if out[0] != count:
        return [
            Diagnostic(
                f"the model outputs {out[0]} class scores but {name} has {count} classes",
                node.location,
                notes=(f"'{node.id}' is the model's output layer",),
                hint=f"set out_features: {count} on the last layer",
            )
        ]
    return []


def no_data_section(spec: Spec) -> Diagnostic:
    """What `train` (and `validate --for train`) says of a spec without a data section."""
    shape = tuple(spec.model.input.shape)
    # Only a dataset whose images fit model.input as they are: following the hint must not bring a
    # channel or size error next.
    fitting = [d.name for d in DATASETS.values() if d.shape == shape and not d.reads_files]
    fitting += [d.name for d in DATASETS.values() if d.shape == shape and d.reads_files]
    own = "`data: {dataset: {name: image_folder, root: DIR}}` (your images in DIR/train/CLASS/)"
    if fitting:
        size = "×".join(map(str, shape))
        hint = f"add `data: {{dataset: {{name: {fitting[0]}}}}}` (its images are {size}, as model.input), or {own}"
    else:
        hint = f"add {own}, or `data: {{dataset: {{name: synthetic}}}}` (random images of model.input's shape)"
    return Diagnostic("the spec has no data section; training needs one", spec.source.locate(()), hint=hint)


def training_needs(spec: Spec, graph: Graph | None = None) -> list[Diagnostic]:
    """`validate --for train`: what training needs beyond a spec that checks, found without reading
    an image — a data section; an image folder's ROOT/train folder (named by its absolute path: a
    relative root is relative to the spec's folder), its class folders listed by training's own
    rules (empty, unreadable, linked-out or non-UTF-8 ones refused) and, with `graph`, the model's
    output counted against them."""
    from cnnspec.spec.paths import data_root

    data = spec.data
    if data is None:
        return [no_data_section(spec)]
    root = data_root(spec)
    where = spec.source.locate(("data", "dataset", "root" if "root" in data.dataset.model_fields_set else "name"))
    missing = DATASETS[data.dataset.name].missing(root)
    if missing is not None:
        relative = not Path(data.dataset.root).expanduser().is_absolute()
        return [
            Diagnostic(
                f"{data.dataset.name}: {missing}",
                where,
                notes=(f"data.dataset.root {data.dataset.root!r} is relative to the spec file's folder",)
                if relative
                else (),
                hint="put the images there, or set data.dataset.root",
            )
        ]
    try:
        count = DATASETS[data.dataset.name].listed_classes(root)
    except DataError as exc:
        return [replace(d, location=d.location or where) for d in exc.diagnostics]
    if count is None or graph is None:
        return []
    return class_problems(graph, count)


def data_notes(spec: Spec) -> list[str]:
    """What the data section does that the spec does not write out, for the summary: the size an
    image folder's files are resized to when data.resize is not set (the model's input)."""
    data = spec.data
    if data is None or data.resize is not None or not DATASETS[data.dataset.name].streamed:
        return []
    _, h, w = spec.model.input.shape
    return [f"{data.dataset.name} images are resized to {h}×{w}, the model's input (data.resize is not set)"]


def batch_statistics(graph: Graph, batch: int, where: tuple[Hashable, ...]) -> list[Diagnostic]:
    """An error when a batch of `batch` gives a batch norm one value per channel.

    torch refuses to train batch norm on a single value per channel ("Expected more than 1 value
    per channel when training"): a batch of one through batchnorm1d, through batchnorm2d on 1×1
    maps, or through a layer that holds batch norm (a residual's `shortcut: auto` projection, a
    torchvision backbone's deepest stage). Each layer kind says the smallest map its batch norm
    sees (`LayerKind.batchnorm_map`). `where` is the spec key that decides the batch (data.batch_size).
    """
    for node in graph.nodes:
        smallest = node.layer.batchnorm_map(node.input_shapes, node.output_shape)
        if smallest is None or batch * math.prod(smallest) != 1:
            continue
        through = f"{'×'.join(map(str, smallest))} maps" if smallest else "vector input"
        return [
            Diagnostic(
                f"{node.kind} '{node.id}' would normalise a single value per channel: a training batch"
                f" of {batch} image{'s' if batch > 1 else ''} through its {through}",
                graph.spec.source.locate(where),
                notes=(f"'{node.id}' is at {node.location}",),
                hint="train with a batch of 2 or more images (data.batch_size), or use groupnorm/layernorm",
            )
        ]
    return []
