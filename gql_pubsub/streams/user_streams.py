"""One live stream of everything a user follows: the seed's ``listen_to_all_subscriptions``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Hashable
from typing import Any, Generic, Self, TypeVar

from gql_pubsub.broker.broker import Broker
from gql_pubsub.broker.cursors import Cursor
from gql_pubsub.broker.listeners import EventsLost, Listener, Subscriber
from gql_pubsub.broker.process import get_broker
from gql_pubsub.broker.replay import Places
from gql_pubsub.core.control import Announcement, control_channel
from gql_pubsub.core.db import database_sync_to_async
from gql_pubsub.core.events import Event, EventKind, Gap
from gql_pubsub.streams.channels import SKIP, EventMap, _identity
from gql_pubsub.streams.following import AccessChanges, readable_channels

T = TypeVar("T")


Deliver = Callable[[Event | Gap | None, str | None], None]
"""Where a followed stream attached to a fan-out group hands each event it lets through, with
its cursor (a Gap: events were lost; None: the broker stopped)."""


class UserSubscriptionsStream(Generic[T]):
    """Events of every channel ``user`` actively subscribes to and may read, followed live.

    A subscribe (from any process sharing the broker) adds its channel within one round trip of
    the broker; an unsubscribe, a deleted subscription or a revocation stops its events at once:
    the revocation is announced before its transaction commits, so no event published after the
    commit can reach this stream.

    Iterate it (its own bounded subscriber), or let the WebSocket server :meth:`attach` it to a
    fan-out group: the stream then decides in the broker's dispatch which events it lets through.
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
        self._context: contextlib.AbstractAsyncContextManager[Listener] | None = None
        self._listener: Listener | None = None
        self._subscriber: Subscriber | None = None
        self._deliver: Deliver | None = None
        self._pending: list[Event | Gap] | None = None
        """Attached and not yet live: what the broker dispatched meanwhile."""
        self._access = AccessChanges(self)
        self.places: Places | None = None
        """Where the stream is, once it keeps a cursor (``resume_from``)."""

    def resume_from(self, after: Cursor | None) -> None:
        """Keep a cursor (``cursor``) and, before the live events, replay those after ``after``
        on the channels it names; channels it cannot replay are listed in ``lost``."""
        self.places = Places(after)

    @property
    def resumable(self) -> bool:
        """Whether it keeps a cursor."""
        return self.places is not None

    @property
    def lost(self) -> list[str]:
        """The channels its cursor named whose histories could not be replayed."""
        return self.places.lost if self.places is not None else []

    @property
    def cursor(self) -> str:
        """Where the stream is in its channels' histories (see :mod:`gql_pubsub.cursors`)."""
        assert self.places is not None, "resume_from() first"
        return self.places.cursor(self.channels)

    @property
    def broker(self) -> Broker:
        return self._broker or get_broker()

    @property
    def feed_key(self) -> Hashable:
        """What makes two streams' events render alike in one fan-out group: map and broker."""
        return (self.map, id(self.broker))

    async def open(self) -> None:
        """Subscribe to the user's control channel, then to their channels (idempotent)."""
        if self._listener is not None:
            return
        subscribing = self.broker.subscribe(self._control)
        self._context = subscribing
        self._listener = self._subscriber = await subscribing.__aenter__()
        await self._follow_all()

    async def attach(self, deliver: Deliver) -> None:
        """Follow for a fan-out group: ``deliver(event, cursor)`` runs in the broker's dispatch
        for each event let through, once :meth:`go_live` is called (replay first)."""
        self._deliver, self._pending = deliver, []
        self._context = self.broker.watch(self._dispatched, self._control, on_close=self._closed)
        self._listener = await self._context.__aenter__()
        await self._follow_all()

    async def _follow_all(self) -> None:
        assert self._listener is not None
        # Changes made from here on arrive on the control channel; applying one twice is harmless.
        channels = await database_sync_to_async(readable_channels)(self.user)
        await self.broker.add(self._listener, *channels)
        self.channels.update(channels)
        if self.places is not None:
            await self.places.start(self.broker, self._control, channels)

    def replayed(self) -> list[tuple[Event, str]]:
        """An attached stream's events to replay first, each with its cursor (then go live)."""
        taken = []
        while self.places is not None and self.places.replay:
            event = self._take(self.places.replay.popleft(), replayed=True)
            if event is not None:
                taken.append((event, self.cursor))
        return taken

    def go_live(self) -> None:
        """Hand on what was dispatched while attaching, then each event as it is dispatched."""
        pending, self._pending = self._pending or [], None
        limit = self.broker.buffer_size
        if len(pending) > limit:
            reason = f"more than {limit} events arrived while this subscription caught up"
            self._dispatched(Gap(self._control, reason))
            return
        for event in pending:
            self._dispatched(event)

    def _dispatched(self, event: Event | Gap) -> None:
        """An attached stream's event, in the broker's dispatch."""
        if self._pending is not None:
            self._pending.append(event)
            return
        assert self._deliver is not None
        if isinstance(event, Gap):
            self._deliver(event, None)
            return
        taken = self._take(event, replayed=False)
        if taken is not None:
            self._deliver(taken, self.cursor if self.places is not None else None)

    def _closed(self) -> None:
        if self._deliver is not None:
            self._deliver(None, None)

    async def aclose(self) -> None:
        """Stop following; release every broker subscription."""
        self._deliver = None
        self._access.close()
        context, self._context, self._listener, self._subscriber = self._context, None, None, None
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
            replay = self.places.replay if self.places is not None else None
            replayed = bool(replay)
            event = replay.popleft() if replay else await anext(self._subscriber)
            if isinstance(event, Gap):
                raise EventsLost(event)
            taken = self._take(event, replayed)
            if taken is not None:
                return taken

    def _take(self, event: Event, replayed: bool) -> Event | None:
        """The event if the stream lets it through; control messages are applied here."""
        if self.places is not None and not self.places.passes(event, replayed):
            return None  # replayed already, or from before the stream started
        if event.channel == self._control:
            self._access.apply(Announcement.of(event))
            return None
        if event.channel not in self.channels:
            return None  # queued before its channel was revoked
        if self.kinds is None or event.kind in self.kinds:
            return event
        return None

    async def add(self, channel: str) -> None:
        """Follow ``channel`` (its access was checked)."""
        if self._listener is not None and channel not in self.channels:
            self.channels.add(channel)
            if self.places is not None:
                await self.places.follow(self.broker, channel)
            if self._listener is not None:
                await self.broker.add(self._listener, channel)

    def drop(self, channel: str) -> None:
        """Stop following ``channel`` now, inside the dispatch that says so."""
        if self._listener is not None and channel in self.channels:
            self.channels.discard(channel)  # its events stop here, in this dispatch
            self.broker.discard(self._listener, channel)


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
