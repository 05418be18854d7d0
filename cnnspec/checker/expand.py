"""Expand the layer list (residual, repeat, blocks) into a flat graph of named nodes.

Expansion is purely syntactic: ids are given, `inputs` are resolved lexically
(innermost scope first), and no shape is needed yet.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cnnspec.errors import ECHO_LIMIT, Category, Diagnostic, Location, shown, suggest, suggested_name
from cnnspec.layers import LAYER_KINDS, LayerItemBase, LayerKind
from cnnspec.layers.base import SELF_ID
from cnnspec.spec.interp import IDENT, PART, REF, Evaluated, SubstitutionError, explain, has_expression, substitute
from cnnspec.spec.source import SourceMap

if TYPE_CHECKING:
    from cnnspec.layers.sugar import Block
    from cnnspec.spec.model import Spec

INPUT = "input"
# In `inputs`, the input of the innermost enclosing list: a block use, group, residual branch or
# repeat copy (at the top level, the model's input). `input` keeps meaning the model's input.
BLOCK_INPUT = "block_input"
# More expanded layers than any real network has (ResNet-152: ~500); the limit keeps a
# three-line spec of nested `repeat`s from expanding into billions of layers.
MAX_LAYERS = 100_000


class _TooLarge(Exception):
    """Expansion stopped at MAX_LAYERS."""


# Prefix of an `inputs` name that names no layer (ids cannot contain '?').
UNRESOLVED = "?"
# Prefix of a placeholder for a sugar layer's `inputs`, resolved with everything else once all
# ids are known (so a residual may read a layer further down, as a plain layer may).
DEFERRED = "&"
# The attributes of a built module (torch.nn.Module's and SpecModule's): a layer cannot be
# attached under one of these names, so `validate` refuses them as ids (and every id that starts
# with '_', torch's private names). Written out so the check needs no torch;
# tests/build/test_build_ids.py checks the list against torch's.
MODULE_ATTRIBUTES = frozenset(
    [
        "T_destination",
        "add_module",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "input_shape",
        "ipu",
        "layer",
        "layer_ids",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "output_shape",
        "parameters",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "spec_name",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
    ]
)
Path = tuple[Hashable, ...]


def attribute_clash(part: str) -> str | None:
    """Why `part` cannot be one level of a layer's name (it becomes a module attribute), or None."""
    if part.startswith("_"):
        return "starts with '_', as torch modules' own attributes do"
    if part in MODULE_ATTRIBUTES:
        return "is the name of an attribute of torch modules"
    return None


@dataclass
class Scope:
    """Names visible to `inputs`: local id → full node id, falling back to the parent scope."""

    prefix: str
    parent: Scope | None = None
    names: dict[str, str] = field(default_factory=dict)
    input: str | None = None  # what the scope's first layer reads: `block_input`

    def block_input(self) -> str:
        scope: Scope | None = self
        while scope is not None:
            if scope.input is not None:
                return scope.input
            scope = scope.parent
        return INPUT

    def lookup(self, name: str) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def visible(self) -> list[str]:
        out: list[str] = []
        scope: Scope | None = self
        while scope is not None:
            out += list(scope.names)
            scope = scope.parent
        return out


@dataclass
class RawNode:
    """A primitive layer with its full id and still-unresolved input names."""

    id: str
    layer: LayerKind
    inputs: list[str]  # full ids (already resolved) or names to resolve in `scope`
    path: Path  # YAML path of the layer's parameters
    scope: Scope | None  # None when `inputs` are already full ids
    trace: tuple[Location, ...] = ()  # block uses this node came through, innermost last
    is_self: bool = False  # `id: self`: the node is the module of the list it is in


