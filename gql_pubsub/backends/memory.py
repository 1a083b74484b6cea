"""In-process backend: one process, no server; for development and downstream tests."""

from __future__ import annotations

import asyncio
import threading

from .base import MessageHandler


class MemoryBackend:
    """Delivers published payloads to this process's subscribers only."""

    def __init__(self, url: str, *, prefix: str = "", health_check_interval: float = 0) -> None:
        self._on_message: MessageHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._channels: set[str] = set()

    async def connect(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    async def disconnect(self) -> None:
        self._on_message = None
        self._loop = None
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    def subscribed_channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def publish(self, channels: list[str], payload: bytes) -> None:
        self._deliver(channels, payload)

    def publish_sync(self, channels: list[str], payload: bytes) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody in this process listens: nothing to deliver to
        if threading.get_ident() == self._loop_thread:
            self._deliver(channels, payload)
        else:
            loop.call_soon_threadsafe(self._deliver, channels, payload)

    def _deliver(self, channels: list[str], payload: bytes) -> None:
        handler = self._on_message
        if handler is None:
            return
        for channel in channels:
            if channel in self._channels:
                handler(channel, payload)
