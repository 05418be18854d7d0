"""`- NAME: {PARAMS}` list items, validated by the class registered under NAME.

Layers and augmentations are written as one-key mappings (or a bare `- NAME`). Each family
is a `KindRegistry` (layer kinds: cnnspec.layers; augmentations: cnnspec.augments): its
classes by name, the decorator that registers them, and for each name a one-field wrapper
model (`{conv2d: Conv2d}`). Validation picks the wrapper by the mapping's key, like a
discriminated union, so pydantic reports only the chosen kind's errors. Unlike a pydantic
union, a wrapper's schema is built the first time a spec uses that name: `cnnspec validate`
pays only for the kinds a spec contains, which keeps it fast (see docs/spec-language.md,
"Errors" and benchmarks/validate_speed.py).

In the JSON Schema the item is a `$ref` to one shared definition that lists every
name (cnnspec.spec.schema fills it in).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from pydantic import Field, ValidationError, create_model
from pydantic_core import PydanticCustomError, core_schema

from cnnspec.spec.base import StrictModel

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue


class Kind(StrictModel):
    """Base of every class a `- NAME: {PARAMS}` item names (a layer kind, an augmentation)."""

    kind: ClassVar[str]  # the NAME
    FIELD_ROLES: ClassVar[dict[str, str]] = {}  # what the fields every kind of a family has are for (in messages)

    @classmethod
    def may_be_bare(cls) -> bool:
        """Whether `- NAME` alone is a complete item: every parameter has a default."""
        try:
            cls.model_validate({})
        except ValidationError:
            return False
        return True


K = TypeVar("K", bound=Kind)
C = TypeVar("C", bound=type[Kind])


class KindClash(ValueError):
    """A second class registered under a name that is taken, or (for a class from outside cnnspec) one
    that differs from a taken name only in case, '_' or '-' (`Conv2D` next to `conv2d`: a spec could not
    tell them apart, and the suggestion for either would be the other)."""

    def __init__(self, name: str, existing: type[Kind], new: type[Kind], what: str = "layer kind"):
        taken = existing.kind
        super().__init__(
            f"{what} '{name}' is already registered by {existing.__qualname__}"
            if taken == name
            else f"{what} '{name}' differs from '{taken}' of {existing.__qualname__} only in case, '_' or '-'"
        )
        self.name, self.existing, self.new = name, existing, new


class ReservedField(ValueError):
    """A kind from outside cnnspec with a field whose name every kind of its family has already (`id`,
    `inputs`) or that would hide one of the family's rules (`params`, `build`, …): cnnspec reads those."""

    def __init__(self, cls: type[Kind], field: str, base: type[Kind], what: str):
        if field in base.model_fields:
            role = f" ({base.FIELD_ROLES[field]})" if field in base.FIELD_ROLES else ""
            reason = f"a field every {what} has already{role}, which cnnspec reads itself"
        else:
            reason = f"which would hide {base.__name__}.{field}, a rule cnnspec calls"
        super().__init__(f"{what} '{cls.kind}' ({cls.__qualname__}) has a field named '{field}', {reason}")
        self.cls, self.field = cls, field


class BadKindName(ValueError):
    """A kind from outside cnnspec whose name is not a word of letters, digits and '_' (`my.kind`,
    `two words`): a spec names a kind as a YAML key and `--set` paths split at '.', so such a name
    could not be written or set."""

    def __init__(self, cls: type[Kind], what: str):
        super().__init__(
            f"{what} name {cls.kind!r} ({cls.__qualname__}) is not a name of letters, digits and '_' "
            "that starts with a letter"
        )
        self.cls = cls


# The names a kind from outside cnnspec may take (cnnspec's own all fit, as a test checks).
KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def is_builtin(cls: type) -> bool:
    """Whether a kind is cnnspec's own (its module is in cnnspec), not a plugin's or a program's."""
    return cls.__module__ == "cnnspec" or cls.__module__.startswith("cnnspec.")


class KindItem(StrictModel):
    """One `- NAME: {PARAMS}` list item: a wrapper model whose one field, NAME, holds the kind's instance."""

    kind_name: ClassVar[str]  # NAME; set on each wrapper
    kinds: ClassVar[KindRegistry[Any]]  # the family; set on the family's item base by its registry

    @property
    def value(self) -> Kind:
        return getattr(self, self.kind_name)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        # A wrapper is made on first use and has no importable name. Pickle (multiprocessing,
        # DataLoader workers, caches) rebuilds the item from the family's item base, which has one.
        return (_blank_item, (self.kinds.item_base, self.kind_name), self.__getstate__())


def _blank_item(item_base: type[KindItem], name: str) -> KindItem:
    """An empty instance of NAME's wrapper, for pickle to fill in with the item's state."""
    wrapper = item_base.kinds.wrapper(name)
    return wrapper.__new__(wrapper)


