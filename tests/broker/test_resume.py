"""Offsets and history: each event's place in its channel, replayed for whoever missed it.

The broker-level tests run on both backends (the in-memory one gives one process the same
semantics); the socket-level ones on a live server with the suite's Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from gql_pubsub import Broker, Event, EventKind, publish
from gql_pubsub.broker.cursors import REFETCH, Cursor
from gql_pubsub.broker.replay import history_since
from gql_pubsub.core.events import START

from ..gqlws import GraphQLWS
from ..helpers import MESSAGE_ADDED, connected, send_message, subscribed
from ..services import LiveServer, scaled, to_thread, wait_until


def custom(n: int) -> Event:
    return Event(EventKind.CUSTOM, None, None, {"n": n})


def numbers(events: list[Event] | None) -> list[int] | None:
    return None if events is None else [e.data["n"] for e in events]


@pytest.fixture(params=["memory", "redis"])
async def history_broker(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Broker]:
    """A broker whose channels keep their last 3 events."""
    url = None if request.param == "memory" else redis_url
    broker = Broker(url, prefix=f"test-resume-{uuid.uuid4().hex}:", history_length=3)
    await broker.start()
    yield broker
    await broker.stop()


async def received(broker: Broker, channel: str, count: int) -> list[Event]:
    """Publish ``count`` events on ``channel`` and return them as a subscriber received them."""
    async with broker.subscribe(channel) as subscriber:
        for n in range(1, count + 1):
            await broker.publish([channel], custom(n))
        events = [await asyncio.wait_for(anext(subscriber), scaled(5)) for _ in range(count)]
    assert all(isinstance(e, Event) for e in events)
    return events  # type: ignore[return-value]


async def test_every_event_gets_the_next_place_in_its_channel(history_broker: Broker) -> None:
    """Offsets grow with each event of a channel, under one epoch; the tail is the last one."""
    events = await received(history_broker, "room", 3)
    offsets = [e.offset for e in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3 and offsets[0] > START
    assert len({e.epoch for e in events}) == 1 and events[0].epoch
    epochs, tails = await history_broker.tail(["room", "empty"])
    assert epochs == {"room": events[0].epoch, "empty": events[0].epoch}  # one Redis: one epoch
    assert tails == {"room": offsets[-1], "empty": START}


async def test_the_history_replays_what_came_after_a_place(history_broker: Broker) -> None:
    """After the 1st of 3 events: the 2nd and 3rd; after the last: nothing."""
    events = await received(history_broker, "room", 3)
    epoch, first, last = events[0].epoch, events[0].offset, events[-1].offset
    assert numbers(await history_since(history_broker, "room", epoch, first, time.time())) == [2, 3]
    assert numbers(await history_since(history_broker, "room", epoch, last, time.time())) == []


async def test_a_history_trimmed_past_a_place_cannot_prove_it_is_complete(
    history_broker: Broker,
) -> None:
    """Of 6 events 3 are kept: after the 4th, the 5th and 6th; after the 3rd (gone), None."""
    events = await received(history_broker, "room", 6)
    epoch, now = events[0].epoch, time.time()
    assert numbers(await history_since(history_broker, "room", epoch, events[3].offset, now)) == [
        5,
        6,
    ]
    assert await history_since(history_broker, "room", epoch, events[2].offset, now) is None
    assert await history_since(history_broker, "room", epoch, START, now) is None


async def test_another_epoch_is_never_replayed(history_broker: Broker) -> None:
    """A place from another history (Redis lost its data) gets None: the client must refetch."""
    events = await received(history_broker, "room", 2)
    assert (
        await history_since(history_broker, "room", "another", events[0].offset, time.time())
        is None
    )


async def test_a_place_taken_before_any_event_replays_them_all_while_recent(
    history_broker: Broker,
) -> None:
    """From the start of an empty channel: everything since, unless the place is too old to
    prove that no history expired since."""
    epochs, tails = await history_broker.tail(["quiet"])
    epoch = epochs["quiet"]
    assert tails["quiet"] == START
    issued = time.time()
    await received(history_broker, "quiet", 2)
    assert numbers(await history_since(history_broker, "quiet", epoch, START, issued)) == [1, 2]
    long_ago = issued - 2 * history_broker.backend.history_age  # type: ignore[attr-defined]
    assert await history_since(history_broker, "quiet", epoch, START, long_ago) is None


async def test_an_outbox_event_is_published_once_however_often_it_is_sent(
    redis_url: str,
) -> None:
    """The same outbox id sent twice (a writer and a relay): one message, one history entry."""
    prefix = f"test-resume-{uuid.uuid4().hex}:"
    broker = Broker(redis_url, prefix=prefix)
    await broker.start()
    try:
        async with broker.subscribe("room") as subscriber:
            backend: Any = broker.backend
            payload = custom(1).encode()
            for _ in range(2):
                await to_thread(
                    backend.publish_many_sync,
                    [(["room"], payload)],
                    mark=("marks", ["default:7:1"]),
                )
            await broker.publish(["room"], custom(2))  # the positive control
            first = await asyncio.wait_for(anext(subscriber), scaled(5))
            second = await asyncio.wait_for(anext(subscriber), scaled(5))
        assert [first.data["n"], second.data["n"]] == [1, 2]  # type: ignore[union-attr]
        client = redis.Redis.from_url(redis_url)
        assert client.xlen(backend.history_key("room")) == 2
        client.close()
    finally:
        await broker.stop()


# -- over the socket ---------------------------------------------------------------------------


async def resumable(client: GraphQLWS, correspondence: Any, after: str | None) -> None:
    """Subscribe to messageAdded asking for cursors, from ``after`` (None: from now)."""
    await client.send(
        {
            "id": "m",
            "type": "subscribe",
            "payload": {
                "query": MESSAGE_ADDED,
                "variables": {"c": str(correspondence.pk)},
                "extensions": {"after": after},
            },
        }
    )


async def live_cursor(client: GraphQLWS) -> str:
    """The cursor-only ``next`` that says the subscription is live."""
    payload = await client.next_payload("m")
    assert set(payload) == {"extensions"}, payload
    cursor: str = payload["extensions"]["cursor"]
    return cursor


async def test_a_client_resuming_from_its_cursor_gets_what_it_missed_once_in_order(
    server: LiveServer, pair: Any
) -> None:
    """Bob sees 1, leaves; 2 and 3 are sent; back with his cursor he gets 2, 3, then live 4."""
    alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as bob:
        await resumable(bob, correspondence, None)
        await live_cursor(bob)
        await send_message(server, alice_token, correspondence.pk, "one")
        payload = await bob.next_payload("m")
        assert payload["data"]["messageAdded"]["body"] == "one"
        cursor = payload["extensions"]["cursor"]
    for body in ("two", "three"):
        await send_message(server, alice_token, correspondence.pk, body)
    async with await connected(server, bob_token) as bob:
        await resumable(bob, correspondence, cursor)
        assert await live_cursor(bob) == cursor  # live; nothing seen since that cursor
        missed = [(await bob.next_payload("m"))["data"]["messageAdded"]["body"] for _ in "ab"]
        assert missed == ["two", "three"]
        await send_message(server, alice_token, correspondence.pk, "four")
        assert (await bob.next_payload("m"))["data"]["messageAdded"]["body"] == "four"
        await bob.expect_silence(0.5)  # each once


async def test_a_resuming_and_a_live_subscriber_of_one_group_each_get_every_event_once(
    server: LiveServer, pair: Any
) -> None:
    """Bob stays; his second socket leaves and comes back with its cursor while Alice writes."""
    alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as staying:
        await resumable(staying, correspondence, None)
        await live_cursor(staying)
        async with await connected(server, bob_token) as leaving:
            await resumable(leaving, correspondence, None)
            cursor = await live_cursor(leaving)
        bodies = [f"m{n}" for n in range(6)]
        for body in bodies[:3]:
            await send_message(server, alice_token, correspondence.pk, body)
        async with await connected(server, bob_token) as back:
            await resumable(back, correspondence, cursor)
            for body in bodies[3:]:
                await send_message(server, alice_token, correspondence.pk, body)
            got = []
            while len(got) < len(bodies):
                payload = await back.next_payload("m")
                if "data" in payload:
                    got.append(payload["data"]["messageAdded"]["body"])
            assert got == bodies
            await back.expect_silence(0.3)
        stayed = [(await staying.next_payload("m"))["data"]["messageAdded"]["body"] for _ in bodies]
        assert stayed == bodies
        await staying.expect_silence(0.3)


async def test_a_cursor_the_history_no_longer_covers_gets_the_refetch_signal(
    server: LiveServer, pair: Any
) -> None:
    """A cursor of another epoch: one REFETCH next (with a fresh cursor), then live events."""
    alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as bob:
        await resumable(bob, correspondence, None)
        cursor = Cursor.decode(await live_cursor(bob))
    lost = dict.fromkeys(cursor.positions, "an-epoch-redis-lost")
    stale = Cursor(lost, cursor.positions, cursor.issued).encode()
    async with await connected(server, bob_token) as bob:
        await resumable(bob, correspondence, stale)
        signal = await bob.next_payload("m")
        assert signal["data"] is None
        assert signal["errors"][0]["extensions"]["code"] == REFETCH
        assert "refetch" in signal["errors"][0]["message"]
        fresh = Cursor.decode(signal["extensions"]["cursor"])
        assert fresh.epochs == cursor.epochs
        await send_message(server, alice_token, correspondence.pk, "after the signal")
        payload = await bob.next_payload("m")
        assert payload["data"]["messageAdded"]["body"] == "after the signal"


@pytest.mark.parametrize(
    "after", ["not a cursor", 42, Cursor({}, {}).encode()[:-3]], ids=["text", "number", "cut"]
)
async def test_an_invalid_cursor_is_refused_with_an_error_that_says_what_to_send(
    server: LiveServer, pair: Any, after: Any
) -> None:
    """Garbage in ``after``: the operation's ``error``, naming what is expected."""
    _, bob_token, correspondence = pair
    async with await connected(server, bob_token) as bob:
        await resumable(bob, correspondence, after)
        message = await bob.receive()
        assert message["type"] == "error" and message["id"] == "m"
        assert "extensions.after" in message["payload"][0]["message"]
        assert "cursor" in message["payload"][0]["message"]


