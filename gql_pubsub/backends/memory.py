"""In-process backend: one process, no server; for development and downstream tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

from .base import MessageHandler

logger = logging.getLogger("gql_pubsub.broker")


class MemoryBackend:
    """Delivers published payloads to this process's subscribers only."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        health_check_interval: float = 0,
        publish_timeout: float = 0,
    ) -> None:
        self.safe_url = url
        self._on_message: MessageHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._channels: set[str] = set()
        self._worker_lock: IO[bytes] | None = None

    async def connect(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if _is_server_worker():
            self._worker_lock, siblings = _register_worker()
            if siblings:
                logger.warning(
                    "This process is one of %d worker processes of one server, but the "
                    "in-memory broker reaches only the sockets of its own process: events "
                    "published in one worker never reach subscribers in another. Set "
                    "GQL_PUBSUB['BROKER_URL'] to redis://… (or run a single worker).",
                    siblings + 1,
                )

    async def disconnect(self) -> None:
        self._on_message = None
        self._loop = None
        self._channels.clear()
        if self._worker_lock is not None:
            _unregister_worker(self._worker_lock)
            self._worker_lock = None

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


def _is_server_worker() -> bool:
    """Whether this process is a worker of a multi-process server (uvicorn, gunicorn)."""
    return multiprocessing.parent_process() is not None or "gunicorn.workers.base" in sys.modules


def _register_worker() -> tuple[IO[bytes] | None, int]:
    """Hold a lock file among this server's workers; count the siblings that hold theirs.

    Workers of one server share their parent process; each holds an ``flock`` on its own file
    for as long as it lives, so a dead worker's file is free and counts for nothing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        return None, 0
    directory = Path(tempfile.gettempdir()) / f"gql_pubsub-workers-{os.getppid()}"
    directory.mkdir(exist_ok=True)
    own = (directory / f"{os.getpid()}.lock").open("wb")
    fcntl.flock(own, fcntl.LOCK_EX | fcntl.LOCK_NB)
    siblings = 0
    for path in directory.glob("*.lock"):
        if path.name == f"{os.getpid()}.lock":
            continue
        with contextlib.suppress(FileNotFoundError), path.open("rb") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                siblings += 1  # a live worker holds it
            else:
                path.unlink(missing_ok=True)  # left by a worker that is gone
    return own, siblings


def _unregister_worker(lock: IO[bytes]) -> None:
    Path(lock.name).unlink(missing_ok=True)
    lock.close()
