"""Per-viewer fields spliced into a shared result.

When only some fields of a subscription can depend on who receives it (``viewers``), its group
executes the selection set once per event with nobody's context, leaving a marked hole where
each such field goes, and encodes that result once: a :class:`Template`. Each member then
resolves only the holes' fields, with its own context and executor, and its frame is the
template's text with their encoded values in between, filled once per event for each user (as a
group of one user's subscribers would execute once). A member whose fields raise (or when the
shared part had errors) gets the whole operation executed for it instead, so its errors are
exactly what one execution of its own would give.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, NamedTuple

import orjson
from graphql import ExecutionResult, GraphQLError, GraphQLObjectType
from graphql.execution import Executor
from graphql.pyutils import Path

from gql_pubsub.execution import fast_fields
from gql_pubsub.execution.fast_fields import FieldPlan
from gql_pubsub.execution.viewers import PerViewer

_NONCE = secrets.token_hex(8)
"""Part of every hole's mark: a result's own strings cannot forge one."""

_MARK = f"\x00gql_pubsub:{_NONCE}:"
_MARKED = re.compile(re.escape(orjson.dumps(_MARK).decode()[:-1]) + r'(\d+)"')
"""A hole in the encoded result: its mark, as JSON encodes it, then its index."""


Whole = Callable[[Executor[Any], Any], Awaitable[str]]
"""Executes the whole operation with a member's executor on a root value: its payload without
its ``}``."""


class Hole(NamedTuple):
    """Where a per-viewer field goes: what graphql-core's ``execute_field`` takes."""

    parent_type: GraphQLObjectType
    source: Any
    fields: Any
    path: Path


class Template:
    """One event's result with holes: the encoded text around them, and what fills them (or,
    when the shared part had errors, nothing shared: each viewer's execution is whole)."""

    __slots__ = ("executor", "filled", "holes", "parts", "plans")

    def __init__(self, parts: list[str] | None, holes: list[Hole], executor: Executor[Any]) -> None:
        self.parts = parts
        """The text before, between and after the holes (the payload without its ``}``); None:
        every viewer executes it all."""
        self.holes = holes
        """The holes, in the order of the text."""
        self.executor = executor
        """The event's executor, which left the holes."""
        self.filled: dict[Hashable, str] = {}
        """The payloads filled so far, by viewer."""
        self.plans: list[FieldPlan] | None = None
        """The holes' fast paths (``fast_fields``), made at the first fill; empty: some hole has
        none, so every viewer takes the general path."""

    def ready(self, context: Any, viewer: Hashable) -> str | None:
        """The payload for ``viewer`` if it is filled or its holes' fast paths fill it now
        (None: :meth:`fill` it)."""
        text = self.filled.get(viewer)
        if text is None:
            text = self._fast(context)
            if text is not None:
                self.filled[viewer] = text
        return text

    async def fill(self, context: Any, viewer: Hashable, whole: Whole) -> str:
        """The payload (without its ``}``) for ``viewer``, whose member's context is
        ``context``; ``whole`` executes all of it for the member when a hole's field fails."""
        text = self.ready(context, viewer)
        if text is None:
            text = self.filled[viewer] = await self._fill(context, whole)
        return text

    def _fast(self, context: Any) -> str | None:
        parts = self.parts
        plans = self.plans
        if plans is None:
            made = [fast_fields.plan(self.executor, *hole) for hole in self.holes]
            plans = self.plans = [p for p in made if p is not None]
            if len(plans) != len(made) or parts is None:
                plans.clear()
        if not plans or parts is None:
            return None
        text = parts[0]
        for n, field_plan in enumerate(plans, 1):
            value = field_plan.value(context)
            if value is fast_fields.MISS:
                return None
            text += orjson.dumps(value).decode() + parts[n]
        return text

    async def _fill(self, context: Any, whole: Whole) -> str:
        executor = _viewers_executor(self.executor, context)
        parts = self.parts
        values = []
        if parts is not None:
            try:
                for hole in self.holes:
                    value = executor.execute_field(
                        hole.parent_type, hole.source, hole.fields, hole.path, None
                    )
                    if executor.is_awaitable(value):
                        value = await value
                    values.append(value)
            except GraphQLError:  # a non-null field failed: its error nulls a parent
                values = []
        if parts is None or len(values) != len(self.holes) or executor.collected_errors.errors:
            executor.collected_errors = type(executor.collected_errors)()
            return await whole(executor, executor.root_value)
        text = parts[0]
        for n, value in enumerate(values, 1):
            text += orjson.dumps(value).decode() + parts[n]
        return text


def _viewers_executor(executor: Any, context: Any) -> Executor[Any]:
    """A copy of an event's executor (which left holes) that resolves everything with the
    viewer's ``context``: members keep no executor of their own between events."""
    viewers: Any = object.__new__(type(executor))
    viewers.__dict__.update(executor.__dict__)
    viewers.context_value = context
    viewers.per_viewer = {}  # it leaves no holes
    viewers.collected_errors = type(executor.collected_errors)()
    # Its memo of sub-selections is keyed by this event's lists: its own, for this event.
    viewers._relevant_sub_fields = {}
    return viewers  # type: ignore[no-any-return]


Body = str | Template
"""A group's rendering of one event: the payload without its ``}`` when it is the same for every
member, else what each member fills."""


def template(result: ExecutionResult, encoded: str, executor: Any) -> Body:
    """The template of a result that ``executor`` executed with holes (``encoded`` is its
    payload without its ``}``): a plain string if no hole made it into the result."""
    if result.errors:
        return Template(None, [], executor)
    pieces = _MARKED.split(encoded)
    if len(pieces) == 1:
        return encoded
    holes: list[Hole] = executor.holes
    return Template(pieces[0::2], [holes[int(n)] for n in pieces[1::2]], executor)


_with_holes: dict[type[Executor[Any]], type[Executor[Any]]] = {}


def executor_with_holes(base: type[Executor[Any]]) -> type[Executor[Any]]:
    """``base``, with per-viewer fields left as marked holes (set ``per_viewer`` on the
    instance)."""
    known = _with_holes.get(base)
    if known is not None:
        return known

    class WithHoles(base):  # type: ignore[valid-type,misc]
        per_viewer: PerViewer = {}
        holes: list[Hole]

        def build_per_event_executor(self, payload: Any) -> Executor[Any]:
            executor: Any = super().build_per_event_executor(payload)
            executor.holes = []
            return executor  # type: ignore[no-any-return]

        def execute_field(
            self,
            parent_type: GraphQLObjectType,
            source: Any,
            field_details_list: Any,
            path: Path,
            position_context: Any,
        ) -> Any:
            if id(field_details_list[0].node) in self.per_viewer:
                self.holes.append(Hole(parent_type, source, field_details_list, path))
                return f"{_MARK}{len(self.holes) - 1}"
            return super().execute_field(
                parent_type, source, field_details_list, path, position_context
            )

    WithHoles.__name__ = WithHoles.__qualname__ = f"{base.__name__}WithHoles"
    _with_holes[base] = WithHoles
    return WithHoles
