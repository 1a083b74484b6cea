"""The executor class a subscription's events run on: graphql-core's (or the schema's), with
the sub-selections collected once per operation and plain attribute fields read directly."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLObjectType
from graphql.execution import Executor
from graphql.execution.collect_fields import collect_subfields
from graphql.pyutils import Path

from gql_pubsub.execution.fast_fields import MISS, basic_leaf

SUBFIELDS_MEMO = 1024
"""Sub-selections an operation's memo keeps at most (its shapes: one per object field and
runtime type, however many events)."""

_fixed: dict[type[Executor[Any]], type[Executor[Any]]] = {}
"""The class made for each base class, once."""


def per_event_executor_class(base: type[Executor[Any]]) -> type[Executor[Any]]:
    """``base``, whose per-event executors share one memo of sub-selections, keyed by what
    they are made of.

    graphql-core's copies share their original's memo, keyed by the identity of lists made anew
    for each event: it grew by an entry (some 16 objects) per event for as long as a
    subscription lived, and never answered. Keyed by the field nodes (the document's, which the
    executor keeps), it answers from the second event on: the sub-selections are collected once
    per operation, not once per event (a third of a small selection's execution).
    """
    if getattr(base, "_gql_pubsub_own_memo", False):
        return base
    fixed = _fixed.get(base)
    if fixed is None:

        class OwnMemo(base):  # type: ignore[valid-type,misc]
            _gql_pubsub_own_memo = True

            def build_per_event_executor(self, payload: Any) -> Executor[Any]:
                memo = self.__dict__.get("_gql_pubsub_subfields")
                if memo is None:
                    memo = self._gql_pubsub_subfields = {}  # type: ignore[var-annotated]
                executor: Any = super().build_per_event_executor(payload)
                executor._relevant_sub_fields = memo
                return executor  # type: ignore[no-any-return]

            def collect_subfields(self, return_type: Any, field_details_list: Any) -> Any:
                memo = self._relevant_sub_fields
                key = (
                    return_type,
                    *[
                        (id(d.node), id(d.defer_usage), id(d.fragment_variable_values))
                        for d in field_details_list
                    ],
                )
                cached = memo.get(key)
                if cached is not None:
                    return cached[1]
                collected = collect_subfields(
                    self.schema,
                    self.fragments,
                    self.variable_values,
                    self.operation,
                    return_type,
                    field_details_list,
                    self.hide_suggestions,
                )
                if len(memo) >= SUBFIELDS_MEMO:
                    memo.clear()
                # The list stays with its entry: the objects whose ids are the key live on.
                memo[key] = (field_details_list, collected)
                return collected

            def execute_field(
                self,
                parent_type: GraphQLObjectType,
                source: Any,
                field_details_list: Any,
                path: Path,
                position_context: Any,
            ) -> Any:
                name = field_details_list[0].node.name.value
                field_def = self.schema.get_field(parent_type, name)
                leaf = basic_leaf(field_def) if field_def is not None else None
                if leaf is None or self.middleware_manager:
                    return super().execute_field(
                        parent_type, source, field_details_list, path, position_context
                    )
                return_type = field_def.type
                try:  # what Strawberry's basic resolver does
                    value = leaf.resolve(source, leaf.name)
                    completed = leaf.complete(value)
                    if completed is not MISS:
                        return completed
                    info = self.build_resolve_info(
                        field_def, [d.node for d in field_details_list], parent_type, path
                    )
                    if self.is_awaitable(value):
                        return self.complete_awaitable_value(
                            return_type, field_details_list, info, path, value, position_context
                        )
                    return self.complete_value(  # a leaf's completion never awaits
                        return_type, field_details_list, info, path, value, position_context
                    )
                except Exception as raw_error:
                    self.handle_field_error(raw_error, return_type, field_details_list, path)
                    return None

        OwnMemo.__name__ = OwnMemo.__qualname__ = base.__name__
        fixed = _fixed[base] = OwnMemo
    return fixed
