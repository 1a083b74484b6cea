"""One live stream of everything a user follows: the seed's ``listen_to_all_subscriptions``."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Collection
from typing import Any, Generic, Self, TypeVar

from .broker import Broker, EventsLost, Subscriber, get_broker
from .conf import get_settings
from .control import Announcement, control_channel
from .cursors import Cursor
from .db import database_sync_to_async
from .events import START, Event, EventKind, Gap, Offset
from .models import Subscription
from .policies import may_read
from .subscriptions import SKIP, EventMap, _identity

T = TypeVar("T")


def _readable_channels(user: Any) -> list[str]:
    names = Subscription.objects.filter(user=user, active=True).values_list(
        "channel__name", flat=True
    )
    return [name for name in names if may_read(user, name)]


def _still_readable(user: Any, channel: str) -> bool:
    active = Subscription.objects.filter(user=user, active=True, channel__name=channel).exists()
    return active and may_read(user, channel)


class UserSubscriptionsStream(Generic[T]):
    """Events of every channel ``user`` actively subscribes to and may read, followed live.

    A subscribe (from any process sharing the broker) adds its channel within one round trip of
    the broker; an unsubscribe, a deleted subscription or a revocation stops its events at once:
    the revocation is announced before its transaction commits, so no event published after the
    commit can reach this stream.
    """

    def __init__(
        self,
        user: Any,
        *,
        kinds: Collection[EventKind] | None = None,
        map: EventMap[T] = _identity,  # type: ignore[assignment]
        shared: bool = False,
        broker: Broker | None = None,
    ) -> None:
        self.user = user
        self.shared = shared
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.map = map
        self.channels: set[str] = set()
        self._broker = broker
        self._control = control_channel(user.pk)
        self._context: contextlib.AbstractAsyncContextManager[Subscriber] | None = None
        self._subscriber: Subscriber | None = None
        self._unconfirmed: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.resumable = False
        self.epoch = ""
        self.positions: dict[str, Offset] = {}
        self.lost: list[str] = []
        self._after: Cursor | None = None
        self._replay: collections.deque[Event] = collections.deque()
        self._floor: dict[str, Offset] = {}

    def resume_from(self, after: Cursor | None) -> None:
        """Keep a cursor (``cursor``) and, before the live events, replay those after ``after``
        on the channels it names; channels it cannot replay are listed in ``lost``."""
        self.resumable = True
        self._after = after

    @property
    def cursor(self) -> str:
        """Where the stream is in its channels' histories (see :mod:`gql_pubsub.cursors`)."""
        positions = {c: self.positions.get(c, START) for c in self.channels}
        if self._replay and self._after is not None:  # places as old as the client's cursor
            return Cursor(self.epoch, positions, self._after.issued).encode()
        return Cursor(self.epoch, positions).encode()

    @property
    def broker(self) -> Broker:
        return self._broker or get_broker()

    async def open(self) -> None:
        """Subscribe to the user's control channel, then to their channels (idempotent)."""
        if self._subscriber is not None:
            return
        self._context = self.broker.subscribe(self._control)
        self._subscriber = await self._context.__aenter__()
        # Changes made from here on arrive on the control channel; applying one twice is harmless.
        channels = await database_sync_to_async(_readable_channels)(self.user)
        await self.broker.add(self._subscriber, *channels)
        self.channels.update(channels)
        if self.resumable:
            await self._start_positions(channels)

    async def _start_positions(self, channels: list[str]) -> None:
        """Where each channel's history ends now; what the cursor missed, to replay first."""
        self.epoch, here = await self.broker.tail([self._control, *channels])
        self.positions.update(here)
        self._floor = here  # live events up to here are replayed, or came before the start
        if self._after is not None:
            places, replayed, self.lost = await self.broker.catch_up(
                self._after, self.epoch, {c: here[c] for c in channels}, unnamed_lost=False
            )
            self.positions.update(places)
            self._replay.extend(replayed)

    async def aclose(self) -> None:
        """Stop following; release every broker subscription."""
        for timer in self._unconfirmed.values():
            timer.cancel()
        self._unconfirmed.clear()
        for task in self._tasks:
            task.cancel()
        context, self._context, self._subscriber = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while True:
            value = self.map(await self.next_event())
            if value is not SKIP:
                return value

    async def next_event(self) -> Event:
        """The next event of a followed channel, unmapped (control messages are applied)."""
        await self.open()
        assert self._subscriber is not None
        while True:
            replayed = bool(self._replay)
            event = self._replay.popleft() if replayed else await anext(self._subscriber)
            if isinstance(event, Gap):
                raise EventsLost(event)
            if self.resumable and event.epoch:
                channel = event.channel
                if event.epoch != self.epoch:  # Redis lost its data (the gap was signalled)
                    self.epoch, self.positions, self._floor = event.epoch, {}, {}
                elif not replayed and event.offset <= max(
                    self.positions.get(channel, START), self._floor.get(channel, START)
                ):
                    continue  # replayed already, or from before the stream started
                self.positions[channel] = event.offset
            if event.channel == self._control:
                await self._apply(Announcement.of(event))
                continue
            if event.channel not in self.channels:
                continue  # queued before its channel was revoked
            if self.kinds is None or event.kind in self.kinds:
                return event

    async def _apply(self, announcement: Announcement | None) -> None:
        if announcement is None or announcement.channel is None:
            return  # e.g. a deactivation: the connection itself is closed
        channel = announcement.channel
        if announcement.loses_access:
            await self._drop(channel)
            if announcement.committed:
                self._confirmed(channel)
            elif channel not in self._unconfirmed:
                # Announced before its commit: if no commit follows (a rollback), re-read it.
                self._unconfirmed[channel] = asyncio.get_running_loop().call_later(
                    get_settings().REVOCATION_CONFIRM_TIMEOUT, self._recheck, channel
                )
            return
        self._confirmed(channel)
        if channel in self.channels:
            return
        if await database_sync_to_async(may_read)(self.user, channel):
            await self._add(channel)

    def _confirmed(self, channel: str) -> None:
        timer = self._unconfirmed.pop(channel, None)
        if timer is not None:
            timer.cancel()

    def _recheck(self, channel: str) -> None:
        self._unconfirmed.pop(channel, None)
        task = asyncio.ensure_future(self._restore_if_readable(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restore_if_readable(self, channel: str) -> None:
        if await database_sync_to_async(_still_readable)(self.user, channel):
            await self._add(channel)

    async def _add(self, channel: str) -> None:
        if self._subscriber is not None and channel not in self.channels:
            self.channels.add(channel)
            if self.resumable:  # followed from here: its events after this place are owed
                epoch, here = await self.broker.tail([channel])
                if epoch == self.epoch:
                    self.positions.setdefault(channel, here[channel])
            await self.broker.add(self._subscriber, channel)

    async def _drop(self, channel: str) -> None:
        if self._subscriber is not None and channel in self.channels:
            self.channels.discard(channel)
            await self.broker.remove(self._subscriber, channel)


def listen_to_user_subscriptions(
    user: Any,
    *,
    kinds: Collection[EventKind] | None = None,
    map: EventMap[T] = _identity,  # type: ignore[assignment]
    shared: bool = False,
    broker: Broker | None = None,
) -> UserSubscriptionsStream[T]:
    """Stream every event of every channel ``user`` actively subscribes to, following changes.

    ``shared=True`` declares that a subscription's result for an event does not depend on who
    receives it: the WebSocket server then executes each event once for all such streams (with
    an anonymous context) instead of once per subscriber.
    """
    return UserSubscriptionsStream(user, kinds=kinds, map=map, shared=shared, broker=broker)