class Expander:
    """Collects the flat node list of a spec's model, and the problems found on the way."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.source: SourceMap = spec.source
        self.nodes: dict[str, RawNode] = {}
        self.diagnostics: list[Diagnostic] = []
        self.root = Scope("")
        self._trace: list[Location] = []
        self._block_stack: list[str] = []
        self._used_blocks: set[str] = set()
        self._reported: set[tuple[str, Location | None]] = set()
        self._duplicate_ids: set[Path] = set()
        self._deferred: dict[str, tuple[str, Scope, Path]] = {}
        # Full names given to the entries of every list (layers, groups, block uses, repeat copies): two
        # entries of the same name would share one module, even when their layers' names differ.
        self._claimed: dict[str, tuple[Path, bool]] = {}
        # Levels of names already refused as module attributes: said once, where the name came from.
        self._refused_parts: set[str] = set()
        # Automatic local names (`softplus_5`) by scope: `inputs` cannot name them, and saying so helps.
        self._auto_names: dict[tuple[int, str], str] = {}
        # Nodes an error is about: a "never used" warning about them would only add noise.
        self.involved: set[str] = set()

    # -- helpers used by sugar kinds ------------------------------------------------
    def loc(self, path: Path, *, key: bool = False) -> Location:
        return self.source.locate(path, key=key)

    def error(
        self,
        message: str,
        path: Path,
        *,
        hint: str | None = None,
        notes: Sequence[str] = (),
        suggestion: str | None = None,
        category: Category = "graph",
    ) -> None:
        """Report a problem at `path`; most of what expansion finds is about how layers are named and
        connected ("graph"), a name that names nothing is a "reference"."""
        notes = tuple(notes) + self.trace_notes()
        self.report(Diagnostic(message, self.loc(path), notes, hint, suggestion=suggestion, category=category))

    def trace_notes(self) -> tuple[str, ...]:
        return tuple(f"in a block used at {t}" for t in reversed(self._trace))

    def report(self, diagnostic: Diagnostic) -> None:
        """Add a diagnostic once: a mistake inside a block used n times is one mistake, not n."""
        key = (diagnostic.message, diagnostic.location)
        if key not in self._reported:
            self._reported.add(key)
            self.diagnostics.append(diagnostic)

    def child_scope(self, prefix: str) -> Scope:
        return Scope(prefix, parent=self._current)

    def refuse_attribute_name(self, full: str, path: Path, what: str, hint: str) -> bool:
        """False, with an error at `path` (the field that made the name), when the last level of `full`
        is a torch module attribute: the module could not be attached under it."""
        part = full.rsplit(".", 1)[-1]
        why = attribute_clash(part)
        if why is None:
            return False
        if part not in self._refused_parts:
            self._refused_parts.add(part)
            self.error(f"{what} would be named '{part}', which {why}", path, hint=hint)
        return True

    def _check_levels(self, full: str, path: Path) -> None:
        """Every level of a generated name becomes a module attribute: refuse the ones torch has (a
        name not refused where it was made, e.g. by a plugin's sugar kind)."""
        for part in full.split("."):
            if attribute_clash(part) is not None and part not in self._refused_parts:
                self.refuse_attribute_name(part, path, f"layer '{full}'", "rename the layer or its container")

    def claim(
        self, name: str, path: Path, what: str = "a layer", hint: str = "give each layer a unique id", *, layer: bool
    ) -> bool:
        """Give `name` (a full id) to the list entry at `path` (`layer`: one layer, else a container of layers).

        False, with a located error, when another container has it: their layers would share one module.
        Where one of the two is a layer, add_node ("two layers are named") or the nested-layer check says so.
        """
        self._check_levels(name, path)
        first, first_is_layer = self._claimed.setdefault(name, (path, layer))
        if first == path or layer or first_is_layer:
            return True
        self.error(f"{what} would be named '{name}', the name of the layers at {self.loc(first)}", path, hint=hint)
        return False

    def add_node(
        self,
        node_id: str,
        layer: LayerKind,
        inputs: list[str | None],
        path: Path,
        scope: Scope | None,
        *,
        is_self: bool = False,
    ) -> str:
        if node_id in self.nodes:
            if path not in self._duplicate_ids:  # else said already, as an id used twice
                first = self.loc(self.nodes[node_id].path)
                self.error(
                    f"two layers are named '{node_id}'",
                    path,
                    notes=(f"the first is at {first}",),
                    hint="give each layer a unique id",
                )
            return node_id
        if len(self.nodes) >= MAX_LAYERS:
            self.error(
                f"the model expands to more than {MAX_LAYERS:,} layers",
                path,
                hint="a `repeat` count (or repeats inside repeats) is far larger than intended",
            )
            raise _TooLarge
        self._check_levels(node_id, path)
        resolved = [i if i is not None else INPUT for i in inputs]
        self.nodes[node_id] = RawNode(node_id, layer, resolved, path, scope, tuple(self._trace), is_self)
        return node_id

    # -- the walk -------------------------------------------------------------------
    def run(self) -> str:
        """Expand the model's layers; returns the id of the output layer."""
        self._current = self.root
        items = self.spec.model.layers
        try:
            out = self.expand_list(items, ("model", "layers"), self.root, INPUT)
        except _TooLarge:
            self.nodes.clear()  # reported; checking a truncated model would only add noise
            return INPUT
        self.check_unused_blocks()
        return out

    def expand_list(
        self,
        items: Sequence[LayerItemBase],
        list_path: Path,
        scope: Scope,
        prev: str | None,
        *,
        names: Sequence[str] | None = None,
    ) -> str:
        """Expand `items` in `scope`, the first reading `prev`; returns the last output's id."""
        outer = self._current
        self._current = scope
        out = prev or INPUT
        if scope.input is None:
            scope.input = out
        for index, item in enumerate(items):
            layer = item.layer
            path = (*list_path, index, item.kind_name)
            local = layer.id or f"{item.kind_name}_{index}"
            is_self = local == SELF_ID and self._self_allowed(item, path, scope)
            if local == SELF_ID and not is_self:
                local = f"{item.kind_name}_{index}"  # reported; checked on under an automatic name
            if is_self:
                pass  # named by the list it is in
            elif local == INPUT:
                self.error("'input' names the model's input; choose another id", (*path, "id"))
            elif local == BLOCK_INPUT:
                self.error("'block_input' names the input of the enclosing block; choose another id", (*path, "id"))
            elif (what := attribute_clash(local)) is not None:
                self._refused_parts.add(local)
                self.error(
                    f"the id '{local}' {what}", (*path, "id"), hint=f"rename it, e.g. '{local.strip('_') or 'layer'}_'"
                )
            full = names[index] if names is not None else f"{scope.prefix}.{local}" if scope.prefix else local
            if layer.id is None:
                self._auto_names[(id(scope), local)] = full
            named = layer.id if layer.id != SELF_ID else None  # the id that names it in `inputs`
            if is_self:
                full = scope.prefix  # the list's own name: no new level
            elif named is not None and named in scope.names:
                pass  # said below, as an id used twice
            elif names is None and not self.claim(full, path, f"this {item.kind_name}", layer=not layer.sugar):
                continue  # reported; its layers would only repeat the error
            if named is not None:
                if named in scope.names:
                    first = scope.names[named]
                    notes = (f"the first is at {self.loc(self.nodes[first].path)}",) if first in self.nodes else ()
                    self.error(
                        f"id '{named}' is used twice", (*path, "id"), notes=notes, hint="give each layer a unique id"
                    )
                    self._duplicate_ids.add(path)
                scope.names[named] = full
            reads: list[str | None] = list(layer.inputs) if layer.inputs is not None else [out]
            if layer.sugar:
                if layer.inputs is not None and len(layer.inputs) != 1:
                    self.error(f"{item.kind_name} reads one input", (*path, "inputs"))
                first = self._defer(reads[0] or INPUT, scope, path) if layer.inputs else out
                out = layer.expand(self, path, full, first)
                if named is not None:
                    scope.names[named] = out  # a sugar layer's id names its output (e.g. r → r.add)
            else:
                if layer.many_inputs and layer.inputs is None:
                    self.error(
                        f"{item.kind_name} merges several layers: list their ids in `inputs`",
                        path,
                        hint=f"e.g. {item.kind_name}: {{inputs: [a, b]}}",
                    )
                node_scope = scope if layer.inputs is not None else None
                out = self.add_node(full, layer, reads, path, node_scope, is_self=is_self)
        self._current = outer
        return out

    def _self_allowed(self, item: LayerItemBase, path: Path, scope: Scope) -> bool:
        """Whether `id: self` may be given here; reports why not."""
        layer = item.layer
        if not scope.prefix:
            self.error(
                "'self' takes the name of the group, block use, residual or repeat copy the layer is in, "
                "and this layer is in none",
                (*path, "id"),
                hint="give it an id of its own",
            )
            return False
        if not layer.sugar and not layer.self_names:
            self.error(
                f"{item.kind_name} cannot take the id 'self': only a layer whose tensors can be the enclosing "
                "module's own (scale: layer_scale) or a group, block, repeat or residual can",
                (*path, "id"),
                hint="give it an id of its own",
            )
            return False
        return True

    def _resolve(self, name: str, scope: Scope, path: Path) -> str:
        if name == INPUT:
            return INPUT
        if name == BLOCK_INPUT:
            return scope.block_input()
        full = scope.lookup(name)
        if full is None:
            auto = self._auto_name(name, scope)
            notes: tuple[str, ...] = ()
            hint: str | None
            if auto is not None:
                self.involved.add(auto)
                hint = "automatic ids (KIND_INDEX) cannot be referenced: give that layer an `id:` and list that"
                if auto in self.nodes:
                    notes = (f"'{name}' is the automatic name of the layer at {self.loc(self.nodes[auto].path)}",)
                close = None
            else:
                close = suggested_name(name, scope.visible())
                hint = None if close else "ids are given with `id:`; `input` is the model input"
                meant = scope.lookup(close) if close is not None else None
                if meant is not None:
                    self.involved.add(meant)  # the layer it meant is read: "never used" would be a second, wrong error
            self.error(
                f"unknown layer id {shown(name)} in inputs",
                (*path, "inputs"),
                hint=hint,
                notes=notes,
                suggestion=close,
                category="reference",
            )
            return UNRESOLVED + name  # no shape: the layers that read it are not checked further
        return full

    def _auto_name(self, name: str, scope: Scope) -> str | None:
        """The full id of the layer that `name` is the automatic name of, in `scope` or one around it."""
        at: Scope | None = scope
        while at is not None:
            full = self._auto_names.get((id(at), name))
            if full is not None:
                return full
            at = at.parent
        return None

    def _defer(self, name: str, scope: Scope, path: Path) -> str:
        """A placeholder for `name` as seen from `scope`, resolved by resolve_all (ids cannot contain '&')."""
        placeholder = f"{DEFERRED}{len(self._deferred)}"
        self._deferred[placeholder] = (name, scope, path)
        return placeholder

    def resolve_all(self, output: str) -> str:
        """Turn names in `inputs` into full node ids (after all nodes are known, so forward references work).

        Returns `output` (the model's output id from `run`) resolved the same way."""
        deferred = {p: self._resolve(*where) for p, where in self._deferred.items()}
        # `block_input` of a sugar layer that itself reads named inputs is another placeholder.
        for p in deferred:
            seen = {p}
            while deferred[p] in deferred and deferred[p] not in seen:
                seen.add(deferred[p])
                deferred[p] = deferred[deferred[p]]
        for node in self.nodes.values():
            if node.scope is not None:
                node.inputs = [self._resolve(n, node.scope, node.path) for n in node.inputs]
                node.scope = None
            node.inputs = [deferred.get(i, i) for i in node.inputs]
        self._refuse_nested_layers()
        return deferred.get(output, output)

    def _refuse_nested_layers(self) -> None:
        """A layer's full id must not be the path of another layer's container: `x` next to `x.y` would
        attach `y` inside the module of `x` (an automatic name, e.g. `conv2d_0` or a residual's
        `r.add`, can meet an id given to a group or a block use)."""
        for node_id, node in self.nodes.items():
            head = node_id
            while "." in head:
                head = head.rsplit(".", 1)[0]
                inner = self.nodes.get(head)
                if inner is not None and inner.is_self:
                    # The module of the list this layer is in: its own tensors' names are taken.
                    part = node_id[len(head) + 1 :].split(".", 1)[0]
                    if part in inner.layer.self_names:
                        self.error(
                            f"layer '{node_id}' takes the name '{part}' of the {inner.layer.kind}'s tensor "
                            f"'{head}.{part}'",
                            node.path,
                            notes=(f"the {inner.layer.kind} at {self.loc(inner.path)} has the id 'self'",),
                            hint=f"rename the layer, or the group that holds '{part}'",
                        )
                        break
                elif inner is not None:
                    self.error(
                        f"layer '{node_id}' would sit inside layer '{head}', which is not a group",
                        node.path,
                        notes=(f"'{head}' is the layer at {self.loc(inner.path)}",),
                        hint=f"rename the layer or the group whose id is '{head.rsplit('.', 1)[-1]}'",
                    )
                    break

    # -- named blocks ---------------------------------------------------------------
    def expand_block(self, use: Block, path: Path, name: str, prev: str | None) -> str:
        blocks = self.spec.model.blocks
        if use.name not in blocks:
            close = suggested_name(use.name, list(blocks))
            self.error(
                f"unknown block {shown(use.name)}",
                (*path, "name"),
                hint=None if close else "define it under model.blocks",
                suggestion=close,
                category="reference",
            )
            return prev or INPUT
        self._used_blocks.add(use.name)
        if use.name in self._block_stack:
            self.error(f"block '{use.name}' uses itself", (*path, "name"))
            return prev or INPUT
        block = blocks[use.name]
        block_path: Path = ("model", "blocks", use.name)
        values = dict(block.params)
        misspelt = set()
        for arg, value in use.args.items():
            if arg not in block.params:
                close = suggested_name(arg, list(block.params))
                misspelt.add(close)
                listing = f"its parameters: {', '.join(block.params) or 'none'}"
                self.error(
                    f"block '{use.name}' has no parameter {shown(arg)}",
                    (*path, "args", arg),
                    hint=None if close else listing,
                    suggestion=close,
                    category="reference",
                )
            values[arg] = value
        missing = [k for k, v in values.items() if v is None and k not in misspelt]
        if missing:
            self.error(
                f"block '{use.name}' needs a value for {', '.join(missing)}",
                path,
                hint="pass it in `args`",
                category="spec",
            )
            return prev or INPUT
        if misspelt:
            return prev or INPUT
        # Where each value came from: an argument of this use, or the default in `params`.
        origins = {arg: (*path, "args", arg) for arg in use.args}
        origins.update({p: (*block_path, "params", p) for p in block.params if p not in use.args})
        redirects: dict[Path, Path] = {}
        evaluated: dict[Location, Evaluated] = {}
        self._trace.append(self.loc(path))  # notes on errors in defaults and layers name this use
        # A default may be an expression of the vars, the arguments and the parameters before it.
        done = set(use.args)
        for p in block.params:
            if p not in done:
                known = {k: values[k] for k in done}
                values[p] = _substitute(values[p], known, self, (*block_path, "params", p), {}, redirects, evaluated)
                done.add(p)
        if _UNKNOWN not in redirects.values():
            raw = _substitute(block.layers, values, self, (*block_path, "layers"), origins, redirects, evaluated)
        self._trace.pop()
        if _UNKNOWN in redirects.values():
            return prev or INPUT  # a name or an expression failed: the layers cannot be checked
        # Validated as the layers of a group: that model's schema is built already or cheaply.
        group = LAYER_KINDS.wrapper("group")
        data = {"group": {"layers": raw}}
        try:
            items = group.model_validate(data).layer.layers  # type: ignore[attr-defined]
        except ValidationError as exc:
            from cnnspec.spec.errors_map import diagnostics_from  # only on errors: it costs import time

            # A bad value that came in as an argument is reported where the argument is written.
            source = Redirected(self.source, redirects)
            found = explain(diagnostics_from(exc, data, source, group, block_path, strip=1), evaluated)
            for d in found:
                note = f"in block '{use.name}' used at {self.loc(path)}"
                self.report(replace(d, notes=(note,), category="spec"))
            return prev or INPUT
        self._trace.append(self.loc(path))
        self._block_stack.append(use.name)
        # A block of one unnamed layer is that layer: it takes the block's name.
        names = [name] if len(items) == 1 and items[0].layer.id is None else None
        out = self.expand_list(items, (*block_path, "layers"), self.child_scope(name), prev, names=names)
        self._block_stack.pop()
        self._trace.pop()
        return out

    def check_unused_blocks(self) -> None:
        """Check the layers of every block no layer uses, as written: a misspelt kind or key there is an
        error before the block's first use. Values written as expressions (`$out`) need the arguments of
        a use, so they are left to it; the layers of a used block are checked at each use."""
        group = LAYER_KINDS.wrapper("group")  # validated as a group's layers, as a used block is
        for name, block in self.spec.model.blocks.items():
            if name in self._used_blocks:
                continue
            data = {"group": {"layers": block.layers}}
            try:
                group.model_validate(data)
            except ValidationError as exc:
                from cnnspec.spec.errors_map import diagnostics_from  # only on errors: it costs import time

                skip = _expression_paths(data)
                block_path: Path = ("model", "blocks", name)
                for d in diagnostics_from(exc, data, self.source, group, block_path, strip=1, skip=skip):
                    self.report(replace(d, notes=(f"in block '{name}', which no layer uses",), category="spec"))


def _expression_paths(value: Any, path: Path = ()) -> set[Path]:
    """The paths of the `$name` / `${...}` strings in `value`."""
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in _expression_paths(v, (*path, k))}
    if isinstance(value, list):
        return {p for i, v in enumerate(value) for p in _expression_paths(v, (*path, i))}
    return {path} if has_expression(value) else set()


