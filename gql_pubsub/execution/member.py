"""A group's member: one subscriber's place in a fan-out group, and what a group needs of its
source stream and of its members' owners."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Hashable, Set
from typing import Any, Protocol

from gql_pubsub.broker.broker import Broker
from gql_pubsub.core.events import Event, Offset
from gql_pubsub.execution.splice import Body


class Sender(Protocol):
    """Where a member's frames go: its connection's send buffer."""

    async def send(self, frame: str) -> None: ...


class Finisher(Protocol):
    """Ends one of its operations (an :class:`~gql_pubsub.operations.Operations`)."""

    async def finish(self, op_id: str, error: str | None) -> None:
        """``complete`` it, or ``next`` with this error then ``complete``."""


class Source(Protocol):
    """What a group streams: a :class:`~gql_pubsub.subscriptions.ChannelStream`, or
    :class:`Followed`."""

    @property
    def channels(self) -> Set[str]: ...
    @property
    def broker(self) -> Broker: ...
    def accepts(self, event: Event) -> bool: ...
    def map(self, event: Event) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Followed:
    """The source of a group of followed-channel streams: no channels of its own, its members'
    streams let events through (their channels, kinds and access checked)."""

    broker: Broker
    map: Callable[[Event], Any]
    channels: frozenset[str] = frozenset()

    def accepts(self, event: Event) -> bool:
        return True


class Member:
    """One subscriber in a group: where its frames go, and what its protocol puts around a
    result's payload (for graphql-transport-ws, the prefix names its operation)."""

    __slots__ = (
        "context",
        "detach",
        "held",
        "op_id",
        "ops",
        "positions",
        "prefix",
        "send_buffer",
        "suffix",
        "viewer",
    )

    def __init__(
        self, prefix: str, suffix: str, send_buffer: Sender, ops: Finisher, op_id: str
    ) -> None:
        self.prefix = prefix
        self.suffix = suffix
        self.send_buffer = send_buffer
        """Where its frames go (``send_buffer.send(frame)``: no bound method kept a member)."""
        self.ops = ops
        """Its operation's owner, which ``finish`` asks to end it (no closure a member)."""
        self.op_id = op_id
        self.context: Any = None
        """Its context, in a group whose results have per-viewer fields for it to fill."""
        self.viewer: Hashable = None
        """Whose view it fills them with (its user's: once per event for all their members)."""
        self.held: list[tuple[str, Offset, Body]] | None = None
        """While it catches up: the group's frames (channel, offset, body) that wait for it."""
        self.positions: dict[str, Offset] | None = None
        """Where it is, while that differs from where its group is (else None)."""
        self.detach: Callable[[], Awaitable[None]] | None = None
        """Stops the member's own followed-channel stream when it leaves."""

    def finish(self, error: str | None) -> Awaitable[None]:
        """End its operation: ``complete``, or ``next`` with ``error`` then ``complete``."""
        return self.ops.finish(self.op_id, error)


Takers = list[tuple[Member, str | None]]
"""The members an event was let through for, each with its cursor (None: it asked for none)."""
