"""Per-viewer fields resolved without graphql-core's field machinery.

``splice`` fills each hole of a shared result once per viewer. When the hole's field is a plain
Strawberry method (no arguments, a scalar or enum result, no field extension but permission
classes whose ``has_permission`` is a plain function), its :class:`FieldPlan`, made once per
event, calls the permission checks and the resolver with an ``Info`` whose context is the
viewer's, and serializes the value as graphql-core's leaf completion does: the same calls
Strawberry's resolver chain would make, without building the chain, the arguments and an
executor for each viewer. Whatever else happens (an exception, a denied permission, an awaitable
where a value was expected, a null for a non-null field) is :data:`MISS`: the general path
resolves that viewer's result, so its values and errors are exactly those of a full execution.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
)
from graphql.pyutils import Path, Undefined

MISS: Any = object()
"""A plan's answer when the general path must resolve the field for this viewer."""

_PLAIN = frozenset({str, int, float, bool})
"""Results that are certainly not awaitable (the check costs more than the rest)."""

_CONTEXT_AT = GraphQLResolveInfo._fields.index("context")


class _Static:
    """What a field's plans share, worked out once per field of the schema."""

    __slots__ = (
        "definition",
        "function",
        "info_class",
        "info_name",
        "nullable",
        "permissions",
        "self_arg",
        "serialize",
        "source_names",
    )

    def __init__(
        self,
        leaf: tuple[bool, Any],
        definition: Any,
        resolver: Any,
        permissions: list[Any],
        info_class: type,
    ) -> None:
        self.nullable, self.serialize = leaf
        self.definition = definition
        self.info_class = info_class
        self.function = resolver.wrapped_func
        self.self_arg = resolver.self_parameter is not None
        self.source_names = tuple(
            p.name for p in (resolver.root_parameter, resolver.parent_parameter) if p is not None
        )
        info = resolver.info_parameter
        self.info_name: str | None = info.name if info is not None else None
        self.permissions = permissions


T = TypeVar("T")

PER_FIELD = 4096
"""Fields a cache of this module keeps at most (schemas made and dropped, as tests do: it
starts over)."""


def _per_field(
    cache: dict[int, tuple[Any, T | None]], field_def: Any, make: Callable[[], T | None]
) -> T | None:
    """``make()``'s answer for a schema's field, worked out once: keyed by the field's id, with
    the field itself kept in the entry, so that the id is never another field's."""
    entry = cache.get(id(field_def))
    if entry is None or entry[0] is not field_def:
        if len(cache) >= PER_FIELD:
            cache.clear()
        entry = cache[id(field_def)] = (field_def, make())
    return entry[1]


def _leaf(field_def: Any) -> tuple[bool, Any] | None:
    """Whether the field is nullable, and its type's serializer, if that type is a scalar or an
    enum (None: it is not)."""
    return_type = field_def.type
    nullable = not isinstance(return_type, GraphQLNonNull)
    leaf = return_type if nullable else return_type.of_type
    if not isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
        return None
    return nullable, leaf.serialize


_statics: dict[int, tuple[Any, _Static | None]] = {}
"""By schema field: its shared part, or None when it has no fast path."""


def _static(schema: Any, field_def: Any) -> _Static | None:
    return _per_field(_statics, field_def, lambda: _compile(schema, field_def))


def _compile(schema: Any, field_def: Any) -> _Static | None:
    from strawberry.permission import PermissionExtension
    from strawberry.types.field import StrawberryField

    strawberry_schema = getattr(schema, "_strawberry_schema", None)
    config = getattr(strawberry_schema, "config", None)
    definition = field_def.extensions.get("strawberry-definition")
    if config is None or type(definition) is not StrawberryField or field_def.args:
        return None  # strawberry_django's fields run resolvers in a thread: theirs to call
    resolver = definition.base_resolver
    if resolver is None or resolver.is_async or not callable(resolver.wrapped_func):
        return None
    leaf = _leaf(field_def)
    if leaf is None:
        return None
    permissions: list[Any] = []
    for extension in definition.extensions:
        if type(extension) is not PermissionExtension:
            return None
        for permission in extension.permissions:
            if inspect.iscoroutinefunction(permission.has_permission):
                return None
            permissions.append(permission)
    return _Static(leaf, definition, resolver, permissions, config.info_class)


