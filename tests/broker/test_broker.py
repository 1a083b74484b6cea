"""The broker's behaviour, the same on the in-memory, the Redis and the Redis Cluster backend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from gql_pubsub import Broker, BrokerState, Event, EventKind, SubscriberOverflow
from gql_pubsub.broker.backends import BrokerUnavailable
from gql_pubsub.broker.process import configured_prefix

from ..conftest import numsub, wait_numsub
from ..services import captured_log, scaled, to_thread


def event(n: int, kind: EventKind = EventKind.CREATED) -> Event:
    return Event(kind=kind, model="tests.thing", pk=n, data={"n": n})


@pytest.fixture(params=["memory", "redis", "cluster"])
async def broker(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Broker]:
    url = None if request.param == "memory" else redis_url
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    broker = Broker(url, prefix=f"test-{request.node.name}-{uuid.uuid4().hex[:8]}:", buffer_size=5)
    await broker.start()
    yield broker
    await broker.stop()


async def receive(subscriber: AsyncIterator[Event], timeout: float = 5) -> Event:
    return await asyncio.wait_for(anext(subscriber), scaled(timeout))


async def test_a_subscriber_receives_what_is_published_on_its_channels(broker: Broker) -> None:
    """Events published on a subscribed channel arrive, in order, tagged with their channel."""
    async with broker.subscribe("a", "b") as subscriber:
        await broker.publish(["a"], event(1))
        await broker.publish(["c"], event(2))
        await broker.publish(["b"], event(3))
        first, second = await receive(subscriber), await receive(subscriber)
    assert (first.pk, first.channel, first.kind) == (1, "a", EventKind.CREATED)
    assert (second.pk, second.channel, second.data) == (3, "b", {"n": 3})


async def test_every_local_subscriber_of_a_channel_gets_each_event(broker: Broker) -> None:
    """Fan-out: one published event reaches each of many subscribers once."""
    async with contextlib_multi(broker, "room", 50) as subscribers:
        await broker.publish(["room"], event(7))
        received = [await receive(s) for s in subscribers]
        # Once: a later event is the next each one gets, not the same one again.
        await broker.publish(["room"], event(8))
        following = [await receive(s) for s in subscribers]
    assert [e.pk for e in received] == [7] * 50
    assert [e.pk for e in following] == [8] * 50


async def test_sync_publishing_from_another_thread_reaches_subscribers(broker: Broker) -> None:
    """publish_sync works from a thread, as on_commit callbacks call it."""
    async with broker.subscribe("t") as subscriber:
        thread = threading.Thread(target=broker.publish_sync, args=(["t"], event(9)))
        thread.start()
        got = await receive(subscriber)
        thread.join()
    assert got.pk == 9


async def test_the_backend_subscription_is_shared_and_released_with_the_last_subscriber(
    broker: Broker,
) -> None:
    """SUBSCRIBE on the first local subscriber of a channel, UNSUBSCRIBE after the last."""
    async with broker.subscribe("shared") as first:
        async with broker.subscribe("shared"):
            assert broker.backend.subscribed_channels() == {"shared"}
            assert broker.subscriber_count("shared") == 2
        assert broker.backend.subscribed_channels() == {"shared"}
        await broker.publish(["shared"], event(1))
        assert (await receive(first)).pk == 1
    assert broker.backend.subscribed_channels() == frozenset()
    assert broker.subscriber_count() == 0


async def test_a_slow_subscriber_is_ended_and_the_others_keep_receiving(broker: Broker) -> None:
    """Overflow policy: a full buffer ends that subscriber with SubscriberOverflow only."""
    async with broker.subscribe("busy") as slow, broker.subscribe("busy") as fast:
        for n in range(broker.buffer_size):
            await broker.publish(["busy"], event(n))
            assert (await receive(fast)).pk == n
        await broker.publish(["busy"], event(99))  # one more than `slow` can hold
        assert (await receive(fast)).pk == 99
        with pytest.raises(SubscriberOverflow, match="SUBSCRIBER_BUFFER"):
            await receive(slow)


async def test_stopping_the_broker_ends_open_subscriptions(broker: Broker) -> None:
    """stop() ends every subscriber's iteration instead of leaving it hanging."""
    async with broker.subscribe("x") as subscriber:
        await broker.stop()
        with pytest.raises(StopAsyncIteration):
            await receive(subscriber)
    assert broker.state is BrokerState.STOPPED


