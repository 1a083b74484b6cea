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
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from gql_pubsub.broker.backends.base import (
    Backend,
    Entries,
    GapHandler,
    MessageHandler,
    PresenceBackend,
    PresenceRows,
    covered,
)
from gql_pubsub.broker.backends.memory_presence import PresenceTable
from gql_pubsub.core.events import START, Epochs, Offset

logger = logging.getLogger("gql_pubsub.broker")


class MemoryBackend:
    """Delivers published payloads to this process's subscribers only."""

    durable: ClassVar[bool] = False
    """Not a ``DurableBackend``: its events stay in this process, so there is no outbox to keep
    them through an outage and no other process to reach. Its history serves resuming within
    the process only, and is lost with it."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        health_check_interval: float = 0,
        publish_timeout: float = 0,
        history_length: int = 1000,
        history_age: float = 600.0,
    ) -> None:
        self.safe_url = url
        self.history_length = history_length
        self.history_age = history_age
        self.epoch = uuid.uuid4().hex[:16]  # this process's history: a restart loses it
        self._history: dict[str, deque[tuple[Offset, bytes, float]]] = {}
        self._last: dict[str, Offset] = {}
        self._deleted: dict[str, Offset] = {}  # the last offset trimmed, per channel
        self._lock = threading.Lock()
        self._on_message: MessageHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._channels: set[str] = set()
        self._worker_lock: IO[bytes] | None = None
        self._presence_tables: dict[str, PresenceTable] = {}
        self._rates: dict[tuple[str, str], tuple[int, float]] = {}

    async def connect(self, on_message: MessageHandler, on_gap: GapHandler) -> None:
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if _is_server_worker() and self._worker_lock is None:
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
        with self._lock:
            self._deliver(self._record(channels, payload))

    def publish_sync(self, channels: list[str], payload: bytes) -> None:
        with self._lock:  # offsets are taken and handed to the loop in the same order
            self._hand_over(self._record(channels, payload))

    async def presence(
        self,
        presence_channel: str,
        *,
        joins: Sequence[tuple[str, str, str]] = (),
        leaves: Sequence[str] = (),
        ttl: float,
        state: bool = False,
    ) -> PresenceRows | None:
        """See ``PresenceBackend.presence``."""
        return self._presence(presence_channel, joins, leaves, ttl, state)

    def presence_sync(self, presence_channel: str, *, ttl: float) -> PresenceRows:
        """See ``PresenceBackend.presence_sync``."""
        rows = self._presence(presence_channel, (), (), ttl, True)
        assert rows is not None
        return rows

    def _presence(
        self,
        presence_channel: str,
        joins: Sequence[tuple[str, str, str]],
        leaves: Sequence[str],
        ttl: float,
        state: bool,
    ) -> PresenceRows | None:
        with self._lock:
            table = self._presence_tables.setdefault(presence_channel, PresenceTable())
            event = table.change(joins, leaves, ttl)
            if event is not None:
                self._hand_over(self._record([presence_channel], event))
            if not state:
                return None
            return self.epoch, self._last.get(presence_channel, START), table.rows()

    async def publish_ephemeral(
        self, channel: str, payload: bytes, *, sender: str, rate: int, window: float
    ) -> bool:
        """See ``PresenceBackend.publish_ephemeral``."""
        now = time.monotonic()
        key = (channel, sender)
        count, until = self._rates.get(key, (0, 0.0))
        if until <= now:
            count, until = 0, now + window
            if len(self._rates) > 10_000:  # bounded: forget the windows that are over
                self._rates = {k: v for k, v in self._rates.items() if v[1] > now}
        if rate and count >= rate:
            return False
        self._rates[key] = (count + 1, until)
        with self._lock:
            self._hand_over([(channel, START, payload)])  # no place: epoch "" below
        return True

    def _hand_over(self, placed: list[tuple[str, Offset, bytes]]) -> None:
        """Deliver recorded events on the loop, now if this is its thread (under the lock)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody in this process listens: the history keeps it
        if threading.get_ident() == self._loop_thread:
            self._deliver(placed)
        else:
            loop.call_soon_threadsafe(self._deliver, placed)

    def close_sync(self) -> None:
        if self._worker_lock is not None:  # a broker replaced (settings changed) lets it go
            _unregister_worker(self._worker_lock)
            self._worker_lock = None

    def _record(self, channels: list[str], payload: bytes) -> list[tuple[str, Offset, bytes]]:
        """Give the event its place in each channel's history (bounded by length and age)."""
        now = time.monotonic()
        placed = []
        # orjson's bytes each keep the 4 KB buffer they were written in; the history keeps an
        # exact copy (an event of 200 bytes costs 0.2 KB there, not 4 KB).
        payload = memoryview(payload).tobytes()
        for channel in channels:
            last = self._last.get(channel, START)
            offset = self._last[channel] = Offset(0, last.seq + 1)
            entries = self._history.setdefault(channel, deque())
            entries.append((offset, payload, now))
            while len(entries) > self.history_length or entries[0][2] < now - self.history_age:
                self._deleted[channel] = entries.popleft()[0]
            placed.append((channel, offset, payload))
        return placed

    def _deliver(self, placed: list[tuple[str, Offset, bytes]]) -> None:
        handler = self._on_message
        if handler is None:
            return
        for channel, offset, payload in placed:
            if channel in self._channels:  # START: an ephemeral message, with no place
                handler(channel, payload, self.epoch if offset != START else "", offset)

    async def tail(self, channels: list[str]) -> tuple[Epochs, dict[str, Offset]]:
        with self._lock:
            return dict.fromkeys(channels, self.epoch), {
                c: self._last.get(c, START) for c in channels
            }

    async def history(
        self, channel: str, epoch: str, after: Offset, issued: float
    ) -> Entries | None:
        if epoch != self.epoch:
            return None
        with self._lock:
            entries = list(self._history.get(channel, ()))
            trimmed = channel in self._deleted
        if not covered(
            after,
            exists=bool(entries) or trimmed,
            first=entries[0][0] if entries else None,
            trimmed=trimmed,
            issued=issued,
            age=self.history_age,
        ):
            return None
        return [(offset, payload) for offset, payload, _ in entries if offset > after]


_told_unserved = False


def published_unserved(backend: object) -> None:
    """A publish from a process that serves no application: if ``backend`` is the in-memory
    one, warn (once per process) that no other process's subscribers get the event."""
    global _told_unserved
    if _told_unserved or not isinstance(backend, MemoryBackend):
        return
    _told_unserved = True
    logger.warning(
        "Published to the in-memory broker from a process that serves no application (a "
        "shell, a management command, a worker): the event reaches only subscribers in this "
        "same process, never a server's. To reach them, set GQL_PUBSUB['BROKER_URL'] = "
        "'redis://…' in every process's settings (this is said once per process)."
    )


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


if TYPE_CHECKING:  # mypy checks that the class is all that the broker (and outbox) rely on
    _conforms: type[Backend] = MemoryBackend
    _keeps_presence: type[PresenceBackend] = MemoryBackend
