"""The interface every broker backend implements."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, Protocol, cast, runtime_checkable

from gql_pubsub.core.events import Epochs, Offset

MessageHandler = Callable[[str, bytes, str, Offset], None]
"""Called on the broker's event loop with (channel, payload, epoch, offset) for each message,
once per offset and in order per channel (epoch ``""``: a message without a history place)."""

GapHandler = Callable[[str, str], None]
"""Called with (channel, reason) when events on a subscribed channel may have been lost."""

Entries = list[tuple[Offset, bytes]]
"""Part of a channel's history: (offset, payload) in order."""


class BrokerUnavailable(ConnectionError):
    """The broker's backend cannot be reached; the message says where and why."""


RECONNECT_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds between attempts to reconnect a subscription connection: a returned Redis is used
again within about a second (the outbox relay waits that long before it publishes)."""

PUBLISHED, DUPLICATE, DEFERRED = 1, 0, 2
"""What ``DurableBackend.publish_many_sync`` did with each event: published it; nothing (it was
already); nothing (the destination's backlog flag is up: the event must wait its turn)."""


class Backend(Protocol):
    """Moves encoded events between processes; the Broker does fan-out and refcounting.

    A backend is chosen by ``GQL_PUBSUB["BACKEND"]`` (a dotted path to its class) or by the
    scheme of ``BROKER_URL``; its class is called with the URL and the keyword arguments of
    ``backends.backend_from_url``.
    """

    durable: ClassVar[bool]
    """Whether it is a ``DurableBackend``: it keeps each channel's history, so that the
    transactional outbox and resuming from a cursor can rely on it. The in-memory backend is
    not: its events live in one process, and it has no outbox to keep."""

    @property
    def safe_url(self) -> str:
        """Where it publishes, without a password (for logs)."""

    async def connect(self, on_message: MessageHandler, on_gap: GapHandler) -> None:
        """Start receiving; ``on_message`` is called for every message on a subscribed channel."""

    async def disconnect(self) -> None:
        """Stop receiving and release every connection."""

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``; returns once the subscription is active."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""

    async def publish(self, channels: list[str], payload: bytes) -> None:
        """Publish one payload to each channel, from the event loop."""

    def publish_sync(self, channels: list[str], payload: bytes) -> None:
        """Publish one payload to each channel, from any thread (sync code)."""

    def close_sync(self) -> None:
        """Close what publishing from threads holds (a broker being replaced); reopened on use."""

    def subscribed_channels(self) -> frozenset[str]:
        """The channels this backend currently receives."""

    async def tail(self, channels: list[str]) -> tuple[Epochs, dict[str, Offset]]:
        """Each channel's history epoch and latest offset (``START``: none yet)."""

    async def history(
        self, channel: str, epoch: str, after: Offset, issued: float
    ) -> Entries | None:
        """The events of ``channel`` after ``after``, or None when the history cannot prove it
        holds all of them (another epoch, trimmed, expired). ``issued``: when (Unix time) the
        position was known to be current."""


class DurableBackend(Backend, Protocol):
    """A backend that the transactional outbox can rely on: each event published once per
    outbox row (marks), in order behind a destination's backlog (a flag), from any thread.

    Marks are names in a sorted set ``key`` (scored by time); a flag is a counter ``key`` that
    each raise changes and that expires. ``key``s are the outbox's; the backend prefixes them.
    """

    def publish_many_sync(
        self,
        events: list[tuple[list[str], bytes]],
        *,
        mark: tuple[str, list[str]] | None = None,
        backlog: str | None = None,
    ) -> list[int]:
        """Publish ``(channels, payload)`` events in order, in one round trip; with ``mark``,
        skip those whose name ``key`` holds and add the others' names in the same step; with
        ``backlog``, publish none while that flag is up. ``PUBLISHED``, ``DUPLICATE`` or
        ``DEFERRED`` for each."""

    def marked_sync(self, key: str, rows: list[tuple[str, list[str]]]) -> set[str]:
        """Which of the rows ``(name, channels)`` the marks ``key`` hold."""

    def unmark_sync(self, key: str, rows: list[tuple[str, list[str]]]) -> None:
        """Forget the rows ``(name, channels)`` in the marks ``key``."""

    def prune_marks_sync(self, key: str, before: float, channels: Iterable[str] = ()) -> None:
        """Forget the marks added before ``before`` (Unix time); ``channels``: those of the
        rows just tidied."""

    def raise_flag_sync(self, key: str, seconds: float) -> None:
        """Raise (or bump) the flag ``key`` for ``seconds``."""

    def flag_sync(self, key: str) -> bytes | None:
        """The flag's value now (None: not raised)."""

    def lower_flag_sync(self, key: str, seen: bytes | None) -> None:
        """Lower the flag unless it was raised again since its value was ``seen``."""

    def ping_sync(self) -> None:
        """Raise ``BrokerUnavailable`` unless the backend answers now."""


PresenceRows = tuple[str, Offset, list[tuple[str, str, int, int]]]
"""A channel's presence read in one step: the epoch, where its presence channel's history ends,
and its members as (member, info JSON, since in Unix ms, connections)."""


@runtime_checkable
class PresenceBackend(Protocol):
    """A backend that keeps presence: connections of members on a channel, each expiring unless
    renewed, whose joins and leaves are events of the channel's presence channel."""

    async def presence(
        self,
        presence_channel: str,
        *,
        joins: Sequence[tuple[str, str, str]] = (),
        leaves: Sequence[str] = (),
        ttl: float,
        state: bool = False,
    ) -> PresenceRows | None:
        """Apply ``joins`` ``(connection, member, info JSON)`` (renewing known connections; each
        expires ``ttl`` seconds from now) and ``leaves``, let expired connections go, and publish
        one event of who came and went; with ``state``, answer the members, read in that step."""

    def presence_sync(self, presence_channel: str, *, ttl: float) -> PresenceRows:
        """The members now, from sync code (expired connections leave first)."""

    async def publish_ephemeral(
        self, channel: str, payload: bytes, *, sender: str, rate: int, window: float
    ) -> bool:
        """Publish ``payload`` on ``channel`` with no place in a history (nothing keeps it, no
        resume replays it); False, and nothing sent, past ``rate`` from ``sender`` on that
        channel within ``window`` seconds."""


def durable(backend: Backend) -> DurableBackend | None:
    """``backend`` as a ``DurableBackend``, if it declares it is one (None: it is not)."""
    return cast(DurableBackend, backend) if backend.durable else None


def covered(
    after: Offset,
    *,
    exists: bool,
    first: Offset | None,
    trimmed: bool,
    issued: float,
    age: float,
) -> bool:
    """Whether a history proves it holds every event after ``after`` (same epoch assumed).

    ``issued``: when the position was known to be current (nothing after ``after`` published
    before then). The entry at ``after`` (or an older one) still being there proves it. So does,
    while ``issued`` is recent enough that no history can have expired since (``age``), a history
    that is gone (nothing was published since) or that was never trimmed. Anything else may
    have lost events: the client must refetch.
    """
    if first is not None and first <= after:
        return True
    return time.time() - issued < age * 0.9 and (not exists or not trimmed)
