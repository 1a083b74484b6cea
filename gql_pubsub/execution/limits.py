"""Limits on what one client may ask: operation depth and size, and its rate of operations."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)


def operation_limits_rule(max_depth: int, max_fields: int) -> type[ValidationRule]:
    """A validation rule refusing operations nested deeper than ``max_depth`` fields or
    selecting more than ``max_fields`` fields in all (fragments counted where spread)."""

    class OperationLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments: dict[str, FragmentDefinitionNode] = {}

        def enter_document(self, node: Any, *args: Any) -> None:
            self.fragments = {
                d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *args: Any) -> None:
            depth, fields = self._measure(node.selection_set, 0, set())
            name = node.name.value if node.name else "the operation"
            if depth > max_depth:
                self.report_error(
                    GraphQLError(
                        f"{name} is nested {depth} levels deep; the limit is {max_depth}.", node
                    )
                )
            if fields > max_fields:
                self.report_error(
                    GraphQLError(
                        f"{name} selects {fields} fields; the limit is {max_fields}.", node
                    )
                )

        def _measure(
            self, selection_set: SelectionSetNode | None, depth: int, seen: set[str]
        ) -> tuple[int, int]:
            if selection_set is None:
                return depth, 0
            deepest, fields = depth, 0
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    inner_depth, inner_fields = self._measure(
                        selection.selection_set, depth + 1, seen
                    )
                    deepest, fields = max(deepest, inner_depth), fields + 1 + inner_fields
                elif isinstance(selection, InlineFragmentNode):
                    inner_depth, inner_fields = self._measure(selection.selection_set, depth, seen)
                    deepest, fields = max(deepest, inner_depth), fields + inner_fields
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if fragment is None or name in seen:
                        continue  # unknown or cyclic: other rules report it
                    inner_depth, inner_fields = self._measure(
                        fragment.selection_set, depth, seen | {name}
                    )
                    deepest, fields = max(deepest, inner_depth), fields + inner_fields
                if fields > max_fields * 10:  # stop early on absurd documents
                    break
            return deepest, fields

    return OperationLimits


class RateLimit:
    """A token bucket: ``rate`` operations per second on average, bursts of ``burst``."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def allow(self) -> bool:
        """Take one token if there is one."""
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
