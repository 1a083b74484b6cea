"""A fan-out group: the subscribers served by one execution and one encoding per event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable
from typing import Any, Protocol

from graphql.execution import Executor

from gql_pubsub.broker.cursors import Cursor, refetch_payload, with_cursor
from gql_pubsub.broker.listeners import EventsLost, Inbox, SubscriberOverflow
from gql_pubsub.core import metrics
from gql_pubsub.core.events import START, Event, Gap, Offset
from gql_pubsub.execution.engine import Engine
from gql_pubsub.execution.member import Member, Source, Takers
from gql_pubsub.execution.splice import Body
from gql_pubsub.streams.channels import SKIP

logger = logging.getLogger("gql_pubsub.fanout")


class Hub(Protocol):
    """What a group needs of the fan-out that holds it."""

    @property
    def engine(self) -> Engine: ...
    def forget(self, group: Group) -> None: ...
    def detach(self, member: Member) -> None: ...


class Group:
    """Subscribers served by one execution per event.

    A *resumable* channel group (its members asked for cursors) knows where it is in each
    channel's history: it starts at the history's end when it subscribes, sends its cursor in
    every frame, and lets a member that resumes from an older cursor catch up first. Members of
    a followed group carry their own cursors.
    """

    def __init__(
        self,
        key: Hashable,
        executor: Executor[Any],
        stream: Source,
        hub: Hub,
        *,
        resumable: bool = False,
    ):
        self.key = key
        self.executor = executor
        self.stream = stream
        self.resumable = resumable
        self.per_viewer = bool(getattr(executor, "per_viewer", None))
        """Whether its results have per-viewer fields each member fills (see ``splice``)."""
        self.members: dict[int, Member] = {}
        self.epochs: dict[str, str] = {}
        self.positions: dict[str, Offset] = {}
        self._cursor: str | None = None
        self._hub = hub
        what = str(sorted(stream.channels)) if stream.channels else "followed channels"
        self.inbox: Inbox[Member] = Inbox(stream.broker.buffer_size, what)
        """Where the broker's dispatch puts the group's events (see :meth:`Inbox.offer`)."""
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(), name=f"gql_pubsub group {what}")

    @property
    def cursor(self) -> str:
        """Where the group is, as sent to clients."""
        if self._cursor is None:
            self._cursor = Cursor(self.epochs, self.positions).encode()
        return self._cursor

    # -- the group's task ----------------------------------------------------------------------

    async def _run(self) -> None:
        ending: str | None = None
        try:
            async with self._feed():
                self.ready.set_result(None)
                async for event, takers in self.inbox:
                    if takers is not None:
                        await self._serve(event, takers)
                    elif isinstance(event, Gap):
                        await self._refetch(event)
                    elif event is not None:
                        await self._broadcast(event)
        except SubscriberOverflow as overflow:
            ending = str(overflow)
            if metrics.METRICS is not None:
                metrics.METRICS.overflows.inc()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self.ready.done():
                self.ready.set_exception(error)
                return
            logger.exception("Subscription group on %s failed", self.inbox.what)
            ending = "Internal error while streaming this subscription."
        finally:
            if not self.ready.done():
                self.ready.cancel()
            self._hub.forget(self)
            for member in self.members.values():
                self._hub.detach(member)
        for member in tuple(self.members.values()):
            await member.finish(ending)
        self.members.clear()

    @contextlib.asynccontextmanager
    async def _feed(self) -> AsyncIterator[None]:
        """Listen to the group's channels while open (a followed group's members feed it)."""
        channels = self.stream.channels
        if not channels:
            yield
            return
        broker = self.stream.broker
        await broker.start()
        try:
            await broker.add(self.inbox, *channels)
            if self.resumable:  # after SUBSCRIBE: nothing after this place can be missed
                self.epochs, self.positions = await broker.tail(channels)
            yield
        finally:
            await broker.remove(self.inbox, *self.inbox.channels)

    async def _broadcast(self, event: Event) -> None:
        """One event of the group's channels, to every member."""
        if self.resumable and not self._advance(event):
            return
        body = await self.render(event)
        if body is None:
            return
        if metrics.METRICS is not None:
            metrics.METRICS.deliveries.inc(len(self.members))
        if not self.resumable:
            if isinstance(body, str):
                payload = body + "}"
                for member in tuple(self.members.values()):
                    await member.send_buffer.send(member.prefix + payload + member.suffix)
                return
            fill = self._hub.engine.execute_body
            for member in tuple(self.members.values()):
                text = body.ready(member.context, member.viewer)
                if text is None:
                    text = await body.fill(member.context, member.viewer, fill)
                await member.send_buffer.send(member.prefix + text + "}" + member.suffix)
            return
        for member in tuple(self.members.values()):
            await self.forward(member, event.channel, event.offset, body)

    async def _serve(self, event: Event | Gap | None, takers: Takers) -> None:
        """One event that followed streams let through, to those members."""
        if event is None or isinstance(event, Gap):  # their stream ended, or lost events
            ending = None if event is None else str(EventsLost(event))
            for member, _ in takers:
                if self.members.pop(id(member), None) is member:
                    self._hub.detach(member)
                    await member.finish(ending)
            return
        body = await self.render(event)
        if body is None:
            return
        if metrics.METRICS is not None:
            metrics.METRICS.deliveries.inc(len(takers))
        for member, cursor in takers:
            if self.members.get(id(member)) is member:
                text = await self.personal(body, member)
                payload = text + "}" if cursor is None else with_cursor(text, cursor)
                await member.send_buffer.send(member.prefix + payload + member.suffix)

    def _advance(self, event: Event) -> bool:
        """Note the group's new place; False for an event from before it subscribed."""
        if not event.epoch:
            return True  # from a publisher without a history: no place to note
        channel = event.channel
        if event.epoch != self.epochs.get(channel):
            # The channel's history was lost (the gap was signalled): it starts over.
            self.epochs[channel] = event.epoch
        elif event.offset <= self.positions.get(channel, START):
            return False
        self.positions[channel] = event.offset
        self._cursor = None
        return True

    async def render(self, event: Event) -> Body | None:
        """The event's ``next`` payload without its closing brace, or what each member fills
        in (None: filtered out)."""
        if not self.stream.accepts(event):
            return None
        root = self.stream.map(event)
        if root is SKIP:
            return None
        if self.per_viewer:
            return await self._hub.engine.execute_template(self.executor, root)
        return await self._hub.engine.execute_body(self.executor, root)

    async def personal(self, body: Body, member: Member) -> str:
        """The member's payload without its closing brace: the group's, with its own values of
        the per-viewer fields."""
        if isinstance(body, str):
            return body
        return await body.fill(member.context, member.viewer, self._hub.engine.execute_body)

    async def forward(self, member: Member, channel: str, offset: Offset, body: Body) -> None:
        """Send one of the group's frames to a member of a resumable group."""
        if member.held is not None:
            member.held.append((channel, offset, body))
            if len(member.held) > self.stream.broker.buffer_size:
                member.held = None
                self.members.pop(id(member), None)
                await member.finish(
                    f"More than {self.stream.broker.buffer_size} events arrived while this "
                    "subscription caught up; subscribe again with the last cursor."
                )
            return
        positions = member.positions
        if positions is None:
            text = await self.personal(body, member)
            await member.send_buffer.send(
                member.prefix + with_cursor(text, self.cursor) + member.suffix
            )
            return
        if offset <= positions.get(channel, START):
            return  # the member has it already (its cursor was ahead of this server)
        positions[channel] = offset
        cursor = Cursor(self.epochs, positions).encode()
        if positions == self.positions:
            member.positions = None  # caught up: the group's cursor is the member's again
        text = await self.personal(body, member)
        await member.send_buffer.send(member.prefix + with_cursor(text, cursor) + member.suffix)

    async def _refetch(self, gap: Gap) -> None:
        message = (
            f"Events on {gap.channel!r} may have been lost ({gap.reason}): refetch, then go on."
        )
        payload = refetch_payload(message, self.cursor if self.resumable else None)
        for member in tuple(self.members.values()):
            await member.send_buffer.send(member.prefix + payload + member.suffix)

    async def join(self, member: Member) -> int:
        """Add a member; returns once the group's broker subscription is live."""
        token = id(member)
        self.members[token] = member
        try:
            await asyncio.shield(self.ready)
        except BaseException:
            self.leave(token)  # cancelled while waiting (the socket closed): the last one ends it
            raise
        return token

    def leave(self, token: int) -> None:
        """Remove a member; the last one out ends the group and its broker subscription."""
        member = self.members.pop(token, None)
        if member is not None:
            self._hub.detach(member)
        if not self.members and not self.task.done():
            self.task.cancel()
            self._hub.forget(self)
