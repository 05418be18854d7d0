"""Where the paths a spec names lead: a relative path is relative to the spec file's folder.

As docker-compose and CI files resolve theirs, so a spec means the same files from whatever folder
a command runs in. The paths a spec names: `data.dataset.root` and `data.cache_dir` (for the datasets that read files,
`Dataset.reads_files`), `model.weights`, and the fields of layer kinds that name files
(`LayerKind.with_files`: a torchvision backbone's local weights file). A spec that is not a file on
disk (text given to `cnnspec.loads`, stdin, a pipe such as `<(make-spec)`, a git revision) has the
current folder as its folder.

`absolute_paths` is applied where a spec is put to use — `train` (and the spec.yaml it records in
the run, so `--resume`, `evaluate` and `export` find the same files from any folder), a run read
back, `build` — while `validate`, `summary`, `fmt` and `diff` keep the paths as written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cnnspec.datasets import DATASETS
from cnnspec.layers.base import LayerKind
from cnnspec.spec.model import Spec


def spec_folder(spec: Spec) -> Path:
    """The folder a spec's relative paths are relative to: its file's (absolute, the file's path as
    given: a symbolic link's own folder, as a shell script's `dirname "$0"`), else the current folder."""
    file = spec.source.file
    if os.path.isfile(file):  # os.path: False for "<string>", a pipe, a name too long to exist; never raises
        return Path(os.path.abspath(file)).parent
    return Path.cwd()


def resolve_in(spec: Spec, value: str) -> Path:
    """`value`, a path the spec names, as an absolute path: `~` expanded, a relative one joined to
    `spec_folder(spec)`."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else spec_folder(spec) / path


def data_root(spec: Spec) -> Path:
    """The absolute folder `data.dataset.root` names."""
    assert spec.data is not None
    return resolve_in(spec, spec.data.dataset.root)


def absolute_paths(spec: Spec) -> Spec:
    """`spec` with every path it names made absolute (`resolve_in`); the same object when there is
    none to change. The copy keeps the source map, so messages still point at the file."""

    def resolve(value: str) -> str:
        return str(resolve_in(spec, value))

    model = _with_files(spec.model, resolve)
    if spec.model.weights is not None:
        weights = resolve(spec.model.weights)
        if weights != spec.model.weights:
            model = model.model_copy(update={"weights": weights})
    update: dict[str, Any] = {}
    if model is not spec.model:
        update["model"] = model
    data = spec.data
    if data is not None and DATASETS[data.dataset.name].reads_files:
        root = resolve(data.dataset.root)
        changed: dict[str, Any] = {}
        if root != data.dataset.root:
            changed["dataset"] = data.dataset.model_copy(update={"root": root})
        if data.cache_dir not in ("auto", "none"):  # a folder of decoded images (data.cache_dir)
            cache_dir = resolve(data.cache_dir)
            if cache_dir != data.cache_dir:
                changed["cache_dir"] = cache_dir
        if changed:
            update["data"] = data.model_copy(update=changed)
    return spec.model_copy(update=update) if update else spec


def _with_files(value: Any, resolve: Any) -> Any:
    """`value` (a spec section, a layer, a list of them) with each layer's file fields resolved; the
    same object where nothing changed."""
    if isinstance(value, list):
        items = [_with_files(v, resolve) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if not isinstance(value, BaseModel):
        return value
    if isinstance(value, LayerKind):
        value = value.with_files(resolve)
    changed = {}
    for name in type(value).model_fields:
        field = getattr(value, name)
        new = _with_files(field, resolve)
        if new is not field:
            changed[name] = new
    return value.model_copy(update=changed) if changed else value