class FieldPlan:
    """One hole of one event: its field's resolver, called for each viewer."""

    __slots__ = ("after", "before", "source", "static")

    def __init__(self, static: _Static, info: GraphQLResolveInfo[Any], source: Any) -> None:
        self.static = static
        self.source = source
        at = _CONTEXT_AT
        self.before = tuple(info[:at])
        self.after = tuple(info[at + 1 :])

    def value(self, context: Any) -> Any:
        """The field's serialized value for a viewer whose context is ``context``, or MISS."""
        static = self.static
        source = self.source
        try:
            raw = tuple.__new__(GraphQLResolveInfo, (*self.before, context, *self.after))
            info = static.info_class(_raw_info=raw, _field=static.definition)
            for permission in static.permissions:
                if permission.has_permission(source, info) is not True:
                    return MISS  # denied, or not a bool: Strawberry's errors, by the general path
            kwargs = dict.fromkeys(static.source_names, source)
            if static.info_name is not None:
                kwargs[static.info_name] = info
            result = (
                static.function(source, **kwargs) if static.self_arg else static.function(**kwargs)
            )
            if result is None:
                return None if static.nullable else MISS
            if type(result) not in _PLAIN and inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                return MISS
            value = static.serialize(result)
        except Exception:
            return MISS
        return MISS if value is None or value is Undefined else value


def plan(
    executor: Any, parent_type: GraphQLObjectType, source: Any, fields: Any, path: Path
) -> FieldPlan | None:
    """The fast path of a hole, if its field has one (None: the general path fills it)."""
    field_def = executor.schema.get_field(parent_type, fields[0].node.name.value)
    static = _static(executor.schema, field_def) if field_def is not None else None
    if static is None:
        return None
    info = executor.build_resolve_info(field_def, [d.node for d in fields], parent_type, path)
    return FieldPlan(static, info, source)


class BasicLeaf:
    """A shared field that Strawberry answers with its default resolver (an attribute, no
    resolver, arguments or extensions) and whose type is a scalar or an enum: what its value
    is, without an ``Info``, the resolver chain or graphql-core's completion when the
    attribute is a plain value (anything else completes the general way)."""

    __slots__ = ("name", "nullable", "resolve", "serialize")

    def __init__(self, leaf: tuple[bool, Any], definition: Any) -> None:
        self.nullable, self.serialize = leaf
        self.resolve = definition.default_resolver
        self.name = definition.python_name

    def complete(self, value: Any) -> Any:
        """The serialized value of a resolved ``value``, or MISS: complete it the general way
        (None for a non-null field, a value that is not a plain one, a serializer's refusal)."""
        if value is None:
            return None if self.nullable else MISS
        if type(value) not in _PLAIN:
            return MISS
        try:
            serialized = self.serialize(value)
        except Exception:
            return MISS
        return MISS if serialized is None or serialized is Undefined else serialized


_leaves: dict[int, tuple[Any, BasicLeaf | None]] = {}
"""By schema field: its :class:`BasicLeaf`, or None when it is not one."""


def basic_leaf(field_def: Any) -> BasicLeaf | None:
    """The field's :class:`BasicLeaf`, if it is one (worked out once per field)."""
    return _per_field(_leaves, field_def, lambda: _basic_leaf(field_def))


def _basic_leaf(field_def: Any) -> BasicLeaf | None:
    from strawberry.types.field import StrawberryField

    definition = field_def.extensions.get("strawberry-definition")
    leaf = _leaf(field_def)
    if (
        leaf is None
        or type(definition) is not StrawberryField  # a subclass may resolve it its own way
        or definition.base_resolver is not None
        or definition.extensions
        or field_def.args
        or not getattr(field_def.resolve, "_is_default", False)  # Strawberry's basic resolver
    ):
        return None
    return BasicLeaf(leaf, definition)