async def test_a_foreign_message_on_a_channel_is_ignored(broker: Broker) -> None:
    """Bytes that are not an event (another publisher) are skipped, not fatal."""
    async with broker.subscribe("mixed") as subscriber:
        await broker.backend.publish(["mixed"], b"not json")
        await broker.publish(["mixed"], event(5))
        assert (await receive(subscriber)).pk == 5


class contextlib_multi:
    """Enter ``count`` subscriptions of one channel at once."""

    def __init__(self, broker: Broker, channel: str, count: int) -> None:
        self.contexts = [broker.subscribe(channel) for _ in range(count)]

    async def __aenter__(self) -> list[AsyncIterator[Event]]:
        return list(await asyncio.gather(*(c.__aenter__() for c in self.contexts)))

    async def __aexit__(self, *exc: object) -> None:
        for context in self.contexts:
            await context.__aexit__(None, None, None)


async def test_redis_subscriptions_are_released_in_redis(redis_url: str) -> None:
    """After the last subscriber leaves, Redis itself shows no subscriber on the channel."""
    broker = Broker(redis_url, prefix=configured_prefix())
    client = redis.Redis.from_url(redis_url)
    try:
        async with broker.subscribe("released"):
            assert numsub(client, "released") == 1
        await to_thread(wait_numsub, client, "released", 0)
        await broker.stop()
    finally:
        client.close()


async def test_an_unreachable_redis_fails_start_with_a_clear_error() -> None:
    """A bad BROKER_URL says where it tried and how to fix it."""
    broker = Broker("redis://127.0.0.1:1/0")
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1.*BROKER_URL"):
        await broker.start()


def test_an_unknown_broker_scheme_is_refused() -> None:
    """The error names the schemes that work."""
    with pytest.raises(ValueError, match="redis://"):
        Broker("kafka://localhost")


def test_an_event_carries_decimals_uuids_durations_bytes_and_sets_as_json() -> None:
    """Values JSON lacks travel as strings, seconds, hex and sorted lists; others are refused."""
    import datetime
    import decimal

    from gql_pubsub.core.events import Event

    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    data = {
        "price": decimal.Decimal("9.90"),
        "id": key,
        "wait": datetime.timedelta(minutes=1, milliseconds=500),
        "raw": b"\x00\xff",
        "view": memoryview(b"\x01"),
        "tags": {"b", "a"},
        "frozen": frozenset({2, 1}),
    }
    got = Event.decode(event_with(data).encode(), "ch").data
    assert got == {
        "price": "9.90",
        "id": str(key),
        "wait": 60.5,
        "raw": "00ff",
        "view": "01",
        "tags": ["a", "b"],
        "frozen": [1, 2],
    }
    with pytest.raises(TypeError, match="Cannot encode object in an event; make it JSON-friendly"):
        event_with({"x": object()}).encode()


def event_with(data: dict[str, object]) -> Event:
    return Event(kind=EventKind.CUSTOM, model=None, pk=None, data=data)  # type: ignore[arg-type]


async def test_a_failing_watcher_is_logged_and_does_not_stop_delivery(broker: Broker) -> None:
    """A watcher callback that raises: logged with its channels and traceback; others still get
    the event, and the watcher gets the next one."""
    seen: list[int] = []

    def fragile(got: object) -> None:
        assert isinstance(got, Event)
        seen.append(got.pk)
        if got.pk == 1:
            raise RuntimeError("watcher bug")

    with captured_log("gql_pubsub.broker", logging.ERROR) as log:
        async with broker.watch(fragile, "w"), broker.subscribe("w") as subscriber:
            for n in (1, 2):
                await broker.publish(["w"], event(n))
            assert [(await receive(subscriber)).pk for _ in range(2)] == [1, 2]
    records = log.records
    assert seen == [1, 2]
    assert [r.getMessage() for r in records] == ["A watcher of ['w'] failed"]
    assert records[0].exc_info is not None and "watcher bug" in str(records[0].exc_info[1])


