"""Presence: who is on a channel, across servers (brokers) on one Redis, through faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from gql_pubsub import Broker
from gql_pubsub.presence import (
    EphemeralRefused,
    PresenceDiff,
    PresenceState,
    broadcast,
    ephemeral_channel,
    members,
    track,
    watch,
)

from ..services import ROOT, RedisServer, scaled

HEARTBEAT = 0.5


@pytest.fixture(autouse=True)
def fast_heartbeat() -> Iterator[None]:
    with override_settings(GQL_PUBSUB={**settings.GQL_PUBSUB, "PRESENCE_HEARTBEAT": HEARTBEAT}):
        yield


@contextlib.asynccontextmanager
async def servers(url: str | None, count: int = 2) -> AsyncIterator[list[Broker]]:
    """``count`` brokers on one Redis (or in memory: one) with one prefix: servers of one site."""
    prefix = f"presence-{uuid.uuid4().hex[:8]}:"
    brokers = [Broker(url, prefix=prefix) for _ in range(count)]
    for broker in brokers:
        await broker.start()
    try:
        yield brokers
    finally:
        for broker in brokers:
            await broker.stop()


async def next_change(changes: AsyncIterator[Any], within: float = 5) -> Any:
    return await asyncio.wait_for(anext(changes), scaled(within))


def names(state: PresenceState) -> list[str]:
    return [member.id for member in state.members]


def diff(change: Any) -> tuple[list[str], list[str]]:
    assert isinstance(change, PresenceDiff), change
    return [member.id for member in change.joins], list(change.leaves)


@pytest.fixture(params=["redis", "cluster"])
def site_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """One Redis, or a Redis Cluster (a channel's presence keys and events on one shard)."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return redis_url


async def test_a_watcher_gets_the_members_then_each_join_and_leave_once_in_order(
    site_url: str,
) -> None:
    """Two servers: tabs of one member are one member; the watcher on the other server sees
    the state, then alice's join, bob's, bob's leave, and alice's with her last tab."""
    async with servers(site_url) as (one, two):
        channel = f"room:{uuid.uuid4().hex[:6]}"
        async with contextlib.aclosing(watch(channel, broker=two)) as changes:
            state = await next_change(changes)
            assert isinstance(state, PresenceState) and state.members == ()
            async with contextlib.AsyncExitStack() as tabs:
                await tabs.enter_async_context(track(channel, 1, {"name": "alice"}, broker=one))
                assert diff(await next_change(changes)) == (["1"], [])
                await tabs.enter_async_context(track(channel, 1, {"name": "alice"}, broker=two))
                async with track(channel, "2", {"name": "bob"}, broker=two):
                    assert diff(await next_change(changes)) == (["2"], [])
                    found = await sync_to_async(members)(channel, broker=one)
                    assert [(m.id, m.info) for m in found] == [
                        ("1", {"name": "alice"}),
                        ("2", {"name": "bob"}),
                    ]
                assert diff(await next_change(changes)) == ([], ["2"])
                async with contextlib.aclosing(watch(channel, broker=one)) as late:
                    joined = await next_change(late)
                    assert names(joined) == ["1"] and joined.connections == {"1": 2}
            assert diff(await next_change(changes)) == ([], ["1"])  # her second tab closed
            with pytest.raises(TimeoutError):
                await next_change(changes, within=3 * HEARTBEAT)  # nothing more, no echo


KILLED_SERVER = """
import asyncio, os, sys
import django
django.setup()
from django.conf import settings
from django.test import override_settings
from gql_pubsub import Broker
from gql_pubsub.presence import track

async def main():
    broker = Broker(sys.argv[1], prefix=sys.argv[2])
    async with track(sys.argv[3], "carol", {"name": "carol"}, broker=broker):
        print("tracking", flush=True)
        await asyncio.sleep(3600)

heartbeat = float(sys.argv[4])
with override_settings(GQL_PUBSUB={**settings.GQL_PUBSUB, "PRESENCE_HEARTBEAT": heartbeat}):
    asyncio.run(main())
"""


async def test_the_members_of_a_server_killed_without_a_word_leave_within_two_heartbeats(
    redis_url: str,
) -> None:
    """SIGKILL: no leave is sent; the watcher's server lets the expired connection go."""
    async with servers(redis_url, count=1) as (watcher,):
        channel = f"room:{uuid.uuid4().hex[:6]}"
        async with contextlib.aclosing(watch(channel, broker=watcher)) as changes:
            assert names(await next_change(changes)) == []
            server = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                KILLED_SERVER,
                redis_url,
                watcher.prefix,
                channel,
                str(HEARTBEAT),
                cwd=ROOT,
                env={**os.environ, "DJANGO_SETTINGS_MODULE": "example.settings"},
                stdout=asyncio.subprocess.DEVNULL,
            )
            try:
                assert diff(await next_change(changes, within=30)) == (["carol"], [])
                await asyncio.sleep(HEARTBEAT * 1.2)  # at least one renewal went out
                server.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                assert diff(await next_change(changes)) == ([], ["carol"])
                took = time.monotonic() - killed
            finally:
                with contextlib.suppress(ProcessLookupError):
                    server.kill()
                await server.wait()
            assert took <= 2 * HEARTBEAT + scaled(0.3), took
            assert await sync_to_async(members)(channel, broker=watcher) == []


