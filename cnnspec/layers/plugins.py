"""Layer kinds from other packages, found through the `cnnspec.layers` entry-point group.

A plugin package declares, in its pyproject.toml:

    [project.entry-points."cnnspec.layers"]
    cbam = "cnnspec_cbam.layers"            # a module whose classes use @register
    # or: cbam = "cnnspec_cbam.layers:CBAM"  # one LayerKind subclass, registered here

A plugin kind is the same class shape as a built-in one (cnnspec/layers/base.py): its module
must not import torch at the top, so that `validate` stays torch-free; its `build` imports
torch inside (a plugin that imports torch anyway is named in a warning on stderr). Plugins load
once, when `cnnspec.layers` is first imported. A plugin that fails to import, holds something
other than layer kinds, names a kind that is already taken (up to case, '_' and '-'), or gives a
kind a field cnnspec reserves (`id`, `inputs`, a rule's name) is not half-loaded: none of its
kinds are registered, and every spec load then fails with a message naming the plugin, its
distribution and, for a clash, both origins (`problems()`, `refuse_problems()`).
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from cnnspec.layers.base import LAYER_KINDS, REGISTRY, LayerKind
from cnnspec.spec.dispatch import BadKindName, Kind, KindClash, ReservedField

GROUP = "cnnspec.layers"


@dataclass(frozen=True)
class PluginProblem:
    """Why one entry point's kinds are not available."""

    entry_point: str  # "cbam = cnnspec_cbam.layers"
    distribution: str
    message: str

    def __str__(self) -> str:
        return f"layer plugin '{self.entry_point}' (from {self.distribution}): {self.message}"


_problems: list[PluginProblem] = []
_origins: dict[str, str] = {}  # kind -> the plugin that registered it


def origin(cls: type[Kind]) -> str:
    """Where a registered kind comes from, for messages: a plugin, or cnnspec's own module."""
    return _origins.get(cls.kind) or f"{cls.__module__}.{cls.__qualname__}"


def problems() -> list[PluginProblem]:
    """Plugins that could not be loaded (empty when every plugin loaded)."""
    return list(_problems)


def refuse_problems() -> None:
    """Raise PluginError listing every plugin that could not be loaded: a command never runs with part
    of the installed layer kinds missing (a spec would mean something else; a schema would lack them)."""
    from cnnspec.errors import Diagnostic, PluginError

    if _problems:
        raise PluginError(
            [
                Diagnostic(str(p), hint=f"fix or uninstall {p.distribution.split()[0]} (pip uninstall)")
                for p in _problems
            ]
        )


def load_plugins() -> None:
    """Register the kinds of every installed plugin; record, never raise, what goes wrong.

    `validate` is promised torch-free, so a plugin whose import brings torch in (an `import torch` at
    the top of its module) is named in one warning on stderr: the kinds still load.
    """
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        had_torch = "torch" in sys.modules
        _load(ep)
        if not had_torch and "torch" in sys.modules:
            sys.stderr.write(
                f"warning: layer plugin '{ep.name} = {ep.value}' ({_distribution(ep)}) imports torch when it "
                "loads, which makes `cnnspec validate` and `summary` as slow as torch's import\n"
                "  hint: import torch inside the kind's `build` method, not at the top of its module\n"
            )


def _distribution(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"


def _load(ep: EntryPoint) -> None:
    distribution = _distribution(ep)
    where = f"{ep.name} = {ep.value}"
    before = dict(REGISTRY)
    try:
        kinds = _kinds_of(ep.load(), before)
    except KindClash as clash:
        taken = clash.existing.kind
        message = (
            f"its layer kind '{clash.name}' is already defined by {origin(clash.existing)}"
            if taken == clash.name
            else f"its layer kind '{clash.name}' differs only in case, '_' or '-' from '{taken}', defined by "
            f"{origin(clash.existing)}; kind names are compared so, as a spec's reader would"
        )
    except ReservedField as reserved:
        message = f"its {reserved}: rename the field"
    except BadKindName as bad:
        message = f"its {bad}: a spec writes the kind as a key, and `--set` splits paths at '.'"
    except Exception as exc:  # a plugin's import may raise anything
        text = str(exc).strip().splitlines()
        message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    else:
        for kind in kinds:
            REGISTRY[kind.kind] = kind
            _origins[kind.kind] = f"plugin '{where}' ({distribution})"
        return
    REGISTRY.clear()  # forget whatever the plugin registered before it failed
    REGISTRY.update(before)
    _problems.append(PluginProblem(where, distribution, message))


def _kinds_of(loaded: object, before: dict[str, type[LayerKind]]) -> list[type[LayerKind]]:
    """The kinds an entry point provides: a LayerKind class, or those its module registered on import."""
    if inspect.isclass(loaded) and issubclass(loaded, LayerKind):
        name = getattr(loaded, "kind", None)
        if not isinstance(name, str):
            raise TypeError(f"{loaded.__qualname__} has no `kind` name")
        if name in before and before[name] is not loaded:
            raise KindClash(name, before[name], loaded)
        LAYER_KINDS.check_outsider(loaded)
        return [loaded]
    if isinstance(loaded, ModuleType):
        added = [cls for name, cls in REGISTRY.items() if before.get(name) is not cls]
        if not added:
            raise TypeError(f"module {loaded.__name__} registers no layer kind (decorate its classes with @register)")
        return added
    raise TypeError(f"it names a {type(loaded).__name__}, not a module or a LayerKind subclass")
