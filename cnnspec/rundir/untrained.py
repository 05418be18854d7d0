"""An untrained run directory, in the layout `cnnspec train` writes (cnnspec/rundir/__init__.py).

Useful to export, benchmark or serve an architecture before (or without) training it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnspec.builder.graph_module import build
from cnnspec.checker.checker import check
from cnnspec.errors import SpecError
from cnnspec.pathnames import ensure_fits
from cnnspec.rundir.files import ensure_own_files, make_run_folder, write_run_file
from cnnspec.rundir.info import RunInfo, write_info
from cnnspec.rundir.lock import locked
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import save_weights
from cnnspec.spec.dump import dump_spec
from cnnspec.spec.load import load
from cnnspec.spec.model import Normalize, Spec
from cnnspec.spec.paths import absolute_paths


def init_run(spec: Spec | str | Path, out: str | Path, *, class_names: list[str] | None = None, seed: int = 0) -> Path:
    """Write RUN/spec.yaml, run.json and freshly initialised best/last weights; returns the run folder.

    Class names default to "0", "1", …; mean/std come from `data.normalize` when it
    gives them explicitly (no normalisation otherwise: nothing was computed from data).
    """
    spec = absolute_paths(spec if isinstance(spec, Spec) else load(spec))  # recorded so from any folder
    graph = check(spec)
    outputs = graph.output_shape
    count = outputs[0] if len(outputs) == 1 else 0
    names = class_names if class_names is not None else [str(i) for i in range(count)]
    if len(outputs) != 1 or len(names) != count:
        raise SpecError(f"the model has output {'×'.join(map(str, outputs))}; init_run needs {len(names)} class logits")
    normalize = spec.data.normalize if spec.data is not None else None
    mean = list(normalize.mean) if isinstance(normalize, Normalize) else None
    std = list(normalize.std) if isinstance(normalize, Normalize) else None
    info = RunInfo.for_spec(spec, input_shape=graph.input_shape, class_names=names, mean=mean, std=std)
    torch.manual_seed(seed)
    model = build(graph).eval()
    paths = RunPaths(Path(out))
    ensure_fits(paths.root)
    written = [paths.spec, paths.info, paths.weights("best"), paths.weights("last")]
    ensure_own_files(paths.root, written)  # nothing written through a link out of the run
    with locked(paths.root, "cnnspec.rundir.untrained.init_run"):
        make_run_folder(paths.root, paths.checkpoints)
        write_run_file(paths.root, paths.spec, dump_spec(spec))
        write_info(paths, info)
        for which in ("best", "last"):
            save_weights(model, paths.weights(which), run=paths.root)
    return paths.root
