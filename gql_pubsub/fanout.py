"""Fan-out: one execution and one encoding per event per group of identical subscriptions.

Subscribers whose operation is the same (document, variables, operation name), whose resolver
returned the same :class:`~gql_pubsub.subscriptions.ChannelStream`, and whose results cannot
differ (the same user, or a stream declared ``shared``) form a :class:`Group`. The group holds
one broker subscription; for each event it executes the selection set once, encodes the result
once, and each member only splices its operation id into the frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from graphql.execution import Executor

from .broker import SubscriberOverflow
from .cursors import Cursor, refetch_payload, start_payload, with_cursor
from .events import START, Event, Gap, Offset
from .execution import Engine
from .protocol import next_prefix
from .subscriptions import SKIP, ChannelStream

logger = logging.getLogger("gql_pubsub.fanout")

Send = Callable[[str], Awaitable[None]]
"""Sends one text frame to one socket (an :class:`~gql_pubsub.outbox.Outbox`'s ``send``)."""

Finish = Callable[[str | None], Awaitable[None]]
"""Ends one member's operation: ``complete``, or ``next`` with this error then ``complete``."""


class Member:
    """One subscriber in a group: where its frames go and the prefix that names its operation."""

    __slots__ = ("finish", "held", "positions", "prefix", "send")

    def __init__(self, op_id: str, send: Send, finish: Finish) -> None:
        self.prefix = next_prefix(op_id)
        self.send = send
        self.finish = finish
        self.held: list[tuple[str, Offset, str]] | None = None
        """While it catches up: the group's frames (channel, offset, body) that wait for it."""
        self.positions: dict[str, Offset] | None = None
        """Where it is, while that differs from where its group is (else None)."""


class Group:
    """Subscribers served by one execution per event.

    A *resumable* group (its members asked for cursors) knows where it is in each channel's
    history: it starts at the history's end when it subscribes, sends its cursor in every
    frame, and lets a member that resumes from an older cursor catch up first.
    """

    def __init__(
        self,
        key: Hashable,
        executor: Executor[Any],
        stream: ChannelStream[Any],
        hub: FanOut,
        *,
        resumable: bool = False,
    ):
        self.key = key
        self.executor = executor
        self.stream = stream
        self.resumable = resumable
        self.members: dict[int, Member] = {}
        self.epoch = ""
        self.positions: dict[str, Offset] = {}
        self._cursor: str | None = None
        self._hub = hub
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(
            self._run(), name=f"gql_pubsub group {sorted(stream.channels)}"
        )

    @property
    def cursor(self) -> str:
        """Where the group is, as sent to clients."""
        if self._cursor is None:
            self._cursor = Cursor(self.epoch, dict(self.positions)).encode()
        return self._cursor

    async def _run(self) -> None:
        ending: str | None = None
        try:
            broker = self.stream.broker
            async with broker.subscribe(*self.stream.channels) as subscriber:
                if self.resumable:  # after SUBSCRIBE: nothing after this place can be missed
                    self.epoch, self.positions = await broker.tail(self.stream.channels)
                self.ready.set_result(None)
                async for event in subscriber:
                    if isinstance(event, Gap):
                        await self._refetch(event)
                        continue
                    if self.resumable and not self._advance(event):
                        continue
                    body = await self.render(event)
                    if body is None:
                        continue
                    if not self.resumable:
                        frame_tail = body + "}}"
                        for member in tuple(self.members.values()):
                            await member.send(member.prefix + frame_tail)
                        continue
                    for member in tuple(self.members.values()):
                        await self._forward(member, event.channel, event.offset, body)
        except SubscriberOverflow as overflow:
            ending = str(overflow)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self.ready.done():
                self.ready.set_exception(error)
                return
            logger.exception("Subscription group %s failed", sorted(self.stream.channels))
            ending = "Internal error while streaming this subscription."
        finally:
            if not self.ready.done():
                self.ready.cancel()
            self._hub.forget(self)
        for member in tuple(self.members.values()):
            await member.finish(ending)
        self.members.clear()

    def _advance(self, event: Event) -> bool:
        """Note the group's new place; False for an event from before it subscribed."""
        if not event.epoch:
            return True  # from a publisher without a history: no place to note
        if event.epoch != self.epoch:  # Redis lost its data (the gap was signalled): start over
            self.epoch = event.epoch
            self.positions = dict.fromkeys(self.stream.channels, START)
        elif event.offset <= self.positions.get(event.channel, START):
            return False
        self.positions[event.channel] = event.offset
        self._cursor = None
        return True

    async def render(self, event: Event) -> str | None:
        """The event's ``next`` payload without its closing brace (None: filtered out)."""
        if not self.stream.accepts(event):
            return None
        root = self.stream.map(event)
        if root is SKIP:
            return None
        return await self._hub.engine.execute_body(self.executor, root)

    async def _forward(self, member: Member, channel: str, offset: Offset, body: str) -> None:
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
            await member.send(member.prefix + with_cursor(body, self.cursor) + "}")
            return
        if offset <= positions.get(channel, START):
            return  # the member has it already (its cursor was ahead of this server)
        positions[channel] = offset
        cursor = Cursor(self.epoch, dict(positions)).encode()
        if positions == self.positions:
            member.positions = None  # caught up: the group's cursor is the member's again
        await member.send(member.prefix + with_cursor(body, cursor) + "}")

    async def _refetch(self, gap: Gap) -> None:
        message = (
            f"Events on {gap.channel!r} may have been lost ({gap.reason}): refetch, then go on."
        )
        payload = refetch_payload(message, self.cursor if self.resumable else None)
        for member in tuple(self.members.values()):
            await member.send(member.prefix + payload + "}")

    async def catch_up(self, member: Member, after: Cursor | None) -> None:
        """Bring a member that just joined to the group's place: tell it it is live (or to
        refetch what the history lost), replay what it missed after ``after``, then the frames
        held meanwhile."""
        member.held = member.held if member.held is not None else []
        epoch, here = self.epoch, dict(self.positions)
        mine = dict(here)  # where the member is: its cursor's places where it is replayed
        replayed: list[Event] = []
        lost: list[str] = []
        if after is not None:
            mine, replayed, lost = await self.stream.broker.catch_up(
                after, epoch, here, unnamed_lost=True
            )
        if self.members.get(id(member)) is not member:
            return  # completed, revoked or closed meanwhile
        # Places from the client's cursor are as old as that cursor until the replay passes them.
        issued = after.issued if after is not None and replayed else time.time()
        await member.send(
            member.prefix + start_payload(Cursor(epoch, dict(mine), issued).encode(), lost) + "}"
        )
        for n, event in enumerate(replayed, 1):
            if self.members.get(id(member)) is not member:
                return
            mine[event.channel] = event.offset
            body = await self.render(event)
            if body is not None:
                current = n == len(replayed)
                cursor = Cursor(epoch, dict(mine), time.time() if current else issued).encode()
                await member.send(member.prefix + with_cursor(body, cursor) + "}")
        if self.members.get(id(member)) is not member:
            return
        held, member.held = member.held or [], None
        member.positions = mine if mine != here else None
        for channel, offset, body in held:
            if offset > mine.get(channel, START):
                if member.positions is None:
                    member.positions = mine  # frames held: send this member's own cursor
                await self._forward(member, channel, offset, body)

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
        self.members.pop(token, None)
        if not self.members and not self.task.done():
            self.task.cancel()
            self._hub.forget(self)


class SharedExecution:
    """One execution per event for streams whose events differ per subscriber but whose result
    for a given event does not (``listen_to_user_subscriptions(..., shared=True)``).

    Every subscriber of the channel receives the same decoded event object, so the encoded
    payload is cached by event, for the last ``CACHE_SIZE`` events.
    """

    CACHE_SIZE = 1024

    def __init__(self, engine: Engine, executor: Executor[Any]) -> None:
        self.engine = engine
        self.executor = executor
        self.users = 0
        self._cache: OrderedDict[int, tuple[object, asyncio.Future[str | None]]] = OrderedDict()

    async def payload(self, event: object, map: Callable[[Any], Any]) -> str | None:
        """The encoded ``next`` payload for ``map(event)``, mapped and executed once per event
        for every stream (None: the map dropped the event)."""
        entry = self._cache.get(id(event))
        if entry is not None and entry[0] is event:
            return await entry[1]
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._cache[id(event)] = (event, future)
        if len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        try:
            root = map(event)
            if root is SKIP:
                future.set_result(None)
                return None
            text = await self.engine.execute_event(self.executor, root)
        except BaseException as error:
            self._cache.pop(id(event), None)
            future.set_exception(error)
            future.exception()  # retrieved: the caller gets it raised
            raise
        future.set_result(text)
        return text


class FanOut:
    """The process's groups, by key."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.groups: dict[Hashable, Group] = {}
        self.shared: dict[Hashable, SharedExecution] = {}

    def share(self, key: Hashable, make_executor: Callable[[], Executor[Any]]) -> SharedExecution:
        """The shared execution for ``key`` (one more user of it)."""
        shared = self.shared.get(key)
        if shared is None:
            shared = self.shared[key] = SharedExecution(self.engine, make_executor())
        shared.users += 1
        return shared

    def unshare(self, key: Hashable) -> None:
        """One user fewer; the last one drops it."""
        shared = self.shared.get(key)
        if shared is not None:
            shared.users -= 1
            if shared.users <= 0:
                del self.shared[key]

    def group(
        self,
        key: Hashable,
        make_executor: Callable[[], Executor[Any]],
        stream: ChannelStream[Any],
        *,
        resumable: bool = False,
    ) -> Group:
        """The group for ``key``, created (with ``make_executor()``) if there is none."""
        group = self.groups.get(key)
        if group is None or group.task.done():
            group = Group(key, make_executor(), stream, self, resumable=resumable)
            self.groups[key] = group
        return group

    def forget(self, group: Group) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]

    async def close(self) -> None:
        """Cancel every group (server shutdown)."""
        groups = list(self.groups.values())
        self.groups.clear()
        for group in groups:
            group.task.cancel()
        for group in groups:
            with contextlib.suppress(BaseException):
                await group.task