def test_a_broker_replaced_by_a_settings_change_closes_its_thread_client(
    redis_client: redis.Redis,
) -> None:
    """The publishing connection of sync code is closed when another broker takes over, not
    left to the garbage collector (an unclosed socket, then)."""
    from django.conf import settings
    from django.test import override_settings

    from gql_pubsub.broker.process import get_broker

    def publish_sync_clients() -> int:
        clients = redis_client.client_list()
        name = f"gql_pubsub-{os.getpid()}-publish-sync"
        return sum(client.get("name") == name for client in clients)

    first = get_broker()
    channel = f"replaced-{uuid.uuid4().hex[:10]}"
    first.publish_sync([channel], Event(EventKind.CUSTOM, None, None, {}))
    with_first = publish_sync_clients()  # first's, and any other broker's of this process
    assert with_first >= 1
    changed = {**settings.GQL_PUBSUB, "SUBSCRIBER_BUFFER": 7}
    with override_settings(GQL_PUBSUB=changed):
        assert get_broker() is not first
        assert publish_sync_clients() == with_first - 1


async def test_more_publishes_at_once_than_the_loop_has_connections_all_arrive(
    broker: Broker,
) -> None:
    """60 publishes and 60 history reads started together from the loop (its Redis client
    keeps 16 connections): each publish arrives, each read answers."""
    channels = [f"many-{n}" for n in range(60)]
    async with contextlib.AsyncExitStack() as stack:
        # 5 channels a subscriber: its buffer holds 5 events.
        subscribers = [
            await stack.enter_async_context(broker.subscribe(*channels[k : k + 5]))
            for k in range(0, 60, 5)
        ]
        await asyncio.gather(*(broker.publish([c], event(n)) for n, c in enumerate(channels)))
        got = {(await receive(s)).pk for s in subscribers for _ in range(5)}
        tails = await asyncio.gather(*(broker.backend.tail([c]) for c in channels))
    assert got == set(range(60))
    assert all(offsets[c] for c, (_, offsets) in zip(channels, tails, strict=True))


async def test_a_thousand_watched_channels_cost_the_broker_under_800_bytes_each() -> None:
    """One access channel per user, watched: once a channel is live the broker keeps no task
    for it (a finished task with its coroutine was ~0.6 KB a channel: 1,213 bytes in all)."""
    import gc
    import tracemalloc

    broker = Broker(None, prefix=f"memory-{uuid.uuid4().hex[:8]}:")
    await broker.start()
    names = [f"control:user:{n}" for n in range(1001)]
    watchers = [await broker.watcher(lambda event: None, names[0])]  # warm: first-use costs
    try:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            watchers += [await broker.watcher(lambda event: None, name) for name in names[1:]]
            await asyncio.sleep(0)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert all(broker.is_live(name) for name in names)
        assert grown / 1000 < 800, f"{grown / 1000:.0f} bytes a channel"
    finally:
        await broker.stop()


def test_after_redis_forgets_its_scripts_a_batch_is_published_once_each_in_order(
    redis_url: str,
) -> None:
    """SCRIPT FLUSH (what a Redis restart does to its scripts) between two publishes: the next
    batch of marked events (a relay's) still goes out, each event once and in order; a single
    event too; the same batch again publishes nothing."""
    from gql_pubsub.broker.backends.base import DUPLICATE, PUBLISHED
    from gql_pubsub.broker.backends.redis import RedisBackend

    prefix = f"flush-{uuid.uuid4().hex[:8]}:"
    backend = RedisBackend(redis_url, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    marks = "outbox:dest:published"
    try:
        assert backend.publish_many_sync([(["a"], b'{"n":0}')]) == [PUBLISHED]
        client.script_flush()
        events = [(["a"], b'{"n":%d}' % n) for n in (1, 2, 3)]
        names = [f"row-{n}" for n in (1, 2, 3)]
        assert backend.publish_many_sync(events, mark=(marks, names)) == [PUBLISHED] * 3
        client.script_flush()
        assert backend.publish_many_sync([(["a"], b'{"n":4}')]) == [PUBLISHED]
        assert backend.publish_many_sync(events, mark=(marks, names)) == [DUPLICATE] * 3
        history = client.xrange(backend.history_key("a"))
        assert [fields[b"p"] for _, fields in history] == [b'{"n":%d}' % n for n in (0, 1, 2, 3, 4)]
    finally:
        backend.close_sync()
        client.close()
