"""What a `--resume` may change in the spec of the run it continues.

A resume continues a run's saved state, so a change to what that state was made under would be
ignored or would mix two runs (the validation images of one trained on by the other). Such a change
is refused before anything is written, located at the `--set` (or the spec file's line) that made it;
everything else (epochs, learning rate, weight decay, early stopping, loggers, data.dataset.root, …)
is allowed, applied from the resume on and recorded in spec.yaml.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnspec.errors import CheckpointError, CnnspecError, Diagnostic
from cnnspec.spec.dump import spec_data
from cnnspec.spec.model import Spec
from cnnspec.terminal import printable

# Path in the spec → why a resume cannot change it. A path ending in "*" pins every key under it
# but those listed in _FREE_UNDER.
_PINNED: dict[tuple[str, ...], str] = {
    ("optimizer", "name"): "the saved optimizer state (momentum buffers, running averages) belongs to that optimizer",
    (
        "optimizer",
        "decay_norms_and_biases",
    ): "it decides the optimizer's parameter groups, which the saved state follows",
    ("data", "val_split"): "it decides which images are held out for validation: a change would train on "
    "validation images and report a validation accuracy of images the model has seen",
    ("train", "seed"): "the validation split is drawn with it: a change would train on validation images",
    ("data", "normalize"): "the run keeps the normalisation it trained with (run.json's mean and std)",
    (
        "model",
        "weights",
    ): "a resumed run continues from its own checkpoint; model.weights is read only when a run starts",
    ("data", "dataset", "*"): "the run's images and classes are the dataset it started with",
}
# Under a pinned "*" path, keys a resume may change: where the same images are (a moved folder).
_FREE_UNDER: dict[tuple[str, ...], frozenset[str]] = {("data", "dataset"): frozenset({"root", "download"})}


def ensure_resumable_changes(recorded: Spec, resumed: Spec, root: Path) -> None:
    """CheckpointError naming the first pinned value that `resumed` (the spec of this resume, overrides
    applied) changes from `recorded` (the run's spec.yaml), located where the change was made."""
    old, new = spec_data(recorded), spec_data(resumed)
    for path, why in _PINNED.items():
        if path[-1] == "*":
            parent = path[:-1]
            keys = sorted(set(_at(old, parent) or {}) | set(_at(new, parent) or {}))
            changed = [(*parent, k) for k in keys if k not in _FREE_UNDER.get(parent, frozenset())]
        else:
            changed = [path]
        for p in changed:
            before, after = _at(old, p), _at(new, p)
            if before != after:
                raise CheckpointError(
                    Diagnostic(
                        f"cannot resume {printable(root)} with {'.'.join(p)} changed ({_show(before)} → "
                        f"{_show(after)}): {why}",
                        resumed.source.locate(p),
                        hint=f"resume with {'.'.join(p)}: {_show(before)}, or train the changed spec as a new run "
                        "with --out NEW_DIR",
                    )
                )


def ensure_same_preprocessing(recorded: Spec, resumed: Spec, root: Path) -> None:
    """CheckpointError when the resume would prepare images otherwise than the run trained on (data.resize,
    or an augmentation that decides the evaluation crop): the weights so far, the best epoch's above
    all, answer well only on images prepared as in their training, and export records one preprocessing."""
    from cnnspec.preprocess import preprocessing_for

    before, after = preprocessing_for(recorded, None, None), preprocessing_for(resumed, None, None)
    if before == after:
        return
    path = ("data", "resize") if before.image_size != after.image_size else ("data", "augment")
    raise CheckpointError(
        Diagnostic(
            f"cannot resume {printable(root)} with the images prepared otherwise: stored at "
            f"{before.image_size[1]}×{before.image_size[0]} then {before.fit.replace('_', ' ')} until now, "
            f"{after.image_size[1]}×{after.image_size[0]} then {after.fit.replace('_', ' ')} after: the weights "
            "trained so far answer well only on images prepared as in their training",
            resumed.source.locate(path),
            hint=f"resume with the run's own {'.'.join(path)}, or train the changed spec as a new run with "
            "--out NEW_DIR",
        )
    )


def recorded_spec(spec_file: Path, root: Path) -> Spec:
    """The run's own spec.yaml, its paths absolute, as the resume compares it."""
    from cnnspec.spec.overrides import load_with_overrides
    from cnnspec.spec.paths import absolute_paths

    try:
        return absolute_paths(load_with_overrides(spec_file))
    except CnnspecError as exc:
        raise CheckpointError(
            f"cannot resume {printable(root)}: its spec.yaml does not load ({exc}), so what this resume changes "
            "cannot be checked",
            hint="put back the spec.yaml the run was trained with",
        ) from None


def _at(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    return "true" if value is True else "false" if value is False else printable(str(value))
