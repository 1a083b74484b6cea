"""A subscription whose selection set is plain fields, executed without graphql-core's machinery.

When the operation selects one subscription field of an object type, and under it only fields
that Strawberry answers with its default resolver and whose types are scalars or enums (a
:class:`~gql_pubsub.execution.fast_fields.BasicLeaf` each) or ``__typename``, an event's result
is a dict of those attributes: its :class:`FlatPlan`, worked out once per executor, builds and
encodes it directly. That is what graphql-core's execution would do, field by field (the
subscription field's resolver is Strawberry's identity, and the leaves are completed by the
same :meth:`BasicLeaf.complete` the executor uses), without collecting fields, building an
``Info`` or a per-event executor. Whatever the plan cannot complete exactly (a null root, a
value that is not a plain one, a serializer's refusal, an exception) goes the general way, so
its values and errors are exactly a full execution's.
"""

from __future__ import annotations

from typing import Any

import orjson
from graphql import FieldNode, GraphQLNonNull, GraphQLObjectType
from graphql.execution import Executor
from graphql.execution.collect_fields import FieldDetails

from gql_pubsub.execution.fast_fields import MISS, BasicLeaf, basic_leaf

TYPENAME = "__typename"


class FlatPlan:
    """How one executor's events become their payloads: the root field's response key, and each
    selected field's response key with its leaf (None: ``__typename``)."""

    __slots__ = ("fields", "key", "type_name")

    def __init__(self, key: str, type_name: str, fields: list[tuple[str, BasicLeaf | None]]):
        self.key = key
        self.type_name = type_name
        self.fields = fields

    def encode(self, root: Any) -> str | None:
        """The encoded ``next`` payload of an event whose root value is ``root``, or None: it
        takes the general path."""
        if root is None:
            return None
        result: dict[str, Any] = {}
        try:
            for key, leaf in self.fields:
                if leaf is None:
                    result[key] = self.type_name
                    continue
                value = leaf.complete(leaf.resolve(root, leaf.name))
                if value is MISS:
                    return None
                result[key] = value
        except Exception:
            return None
        return orjson.dumps({"data": {self.key: result}}).decode()


_NONE: Any = object()


def encode_planned(executor: Executor[Any], root: Any) -> str | None:
    """The event's payload from the executor's plan; None: execute it the general way.

    A plan that could not complete an event is dropped, so a selection whose values are seldom
    plain (a datetime, an enum member) costs one try per operation, not one per event, and no
    attribute is read twice per event after that."""
    plan = flat_plan(executor)
    if plan is None:
        return None
    encoded = plan.encode(root)
    if encoded is None:
        executor._gql_pubsub_plan = None  # type: ignore[attr-defined]
    return encoded


def flat_plan(executor: Executor[Any]) -> FlatPlan | None:
    """The executor's plan, if its operation has one (worked out on its first event)."""
    plan = executor.__dict__.get("_gql_pubsub_plan", _NONE)
    if plan is _NONE:
        try:
            plan = _make(executor)
        except Exception:  # anything unforeseen: the general path, which reports it
            plan = None
        executor._gql_pubsub_plan = plan  # type: ignore[attr-defined]
    return plan  # type: ignore[no-any-return]


def _known_bases() -> tuple[type, ...]:
    """graphql-core's executor, and Strawberry's (which differs in its ``Info`` only)."""
    from strawberry.schema import schema

    strawberry_executor = getattr(schema, "StrawberryGraphQLCoreExecutionContext", Executor)
    return (Executor, strawberry_executor)


def _make(executor: Executor[Any]) -> FlatPlan | None:
    if (
        type(executor).__bases__[0] not in _known_bases()  # a schema's own class: its rules
        or executor.middleware_manager is not None
        or getattr(executor, "per_viewer", None)
    ):
        return None
    schema = executor.schema
    root_type = schema.subscription_type
    selections = executor.operation.selection_set.selections
    if root_type is None or len(selections) != 1:
        return None
    node = selections[0]
    if not isinstance(node, FieldNode) or node.directives:
        return None
    field_def = schema.get_field(root_type, node.name.value)
    definition = field_def.extensions.get("strawberry-definition") if field_def else None
    if field_def is None or not getattr(definition, "is_subscription", False):
        return None  # not Strawberry's subscription field, whose resolver returns the event
    object_type = field_def.type
    if isinstance(object_type, GraphQLNonNull):
        object_type = object_type.of_type
    if not isinstance(object_type, GraphQLObjectType) or object_type.is_type_of is not None:
        return None
    collected = executor.collect_subfields(object_type, [FieldDetails(node, None)])
    if collected.new_defer_usages:
        return None
    fields: list[tuple[str, BasicLeaf | None]] = []
    for key, details in collected.grouped_field_set.items():
        if any(d.defer_usage is not None or d.fragment_variable_values for d in details):
            return None
        name = details[0].node.name.value
        if name == TYPENAME:
            fields.append((key, None))
            continue
        leaf_def = schema.get_field(object_type, name)
        leaf = basic_leaf(leaf_def) if leaf_def is not None else None
        if leaf is None:
            return None
        fields.append((key, leaf))
    key = node.alias.value if node.alias else node.name.value
    return FlatPlan(key, object_type.name, fields)
