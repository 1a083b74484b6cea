"""What the broker hands a channel's events to, in its dispatch: bounded subscribers that a
task iterates, watchers that act at once, and fan-out groups' inboxes."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, Self, TypeVar

from gql_pubsub.core.events import Event, Gap

logger = logging.getLogger("gql_pubsub.broker")

T = TypeVar("T")
M = TypeVar("M")


class SubscriberOverflow(RuntimeError):
    """A subscriber fell behind by more than its buffer holds; its stream is ended."""


class EventsLost(RuntimeError):
    """Events of a channel may have been lost (Redis lost its data, the history no longer
    reached back): the stream is ended and its client must refetch."""

    def __init__(self, gap: Gap) -> None:
        super().__init__(
            f"Events on {gap.channel!r} may have been lost ({gap.reason}): refetch, then "
            "subscribe again."
        )
        self.gap = gap


class Listener:
    """What the broker hands a channel's events to, as it dispatches them."""

    __slots__ = ("channels",)

    def __init__(self) -> None:
        self.channels: tuple[str, ...] | set[str] = ()
        """The channels the broker delivers to it: a tuple while they are few (most listeners,
        such as each socket's access watcher, have one; a set of one is 216 bytes)."""

    def joined(self, channel: str) -> None:
        """The broker delivers ``channel`` to it from now on."""
        channels = self.channels
        if isinstance(channels, set):
            channels.add(channel)
        elif channel not in channels:
            self.channels = (*channels, channel) if len(channels) < 8 else {*channels, channel}

    def left(self, channel: str) -> None:
        """The broker no longer delivers ``channel`` to it."""
        channels = self.channels
        if isinstance(channels, set):
            channels.discard(channel)
        elif channel in channels:
            self.channels = tuple(c for c in channels if c != channel)

    def deliver(self, event: Event | Gap) -> None:
        """Take one event (or gap), synchronously, in the broker's dispatch."""
        raise NotImplementedError

    def close(self) -> None:
        """No event follows (the subscription ended, or the broker stopped)."""


class _Bounded(Listener, Generic[T]):
    """A bounded queue filled in the broker's dispatch and drained by one task: past
    ``maxsize`` waiting items it is ended (``SubscriberOverflow``), never the others."""

    __slots__ = ("_buffer", "_closed", "_overflowed", "_waiter", "maxsize")

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize
        self._buffer: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False

    def _put(self, item: T) -> None:
        if self._overflowed:
            return
        if len(self._buffer) >= self.maxsize:
            self._overflowed = True
            self._buffer.clear()
        else:
            self._buffer.append(item)
        self._wake()

    def close(self) -> None:
        """End the stream after the items already queued."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _behind(self) -> str:
        """What fell behind, for the overflow's message."""
        return str(sorted(self.channels))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._overflowed:
                raise SubscriberOverflow(
                    f"Subscriber fell more than {self.maxsize} events behind on "
                    f"{self._behind()}; its stream was ended. Read faster or raise "
                    "GQL_PUBSUB['SUBSCRIBER_BUFFER']."
                )
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class Subscriber(_Bounded["Event | Gap"]):
    """One consumer's bounded view of some channels; iterate it for events."""

    __slots__ = ()

    def deliver(self, event: Event | Gap) -> None:
        """Queue an event; a full buffer ends this subscriber, never the others."""
        if not self._closed:
            self._put(event)


class Watcher(Listener):
    """A callback run as each event is dispatched, before any later event is.

    For control messages whose effect must precede every event published after them, and for
    followed-channel streams that decide in the dispatch which events they let through.
    """

    __slots__ = ("_closed", "callback", "on_close")

    def __init__(
        self, callback: Callable[[Event | Gap], None], on_close: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self.callback = callback
        self.on_close = on_close
        self._closed = False

    def close(self) -> None:
        if not self._closed and self.on_close is not None:
            self.on_close()
        self._closed = True

    def deliver(self, event: Event | Gap) -> None:
        if self._closed:
            return
        try:
            self.callback(event)
        except Exception:
            logger.exception("A watcher of %s failed", sorted(self.channels))


class Inbox(_Bounded["tuple[Event | Gap | None, list[tuple[M, str | None]] | None]"], Generic[M]):
    """A group's bounded queue, filled in the broker's dispatch: the events of the group's
    channels (it listens to them), and those its members' followed streams let through.
    Closed (the broker stopped), it ends after the events already queued."""

    __slots__ = ("what",)

    def __init__(self, maxsize: int, what: str) -> None:
        super().__init__(maxsize)
        self.what = what

    def deliver(self, event: Event | Gap) -> None:
        self.offer(event)

    def offer(
        self, event: Event | Gap | None, member: M | None = None, cursor: str | None = None
    ) -> None:
        """Take one event: for every member (``member`` None), or for ``member`` only (its
        followed stream let it through; a Gap: it lost events; None: its stream ended).

        The broker hands one decoded event to each listener of its channel in one synchronous
        pass, so the members that take an event offer it one after another: they share one
        entry, and one execution.
        """
        queue = self._buffer
        if member is not None and queue:
            last, takers = queue[-1]
            if last is event and takers is not None:
                takers.append((member, cursor))
                return
        self._put((event, None if member is None else [(member, cursor)]))

    def _behind(self) -> str:
        return self.what
