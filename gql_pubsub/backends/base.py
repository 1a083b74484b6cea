"""The interface every broker backend implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

MessageHandler = Callable[[str, bytes], None]
"""Called on the broker's event loop with (channel, payload) for each received message."""


class BrokerUnavailable(ConnectionError):
    """The broker's backend cannot be reached; the message says where and why."""


class Backend(Protocol):
    """Moves encoded events between processes; the Broker does fan-out and refcounting."""

    safe_url: str
    """Where it publishes, without a password (for logs)."""

    async def connect(self, on_message: MessageHandler) -> None:
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

    def subscribed_channels(self) -> frozenset[str]:
        """The channels this backend currently receives."""
