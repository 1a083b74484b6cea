"""The interface every broker backend implements."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ..events import Epochs, Offset

MessageHandler = Callable[[str, bytes, str, Offset], None]
"""Called on the broker's event loop with (channel, payload, epoch, offset) for each message,
once per offset and in order per channel (epoch ``""``: a message without a history place)."""

GapHandler = Callable[[str, str], None]
"""Called with (channel, reason) when events on a subscribed channel may have been lost."""

Entries = list[tuple[Offset, bytes]]
"""Part of a channel's history: (offset, payload) in order."""


class BrokerUnavailable(ConnectionError):
    """The broker's backend cannot be reached; the message says where and why."""


class Backend(Protocol):
    """Moves encoded events between processes; the Broker does fan-out and refcounting."""

    safe_url: str
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
