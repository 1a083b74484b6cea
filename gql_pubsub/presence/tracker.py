"""This process's presence on a broker: the connections it tracks, renewed every heartbeat, and
the channels it sweeps (those it tracks or watches), so that a dead server's members leave."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import uuid
import weakref
from collections import Counter
from collections.abc import Iterable

from gql_pubsub.broker.backends.base import BrokerUnavailable, PresenceBackend, PresenceRows
from gql_pubsub.broker.broker import Broker
from gql_pubsub.conf import get_settings

logger = logging.getLogger("gql_pubsub.presence")

PROCESS = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
"""This process's part of its connections' names."""

RENEWALS = 500
"""Connections renewed in one call at most (a channel of 10,000 takes 20)."""

_serial = itertools.count(1)  # one sequence for the process: two brokers' names never meet

TTL = 1.5
"""A connection expires this many heartbeats after its last renewal."""


def presence_channel(channel: str) -> str:
    """The channel whose events are ``channel``'s joins and leaves."""
    return f"presence:{channel}"


class _Batch:
    """Joins and leaves of one channel waiting to be sent together."""

    __slots__ = ("done", "joins", "leaves")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.joins: list[tuple[str, str, str]] = []
        self.leaves: list[str] = []
        self.done: asyncio.Future[None] = loop.create_future()


class Tracker:
    """This process's presence on one broker, on one event loop.

    A channel's joins and leaves are sent in batches: those made in one turn of the loop, and
    those made while the previous batch was on its way, go in one call (at most ``RENEWALS``
    joins), and make one event of who came and went.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.loop = asyncio.get_running_loop()
        self.local: dict[str, dict[str, tuple[str, str]]] = {}
        """channel -> connection -> (member, info JSON): what this process renews."""
        self.watched: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._batches: dict[str, _Batch] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}

    @property
    def backend(self) -> PresenceBackend:
        """The broker's backend, which must keep presence."""
        backend = self.broker.backend
        if not isinstance(backend, PresenceBackend):
            raise TypeError(
                f"Presence needs a broker backend that keeps it (Redis, Redis Sentinel or the "
                f"in-memory one); {type(backend).__name__} does not."
            )
        return backend

    @property
    def ttl(self) -> float:
        """Seconds a connection lives unless renewed."""
        return TTL * get_settings().PRESENCE_HEARTBEAT

    async def join(self, channel: str, member: str, info: str) -> str:
        """Track a new connection of ``member`` on ``channel``; its name, to leave with."""
        backend = self.backend
        await self.broker.start()
        connection = f"{PROCESS}:{next(_serial)}"
        self.local.setdefault(channel, {})[connection] = (member, info)
        self._run()
        await self._change(backend, channel, joins=[(connection, member, info)])
        return connection

    async def leave(self, channel: str, connection: str) -> None:
        """Stop tracking a connection (its member leaves with their last one)."""
        entries = self.local.get(channel, {})
        if entries.pop(connection, None) is None:
            return
        if not entries:
            del self.local[channel]
        await self._change(self.backend, channel, leaves=[connection])
        self._stop_if_idle()

    async def state(self, channel: str) -> PresenceRows:
        """The channel's members, and where its presence events are, read in one step."""
        await self.broker.start()
        rows = await self.backend.presence(presence_channel(channel), ttl=self.ttl, state=True)
        assert rows is not None
        return rows

    def watching(self, channel: str, change: int) -> None:
        """Count a watcher of ``channel`` in (1) or out (-1): watched channels are swept."""
        self.watched[channel] += change
        if self.watched[channel] <= 0:
            del self.watched[channel]
            self._stop_if_idle()
        else:
            self._run()

    async def _change(
        self,
        backend: PresenceBackend,
        channel: str,
        *,
        joins: Iterable[tuple[str, str, str]] = (),
        leaves: Iterable[str] = (),
    ) -> None:
        """Add to the channel's next batch, and wait until it was sent (even if cancelled)."""
        batch = self._batches.get(channel)
        if batch is None:
            batch = self._batches[channel] = _Batch(self.loop)
        batch.joins += joins
        batch.leaves += leaves
        if channel not in self._senders:
            self._senders[channel] = self.loop.create_task(self._send(backend, channel))
        await asyncio.shield(batch.done)

    async def _send(self, backend: PresenceBackend, channel: str) -> None:
        """Send the channel's batches, one after another, until none waits."""
        batch = None
        try:
            while (batch := self._batches.pop(channel, None)) is not None:
                try:
                    for start in range(0, max(len(batch.joins), 1), RENEWALS):
                        joins = batch.joins[start : start + RENEWALS]
                        last = start + RENEWALS >= len(batch.joins)
                        await self._call(backend, channel, joins=joins, leaves=batch.leaves * last)
                except Exception as error:  # not Redis being away (_call keeps quiet on that)
                    batch.done.set_exception(error)
                else:
                    batch.done.set_result(None)
        finally:
            del self._senders[channel]
            if batch is not None and not batch.done.done():
                batch.done.cancel()  # the loop is closing

    async def _call(
        self,
        backend: PresenceBackend,
        channel: str,
        *,
        joins: Iterable[tuple[str, str, str]] = (),
        leaves: Iterable[str] = (),
    ) -> None:
        try:
            await backend.presence(
                presence_channel(channel), joins=list(joins), leaves=list(leaves), ttl=self.ttl
            )
        except BrokerUnavailable as error:
            # The heartbeat joins this process's connections again once Redis answers; those it
            # could not leave expire within the bound.
            if not self._failing:
                logger.warning("Presence is not kept while Redis is unreachable: %s", error)
            self._failing = True
        else:
            self._failing = False

    def _run(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._beat(), name="gql_pubsub presence")

    def _stop_if_idle(self) -> None:
        if not self.local and not self.watched and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _beat(self) -> None:
        """Every half heartbeat, sweep; every heartbeat, renew this process's connections."""
        for turn in itertools.count(1):
            await asyncio.sleep(get_settings().PRESENCE_HEARTBEAT / 2)
            backend = self.backend
            for channel in set(self.local) | set(self.watched):
                entries = list(self.local.get(channel, {}).items()) if turn % 2 == 0 else []
                joins = [(c, member, info) for c, (member, info) in entries]
                # In the channel's batches, behind any leave already asked for: a renewal sent
                # beside a leave could reach Redis after it, and bring the connection back.
                try:
                    await self._change(backend, channel, joins=joins)
                except Exception:  # the next beat tries again; the task must not end
                    logger.exception("Presence heartbeat of %r failed", channel)


_trackers: weakref.WeakKeyDictionary[Broker, Tracker] = weakref.WeakKeyDictionary()


def tracker_of(broker: Broker) -> Tracker:
    """The broker's tracker on the running event loop (a new loop starts a new one)."""
    tracker = _trackers.get(broker)
    if tracker is None or tracker.loop is not asyncio.get_running_loop():
        tracker = _trackers[broker] = Tracker(broker)
    return tracker