async def test_after_redis_restarts_presence_is_rebuilt_within_a_heartbeat_and_resent_whole() -> (
    None
):
    """Redis restarts empty: each server joins its connections again at its next heartbeat;
    a watcher is given a new whole state, never a diff against the lost one."""
    with RedisServer(persistent=False) as own:
        async with servers(own.url) as (one, two):
            channel = f"room:{uuid.uuid4().hex[:6]}"
            async with contextlib.aclosing(watch(channel, broker=two)) as changes:
                assert names(await next_change(changes)) == []
                async with track(channel, "dave", {"name": "dave"}, broker=one):
                    assert diff(await next_change(changes)) == (["dave"], [])
                    own.stop()
                    own.start()
                    restarted = time.monotonic()
                    while True:  # a new state, possibly empty before dave's renewal
                        change = await next_change(changes, within=10)
                        if isinstance(change, PresenceState) and names(change) == ["dave"]:
                            break
                        if isinstance(change, PresenceDiff) and diff(change) == (["dave"], []):
                            break
                    assert time.monotonic() - restarted <= scaled(2) + HEARTBEAT
                    found = await sync_to_async(members)(channel, broker=one)
                    assert [m.id for m in found] == ["dave"]


async def test_the_in_memory_broker_keeps_presence_in_its_process() -> None:
    """No Redis: one process's members, the same state and changes."""
    async with (
        servers(None, count=1) as (broker,),
        contextlib.aclosing(watch("room:m", broker=broker)) as changes,
    ):
        assert names(await next_change(changes)) == []
        async with track("room:m", 7, {"name": "erin"}, broker=broker):
            assert diff(await next_change(changes)) == (["7"], [])
            found = members("room:m", broker=broker)
            assert [(m.id, m.info["name"]) for m in found] == [("7", "erin")]
        assert diff(await next_change(changes)) == ([], ["7"])


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_an_ephemeral_event_arrives_with_no_place_and_too_large_or_fast_is_refused(
    backend: str, redis_url: str
) -> None:
    """broadcast(): now, with no history place; refused past the size or the rate, saying so."""
    async with (
        servers(redis_url if backend == "redis" else None, count=1) as (broker,),
        broker.subscribe(ephemeral_channel("room:e")) as events,
    ):
        await broadcast("room:e", {"typing": True}, sender=1, broker=broker)
        event = await asyncio.wait_for(anext(events), scaled(5))
        assert (event.data, event.epoch) == ({"typing": True, "sender": "1"}, "")
        with pytest.raises(EphemeralRefused, match="EPHEMERAL_MAX_SIZE"):
            await broadcast("room:e", {"x": "y" * 2000}, sender=1, broker=broker)
        for _ in range(5):  # the rate: 5 a second from one sender on one channel
            await broadcast("room:e", {}, sender=2, broker=broker)
        with pytest.raises(EphemeralRefused, match="EPHEMERAL_RATE"):
            await broadcast("room:e", {}, sender=2, broker=broker)
        await broadcast("room:e", {}, sender=3, broker=broker)  # another sender: its own count


async def test_members_leaving_while_their_server_renews_them_stay_gone(redis_url: str) -> None:
    """1,200 members (3 renewal calls) leave one by one across heartbeats: none comes back."""
    async with servers(redis_url) as (one, two):
        channel = f"room:{uuid.uuid4().hex[:6]}"
        tabs = []
        for n in range(1200):
            tab = contextlib.AsyncExitStack()
            await tab.enter_async_context(track(channel, n, broker=one))
            tabs.append(tab)
        async with contextlib.aclosing(watch(channel, broker=two)) as changes:
            assert len((await next_change(changes)).members) == 1200

            async def leave_one_by_one() -> None:
                for tab in reversed(tabs):  # the newest first: those renewed last
                    await tab.aclose()

            leaving = asyncio.create_task(leave_one_by_one())
            present = 1200
            while present:
                change = await next_change(changes)
                if isinstance(change, PresenceState):  # it fell behind: a whole new list
                    present = len(change.members)
                    continue
                joins, leaves = diff(change)
                assert joins == [], f"{joins[:3]} came back"
                present -= len(leaves)
            await leaving
            with pytest.raises(TimeoutError):
                await next_change(changes, within=3 * HEARTBEAT)
            assert await sync_to_async(members)(channel, broker=one) == []


async def test_a_watcher_that_fell_behind_gets_a_whole_new_state_not_an_error(
    redis_url: str,
) -> None:
    """More changes than its buffer while it did not read: the next thing it reads is the list."""
    prefix = f"presence-{uuid.uuid4().hex[:8]}:"
    one, slow = Broker(redis_url, prefix=prefix), Broker(redis_url, prefix=prefix, buffer_size=5)
    channel = f"room:{uuid.uuid4().hex[:6]}"
    try:
        async with (
            contextlib.aclosing(watch(channel, broker=slow)) as changes,
            contextlib.AsyncExitStack() as tabs,
        ):
            assert names(await next_change(changes)) == []
            for n in range(20):  # each join waits for Redis: its event reaches the buffer
                await tabs.enter_async_context(track(channel, n, broker=one))
            state = await next_change(changes)
            assert isinstance(state, PresenceState), state
            assert sorted(names(state), key=int) == [str(n) for n in range(20)]
    finally:
        await one.stop()
        await slow.stop()
