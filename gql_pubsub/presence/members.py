"""Presence's API: track a connection as a member of a channel, watch who comes and goes (the
state first, then the changes), and ask who is there now, from async or sync code."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from gql_pubsub.broker.backends.base import PresenceBackend
from gql_pubsub.broker.broker import Broker
from gql_pubsub.broker.listeners import SubscriberOverflow
from gql_pubsub.broker.process import get_broker
from gql_pubsub.core.events import Gap
from gql_pubsub.presence.tracker import TTL, presence_channel, tracker_of


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """Someone on a channel: their id, the public info given when they joined, since when."""

    id: str
    info: Mapping[str, Any]
    since: datetime.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceState:
    """Everyone on the channel now, and each one's number of connections. A watcher gets it
    first, and again instead of the changes it may have missed."""

    members: tuple[Member, ...]
    connections: Mapping[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceDiff:
    """Who became present (their first connection) and who is gone (their last one closed or
    expired), in the order the changes happened on the channel."""

    joins: tuple[Member, ...]
    leaves: tuple[str, ...]


@contextlib.asynccontextmanager
async def track(
    channel: str,
    member: str | int,
    info: Mapping[str, Any] | None = None,
    *,
    broker: Broker | None = None,
) -> AsyncIterator[None]:
    """Be a member of ``channel`` while the block runs: ``async with track(ch, user.pk, {…})``.

    Several connections of one member are one member, from the first join to the last leave.
    ``info`` (JSON) is what watchers see of them: keep it public and small.
    """
    tracker = tracker_of(broker or get_broker())
    connection = await tracker.join(channel, str(member), orjson.dumps(info or {}).decode())
    try:
        yield
    finally:
        await tracker.leave(channel, connection)


async def watch(
    channel: str, *, broker: Broker | None = None
) -> AsyncIterator[PresenceState | PresenceDiff]:
    """The channel's :class:`PresenceState`, then each :class:`PresenceDiff`; a new state
    whenever changes may have been missed (Redis restarted, the connection to it was lost, the
    watcher fell more than ``SUBSCRIBER_BUFFER`` changes behind)."""
    tracker = tracker_of(broker or get_broker())
    tracker.watching(channel, 1)
    try:
        while True:
            try:
                async with tracker.broker.subscribe(presence_channel(channel)) as changes:
                    epoch, offset, rows = await tracker.state(channel)  # after SUBSCRIBE
                    yield _state(rows)
                    async for change in changes:
                        if isinstance(change, Gap) or change.epoch != epoch:
                            epoch, offset, rows = await tracker.state(channel)
                            yield _state(rows)
                        elif change.offset > offset:  # not already in the state
                            offset = change.offset
                            yield _diff(change.data)
                return  # the broker stopped
            except SubscriberOverflow:
                continue  # the watcher fell behind: a whole new state, not an error
    finally:
        tracker.watching(channel, -1)


async def amembers(channel: str, *, broker: Broker | None = None) -> list[Member]:
    """Who is on ``channel`` now (members of a server that died are gone within the bound)."""
    _, _, rows = await tracker_of(broker or get_broker()).state(channel)
    return list(_state(rows).members)


def members(channel: str, *, broker: Broker | None = None) -> list[Member]:
    """Who is on ``channel`` now, from sync code (a view, a task, the shell)."""
    from gql_pubsub.conf import get_settings

    backend = (broker or get_broker()).backend
    if not isinstance(backend, PresenceBackend):
        raise TypeError(f"Presence needs a broker backend that keeps it; {backend} does not.")
    ttl = TTL * get_settings().PRESENCE_HEARTBEAT
    _, _, rows = backend.presence_sync(presence_channel(channel), ttl=ttl)
    return list(_state(rows).members)


def _member(member: str, info: Any, since: int) -> Member:
    moment = datetime.datetime.fromtimestamp(since / 1000, datetime.UTC)
    return Member(member, orjson.loads(info) if isinstance(info, str) else info, moment)


def _state(found: list[tuple[str, str, int, int]]) -> PresenceState:
    ordered = sorted(found, key=lambda row: (row[2], row[0]))  # by arrival
    return PresenceState(
        tuple(_member(member, info, since) for member, info, since, _ in ordered),
        {member: count for member, _, _, count in found},
    )


def _diff(data: Mapping[str, Any]) -> PresenceDiff:
    joins = tuple(_member(j["id"], j["info"], j["since"]) for j in data.get("joins", ()))
    return PresenceDiff(joins, tuple(data.get("leaves", ())))