async def test_without_after_the_frames_are_unchanged(
    server: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """A client that does not ask for cursors gets plain results: no cursor, no live marker."""
    alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as bob:
        await subscribed(bob, redis_client, "m", MESSAGE_ADDED, correspondence)
        await send_message(server, alice_token, correspondence.pk, "plain")
        payload = await bob.next_payload("m")
        assert set(payload) == {"data"} and payload["data"]["messageAdded"]["body"] == "plain"


EVENTS = "subscription { events { channel data } }"


async def test_the_events_stream_resumes_across_all_the_channels_it_follows(
    server: LiveServer, make_user: Callable[..., Any], token_for: Any
) -> None:
    """A user following two channels leaves after event 1; 2 and 3 (one on each channel) are
    replayed, in order, when the `events` stream resumes with its cursor; then 4 arrives live."""
    from gql_pubsub.models import Channel

    user = await to_thread(make_user, "follower")
    token = await to_thread(token_for, user)
    news, other = f"news:{uuid.uuid4().hex}", f"news:{uuid.uuid4().hex}"
    for name in (news, other):
        await sync_to_async(lambda n=name: Channel.objects.create(name=n).subscribe(user))()
    request = {"id": "ev", "type": "subscribe", "payload": {"query": EVENTS}}

    def got(payload: dict[str, Any]) -> tuple[str, int]:
        event = payload["data"]["events"]
        return event["channel"], event["data"]["n"]

    async with await connected(server, token) as client:
        await client.send({**request, "payload": {"query": EVENTS, "extensions": {"after": None}}})
        assert set(await client.next_payload("ev")) == {"extensions"}  # live
        await sync_to_async(publish)(news, "custom", {"n": 1})
        first = await client.next_payload("ev")
        assert got(first) == (news, 1)
    await sync_to_async(publish)(news, "custom", {"n": 2})
    await sync_to_async(publish)(other, "custom", {"n": 3})
    resume = {"query": EVENTS, "extensions": {"after": first["extensions"]["cursor"]}}
    async with await connected(server, token) as client:
        await client.send({**request, "payload": resume})
        assert set(await client.next_payload("ev")) == {"extensions"}  # live after the replay
        replayed = [got(await client.next_payload("ev")) for _ in "ab"]
        assert sorted(replayed) == sorted([(news, 2), (other, 3)])  # order is per channel
        await sync_to_async(publish)(other, "custom", {"n": 4})
        fourth = await client.next_payload("ev")
        assert got(fourth) == (other, 4) and "cursor" in fourth["extensions"]
        await client.expect_silence(0.3)


async def test_a_cursor_resumed_with_nothing_missed_is_issued_anew(
    server: LiveServer, pair: Any
) -> None:
    """Nothing was missed since an old cursor: the live cursor keeps its places but is issued
    now, so that the client's next resume is not judged by the old cursor's age."""
    _, bob_token, correspondence = pair
    async with await connected(server, bob_token) as bob:
        await resumable(bob, correspondence, None)
        cursor = Cursor.decode(await live_cursor(bob))
    old = Cursor(cursor.epochs, cursor.positions, cursor.issued - 300).encode()
    before = int(time.time())
    async with await connected(server, bob_token) as bob:
        await resumable(bob, correspondence, old)
        live = Cursor.decode(await live_cursor(bob))
    assert (live.epochs, live.positions) == (cursor.epochs, cursor.positions)
    assert live.issued >= before


async def test_a_channel_followed_mid_stream_has_its_place_in_the_events_cursor(
    server: LiveServer, redis_client: redis.Redis, make_user: Callable[..., Any], token_for: Any
) -> None:
    """The resumable `events` stream gives a newly subscribed channel its place (the history's
    end when it was added), so a resume does not replay what came before the subscription."""
    from gql_pubsub.models import Channel

    user = await to_thread(make_user, "joiner")
    token = await to_thread(token_for, user)
    first, later = f"news:{uuid.uuid4().hex}", f"news:{uuid.uuid4().hex}"
    await sync_to_async(lambda: Channel.objects.create(name=first).subscribe(user))()
    await sync_to_async(publish)(later, "custom", {"n": "before the subscription"})
    request = {"query": EVENTS, "extensions": {"after": None}}
    async with await connected(server, token) as client:
        await client.send({"id": "ev", "type": "subscribe", "payload": request})
        live = Cursor.decode((await client.next_payload("ev"))["extensions"]["cursor"])
        assert set(live.positions) == {first}
        await sync_to_async(lambda: Channel.objects.create(name=later).subscribe(user))()
        await to_thread(
            wait_until,
            lambda: redis_client.pubsub_channels(f"*{later}"),
            10,
            f"the server to follow {later}",
        )
        await sync_to_async(publish)(first, "custom", {"n": 1})
        payload = await client.next_payload("ev")
        assert payload["data"]["events"]["data"] == {"n": 1}
        cursor = payload["extensions"]["cursor"]
        assert set(Cursor.decode(cursor).positions) == {first, later}
    async with await connected(server, token) as client:
        resume = {"query": EVENTS, "extensions": {"after": cursor}}
        await client.send({"id": "ev", "type": "subscribe", "payload": resume})
        assert set(await client.next_payload("ev")) == {"extensions"}  # live: nothing owed
        await sync_to_async(publish)(later, "custom", {"n": 2})
        assert (await client.next_payload("ev"))["data"]["events"]["data"] == {"n": 2}