def _substitute(
    value: Any,
    values: dict[str, Any],
    expander: Expander,
    path: Path,
    origins: dict[str, Path],
    redirects: dict[Path, Path],
    evaluated: dict[Location, Evaluated],
) -> Any:
    """Replace '$name' by the argument's value and '${...}' by its value (or, inside a longer string, its text).

    Names are the block's parameters, then the spec's vars. `redirects` records, for a value that
    is an argument's, the path of the argument it came from (_UNKNOWN where a name or an
    expression failed); `evaluated` what each replaced string was, for notes on later errors.
    """
    if isinstance(value, dict):
        return {
            k: _substitute(v, values, expander, (*path, k), origins, redirects, evaluated) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(v, values, expander, (*path, i), origins, redirects, evaluated) for i, v in enumerate(value)
        ]
    if not has_expression(value):
        return value
    env = {**expander.spec.vars, **values}
    where = expander.loc(path)

    def unknown(n: str) -> tuple[str, str | None]:
        known = list(values) + [v for v in expander.spec.vars if v not in values]
        return f"{shown('$' + n)} is not a parameter of this block", suggest(n, known) or (
            f"declare it under params: {n}: DEFAULT" if len(n) <= ECHO_LIMIT else "declare it under params"
        )

    try:
        result, record = substitute(value, env, where, quoted=path in expander.source.quoted, unknown=unknown)
    except SubstitutionError as exc:
        d = exc.diagnostic
        notes = d.notes + expander.trace_notes()
        expander.report(replace(d, notes=notes, category=d.category or "spec"))
        redirects[path] = _UNKNOWN
        return value
    # A value that is an argument's, as given (`$out`, `conv_${i}`), is located at the argument.
    first = REF.match(value) or PART.search(value)
    name = first.group(1).strip() if first is not None else None
    if name in origins and IDENT.match(name or "") is not None:
        redirects[path] = origins[name]  # type: ignore[index]
    else:
        evaluated[where] = record
    return result


_UNKNOWN: Path = ("?",)  # in `redirects`: a '$name' that is not a parameter


class Redirected(SourceMap):
    """A SourceMap where some paths (block layers' `$name` values) point at another path (the argument)."""

    def __init__(self, base: SourceMap, redirects: dict[Path, Path]):
        super().__init__(base.file, base.values, base.keys, quoted=base.quoted)
        self.redirects = redirects

    def locate(self, path: Sequence[Hashable], *, key: bool = False) -> Location:
        p = tuple(path)
        for n in range(len(p), 0, -1):
            target = self.redirects.get(p[:n])
            if target is not None and key and n == len(p):
                break  # only the value came in as an argument: the key is written in the block
            if target is not None:
                return super().locate(target + p[n:], key=key)
        return super().locate(p, key=key)