class KindRegistry(Generic[K]):
    """One family of `- NAME: {PARAMS}` items: its classes by name and their wrapper models.

    `kind_base` is the family's kind base class (LayerKind); `item_base` is the family's wrapper
    base (a KindItem subclass with the family's accessors);
    a wrapper's name is the class's name and `suffix` (Conv2dLayer); `what` names a member in
    messages ("layer kind"); `error_type` is the pydantic error type
    reported for an unknown name or a malformed item (cnnspec.spec.errors_map turns it into a
    message with a suggestion); `definition` is the item's JSON Schema definition.
    """

    def __init__(
        self,
        item_base: type[KindItem],
        kind_base: type[Kind],
        *,
        suffix: str,
        what: str,
        error_type: str,
        shape_message: str,
        definition: str,
    ):
        self.classes: dict[str, type[K]] = {}
        self.item_base = item_base
        self.kind_base = kind_base
        item_base.kinds = self
        self.suffix = suffix
        self.what = what
        self.error_type = error_type
        self.shape_message = shape_message
        self.definition = definition
        self._wrappers: dict[str, type[KindItem]] = {}
        FAMILIES[error_type] = self

    def register(self, cls: C) -> C:
        """Class decorator: make `cls` available under `cls.kind`; refuses a name that is taken (and, for
        a kind from outside cnnspec, what `check_outsider` refuses)."""
        name = cls.kind
        existing = self.classes.get(name)
        if existing is not None and existing is not cls:
            raise KindClash(name, existing, cls, self.what)
        if not is_builtin(cls):
            self.check_outsider(cls)
        self.classes[name] = cls  # type: ignore[assignment]
        return cls

    def check_outsider(self, cls: type[Kind]) -> None:
        """Refuse a kind from outside cnnspec (a plugin's) whose name or fields would break the expander:
        a name taken up to case, '_' and '-' (KindClash), one that is not a word (BadKindName), a field
        that redefines one every kind of the family has or hides a rule of the family's base class
        (ReservedField). cnnspec's own kinds are checked by a test instead, so importing them stays fast."""
        from cnnspec.errors import fold_name

        folded = fold_name(cls.kind)
        for name, other in self.classes.items():
            if other is not cls and fold_name(name) == folded:
                raise KindClash(cls.kind, other, cls, self.what)
        if KIND_NAME.fullmatch(cls.kind) is None:
            raise BadKindName(cls, self.what)
        base = self.kind_base
        for klass in cls.__mro__:
            if klass is base:
                break
            for field in vars(klass).get("__annotations__", {}):
                if field in cls.model_fields and (field in base.model_fields or hasattr(base, field)):
                    raise ReservedField(cls, field, base, self.what)

    def wrapper(self, name: str) -> type[KindItem]:
        """The one-field model `{NAME: Class}` for a registered name, made on first use."""
        model = self._wrappers.get(name)
        if model is None:
            cls = self.classes[name]
            field = (cls, Field(description=(cls.__doc__ or name).strip().splitlines()[0]))
            model = cast(
                "type[KindItem]",
                create_model(  # type: ignore[call-overload]
                    f"{cls.__name__}{self.suffix}",
                    __base__=self.item_base,
                    __doc__=cls.__doc__,
                    __module__=self.item_base.__module__,
                    **{name: field},
                ),
            )
            model.kind_name = name
            self._wrappers[name] = model
        return model

    def bare(self) -> list[str]:
        """The names that may be written bare (`- relu`), sorted."""
        return sorted(name for name, cls in self.classes.items() if cls.may_be_bare())


# Every family by its error type (cnnspec.spec.errors_map looks the family of an error up here).
FAMILIES: dict[str, KindRegistry[Any]] = {}


def normalise(value: Any) -> Any:
    """`- relu` and `- relu:` mean `- relu: {}`."""
    if isinstance(value, str):
        return {value: {}}
    if isinstance(value, dict) and len(value) == 1:
        ((key, params),) = value.items()
        if params is None:
            return {key: {}}
    return value


def item_name(value: Any) -> str | None:
    """The NAME of a `{NAME: ...}` item, or None when the value is not a one-key mapping."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    return None


class OneKeyItem:
    """Annotated metadata that validates a `{NAME: PARAMS}` item with NAME's wrapper in `kinds`:
    `Annotated[LayerItemBase, OneKeyItem(LAYER_KINDS)]`. An unknown name or a malformed item is
    the family's error type; its context carries `name` when the item named something."""

    def __init__(self, kinds: KindRegistry[Any]):
        self.kinds = kinds

    def validate(self, value: Any) -> StrictModel:
        if isinstance(value, StrictModel):  # already validated (re-validation of a built spec)
            return value
        value = normalise(value)
        name = item_name(value)
        kinds = self.kinds
        if name is None:
            raise PydanticCustomError(kinds.error_type, kinds.shape_message)
        if name not in kinds.classes:
            raise PydanticCustomError(kinds.error_type, "unknown name '{name}'", {"name": name})
        return kinds.wrapper(name).model_validate(value)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # No serialization schema: pydantic infers it from the wrapper instance at dump time.
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"$ref": f"#/$defs/{self.kinds.definition}"}
