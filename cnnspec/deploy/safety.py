"""Refuse ONNX files whose external data would make onnxruntime read outside their folder.

An ONNX tensor can keep its bytes in another file (`data_location: EXTERNAL`, with a
`location` relative to the model's folder). A crafted file can point that location at
`/etc/shadow`, `../../secret` or a symlink that leaves the folder, and onnxruntime
would read it as weights (and may echo it back through the outputs). This check runs
on the protobuf alone, before any onnxruntime session exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from cnnspec.errors import ExportError

if TYPE_CHECKING:
    import onnx


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.TensorProto]:
    """The tensors in the nodes' attributes, those of their subgraphs (If, Loop, Scan bodies) included."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model: initializers, constants, subgraphs and functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def _external_location(tensor: onnx.TensorProto) -> str | None:
    import onnx

    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    for entry in tensor.external_data:
        if entry.key == "location":
            return str(entry.value)
    return ""


def check_external_data(model: onnx.ModelProto, model_path: str | Path) -> list[Path]:
    """The external data files of `model`, all inside its folder; ExportError otherwise."""
    folder = Path(model_path).resolve().parent
    files: list[Path] = []
    for tensor in all_tensors(model):
        location = _external_location(tensor)
        if location is None:
            continue
        name = tensor.name or "<unnamed>"
        problem = _location_problem(location, folder)
        if problem:
            raise ExportError(
                f"{model_path}: refused: tensor '{name}' keeps its data at {location!r}, {problem}",
                hint="an ONNX file may only read external data from files in its own folder",
            )
        target = (folder / location).resolve()
        if not target.is_file():
            raise ExportError(f"{model_path}: tensor '{name}' keeps its data in {location!r}, which does not exist")
        if target not in files:
            files.append(target)
    return files


def _location_problem(location: str, folder: Path) -> str | None:
    if not location:
        return "an empty location"
    if "\x00" in location:
        return "a location with a NUL byte"
    for flavour in (PurePosixPath(location), PureWindowsPath(location)):
        if flavour.is_absolute() or flavour.drive or flavour.root:
            return "an absolute path"
        if ".." in flavour.parts:
            return "a path that climbs out of the model's folder ('..')"
    # A symlink (of the file or of a folder on the way) may still lead elsewhere.
    resolved = Path(os.path.realpath(folder / location))
    if not resolved.is_relative_to(folder):
        return f"which resolves to {resolved}, outside the model's folder"
    return None


def load_checked(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file's graph (not its external data) and apply the external-data check."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"no ONNX file at {p}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends for damaged files
        raise ExportError(f"{p} is not a readable ONNX file: {exc}") from None
    check_external_data(model, p)
    return model
