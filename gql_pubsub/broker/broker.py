"""The per-process broker: publish events, and fan received ones out to local subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from gql_pubsub.broker.backends import Backend, backend_from_url
from gql_pubsub.broker.backends.memory import published_unserved
from gql_pubsub.broker.listeners import Listener, Subscriber, Watcher
from gql_pubsub.core import metrics
from gql_pubsub.core.events import Epochs, Event, EventDecodeError, Gap, Offset, encode_within

logger = logging.getLogger("gql_pubsub.broker")


class BrokerState(enum.Enum):
    """Where a broker is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


class Broker:
    """Publishes events and streams them to local subscribers over one backend connection."""

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "gql_pubsub:",
        buffer_size: int = 1000,
        health_check_interval: float = 15.0,
        max_event_size: int = 1_048_576,
        publish_timeout: float = 1.0,
        history_length: int = 1000,
        history_age: float = 600.0,
        backend: str | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.buffer_size = buffer_size
        self.max_event_size = max_event_size
        self.backend: Backend = backend_from_url(
            url,
            prefix=prefix,
            health_check_interval=health_check_interval,
            publish_timeout=publish_timeout,
            history_length=history_length,
            history_age=history_age,
            backend=backend,
        )
        self.state = BrokerState.STOPPED
        self._subscribers: dict[str, set[Listener]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        """Each channel's SUBSCRIBE: its task while it runs or failed, then ``_live``."""
        self._live: asyncio.Future[None] | None = None
        """One done future of this loop for every live channel (a finished task, kept with its
        coroutine, is about half a kilobyte a channel: one per user for the access channels)."""
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holders = 0  # applications serving on it (hold/release)

    def __repr__(self) -> str:
        return f"<Broker {type(self.backend).__name__} {self.state.value}>"

    async def start(self) -> None:
        """Connect the backend and start listening (idempotent)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests, a restarted server): start afresh
            self._start_lock = asyncio.Lock()
            self.state = BrokerState.STOPPED
            self._subscribers.clear()
            self._ready.clear()
            self._holders = 0
            self._loop = loop
            self._live = loop.create_future()
            self._live.set_result(None)
        assert self._start_lock is not None
        async with self._start_lock:
            if self.state is BrokerState.RUNNING:
                return
            self.state = BrokerState.STARTING
            try:
                await self.backend.connect(self._on_message, self._on_gap)
            except BaseException:
                self.state = BrokerState.STOPPED
                raise
            self.state = BrokerState.RUNNING

    async def hold(self) -> None:
        """Start, for one more application of the process (its lifespan's startup)."""
        await self.start()
        self._holders += 1

    async def release(self) -> None:
        """One application is done with it (its shutdown): the last one out stops it."""
        self._holders = max(0, self._holders - 1)
        if not self._holders:
            await self.stop()

    async def stop(self) -> None:
        """End every local subscription, then disconnect the backend."""
        if self.state is not BrokerState.RUNNING or self._loop is not asyncio.get_running_loop():
            return
        self.state = BrokerState.STOPPING
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.close()
        self._subscribers.clear()
        for task in self._ready.values():
            task.cancel()
        self._ready.clear()
        await self.backend.disconnect()
        self.state = BrokerState.STOPPED

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscriber]:
        """Receive events on ``channels`` while the context is open; iterate the subscriber."""
        if not channels:
            raise ValueError("subscribe() needs at least one channel name.")
        await self.start()
        subscriber = Subscriber(self.buffer_size)
        try:
            await self.add(subscriber, *channels)
            yield subscriber
        finally:
            subscriber.close()
            await self.remove(subscriber, *subscriber.channels)

    async def add(self, subscriber: Listener, *channels: str) -> None:
        """Also deliver ``channels`` to an open subscriber; returns once they are live."""
        waiting = []
        for channel in channels:
            if channel in subscriber.channels:
                continue
            subscriber.joined(channel)
            local = self._subscribers.setdefault(channel, set())
            local.add(subscriber)
            if len(local) == 1:
                task = asyncio.ensure_future(self.backend.subscribe(channel))
                task.add_done_callback(functools.partial(self._settled, channel))
                self._ready[channel] = task
            ready = self._ready[channel]
            if not ready.done():
                waiting.append(asyncio.shield(ready))
            elif not ready.cancelled() and ready.exception() is not None:
                raise ready.exception()  # type: ignore[misc]
        # Later subscribers of a channel wait for the first one's SUBSCRIBE to be confirmed.
        if waiting:
            await asyncio.gather(*waiting)

    def _settled(self, channel: str, task: asyncio.Future[None]) -> None:
        """A channel's SUBSCRIBE ended: once it is live, the shared done future stands for it."""
        if task.cancelled() or task.exception() is not None:
            return
        if self._ready.get(channel) is task and self._live is not None:
            self._ready[channel] = self._live

    async def remove(self, subscriber: Listener, *channels: str) -> None:
        """Stop delivering ``channels`` to a subscriber (the last one out unsubscribes)."""
        for channel in self._discard(subscriber, channels):
            await self.backend.unsubscribe(channel)

    def discard(self, subscriber: Listener, *channels: str) -> None:
        """Stop delivering ``channels`` to a subscriber now, from inside a dispatch too (the
        last one out unsubscribes in the background)."""
        for channel in self._discard(subscriber, channels):
            task = asyncio.ensure_future(self.backend.unsubscribe(channel))
            task.add_done_callback(_retrieve_exception)

    def _discard(self, subscriber: Listener, channels: Iterable[str]) -> list[str]:
        """Drop the subscriber from ``channels``; those left without one, to unsubscribe."""
        unsubscribe = []
        for channel in channels:
            subscriber.left(channel)
            remaining = self._subscribers.get(channel)
            if remaining is None:
                continue
            remaining.discard(subscriber)
            if not remaining:
                del self._subscribers[channel]
                self._ready.pop(channel).cancel()
                if self.state is BrokerState.RUNNING:
                    unsubscribe.append(channel)
        return unsubscribe

    @contextlib.asynccontextmanager
    async def watch(
        self,
        callback: Callable[[Event | Gap], None],
        *channels: str,
        on_close: Callable[[], None] | None = None,
    ) -> AsyncIterator[Watcher]:
        """Call ``callback(event)`` synchronously for each event on ``channels`` while open
        (``on_close()`` if the broker stops first)."""
        watcher = await self.watcher(callback, *channels, on_close=on_close)
        try:
            yield watcher
        finally:
            await self.remove(watcher, *watcher.channels)

    async def watcher(
        self,
        callback: Callable[[Event | Gap], None],
        *channels: str,
        on_close: Callable[[], None] | None = None,
    ) -> Watcher:
        """:meth:`watch` without the context manager: remove the watcher when done (for the
        thousands of sockets of a process, each watching its user's control channel)."""
        await self.start()
        watcher = Watcher(callback, on_close)
        try:
            await self.add(watcher, *channels)
        except BaseException:
            await self.remove(watcher, *watcher.channels)
            raise
        return watcher

    def is_live(self, channel: str) -> bool:
        """Whether ``channel``'s subscription is confirmed: an event published now is delivered."""
        ready = self._ready.get(channel)
        return (
            ready is not None and ready.done() and not ready.cancelled() and not ready.exception()
        )

    def subscriber_count(self, channel: str | None = None) -> int:
        """Local subscribers on ``channel`` (or on any channel)."""
        if channel is None:
            return len({s for subs in self._subscribers.values() for s in subs})
        return len(self._subscribers.get(channel, ()))

    def _on_message(self, channel: str, payload: bytes, epoch: str, offset: Offset) -> None:
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        try:
            event = Event.decode(payload, channel, epoch, offset)
        except EventDecodeError:
            logger.warning("Ignored a message on %r that is not a gql_pubsub event", channel)
            return
        if metrics.METRICS is not None:
            metrics.METRICS.events.inc()
        for subscriber in tuple(subscribers):
            subscriber.deliver(event)

    def _on_gap(self, channel: str, reason: str) -> None:
        gap = Gap(channel, reason)
        for subscriber in tuple(self._subscribers.get(channel, ())):
            subscriber.deliver(gap)

    async def tail(self, channels: Iterable[str]) -> tuple[Epochs, dict[str, Offset]]:
        """Each channel's history epoch, and where its history ends now."""
        await self.start()
        return await self.backend.tail(list(channels))

    async def publish(self, channels: Iterable[str], event: Event) -> None:
        """Publish ``event`` to ``channels`` from async code (encoded once)."""
        if self.state is not BrokerState.RUNNING:
            await self.start()
        names = list(channels)
        payload = self.encode(names, event)
        if not self._holders:  # no application serves here: in memory, no server hears it
            published_unserved(self.backend)
        with metrics.timed_publish():
            await self.backend.publish(names, payload)

    def publish_sync(self, channels: Iterable[str], event: Event) -> None:
        """Publish ``event`` to ``channels`` from sync code, in any thread."""
        names = list(channels)
        self.send_sync(names, self.encode(names, event))

    def send_sync(self, channels: list[str], payload: bytes) -> None:
        """Publish an event already encoded (:meth:`encode`) from sync code, in any thread."""
        if not self._holders:
            published_unserved(self.backend)
        with metrics.timed_publish():
            self.backend.publish_sync(channels, payload)

    @functools.cached_property
    def destination(self) -> str:
        """Where this broker's events go: the backend's URL (no password) and the prefix."""
        return f"{self.backend.safe_url}|{self.prefix}"

    def encode(self, channels: list[str], event: Event) -> bytes:
        """The event's wire form; ``EventTooLarge`` past ``MAX_EVENT_SIZE``."""
        return encode_within(event, channels, self.max_event_size)


def _retrieve_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
