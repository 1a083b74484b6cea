"""Streams, as resolvers return them: a model's default channels, a subscriber that falls behind
its buffer, a deleted subscription row, and SKIP — each over real Redis, real sockets and a real
database."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import strawberry
import uvicorn
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from gql_pubsub import SKIP, Broker, Event, EventKind, apublish, get_broker, publish, stream

from ..conftest import wait_numsub
from ..gqlws import GraphQLWS
from ..helpers import connected
from ..services import LiveServer, free_port, scaled, to_thread

_names = itertools.count()


def unique(prefix: str) -> str:
    """A channel name no other test (or run) uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}-{time.monotonic_ns()}"


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` on the event loop (the in-process server's own) for at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + scaled(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def within(awaitable: Awaitable[Any], timeout: float = 5) -> Any:
    return await asyncio.wait_for(awaitable, scaled(timeout))


# -- 1. a publishable model's default channels ----------------------------------------------


@pytest.fixture
def chat(make_user: Callable[..., Any], make_correspondence: Callable[..., Any]) -> Any:
    author = make_user("author")
    return author, make_correspondence(author)


async def test_the_model_channel_and_the_instance_channel_carry_a_messages_orm_writes(
    broker: Broker, chat: Any
) -> None:
    """`chat.message` gets every message's created/updated/deleted; `chat.message:<pk>` its own."""
    from django.db.models import Max

    from example.chat.models import Message

    author, correspondence = chat
    # The instance channel is subscribed before the message exists, so its pk is chosen here,
    # far past every id in use (the row is deleted by the test itself).
    top = await Message.objects.aaggregate(top=Max("pk"))
    pk = (top["top"] or 0) + 1000
    assert Message.model_channel() == "chat.message"

    @sync_to_async
    def write() -> int:
        mine = Message.objects.create(
            pk=pk, correspondence=correspondence, author=author, body="a1"
        )
        other = Message.objects.create(correspondence=correspondence, author=author, body="b1")
        other_pk = int(other.pk)
        other.body = "b2"
        other.save()
        mine.body = "a2"
        mine.save()
        other.delete()
        mine.delete()
        return other_pk

    async with (
        broker.subscribe(Message.model_channel()) as model_subscriber,
        broker.subscribe(f"chat.message:{pk}") as instance_subscriber,
    ):
        other_pk = await write()
        instance_events = [await within(anext(instance_subscriber)) for _ in range(3)]
        model_events: list[Event] = []
        for _ in range(100):  # the model channel is every test's: keep ours
            if len(model_events) == 6:
                break
            event = await within(anext(model_subscriber))
            if event.pk in (pk, other_pk):
                model_events.append(event)
        assert len(model_events) == 6, f"only {model_events} among 100 model-channel events"
    assert [(e.pk, e.kind, e.data["body"]) for e in instance_events] == [
        (pk, EventKind.CREATED, "a1"),
        (pk, EventKind.UPDATED, "a2"),
        (pk, EventKind.DELETED, "a2"),
    ]
    assert {e.channel for e in instance_events} == {f"chat.message:{pk}"}
    assert other_pk != pk
    assert [(e.pk, e.kind, e.data["body"]) for e in model_events] == [
        (pk, EventKind.CREATED, "a1"),
        (other_pk, EventKind.CREATED, "b1"),
        (other_pk, EventKind.UPDATED, "b2"),
        (pk, EventKind.UPDATED, "a2"),
        (other_pk, EventKind.DELETED, "b2"),
        (pk, EventKind.DELETED, "a2"),
    ]
    assert {(e.channel, e.model) for e in model_events} == {("chat.message", "chat.message")}
    assert {e.data["correspondence_id"] for e in model_events} == {correspondence.pk}


# -- 2. and 4b. an in-process server whose schema can be made slow --------------------------

SUBSCRIBER_BUFFER = 3

_gates: dict[str, asyncio.Event] = {}
"""Per channel: released when the slow field may return."""
_entered: dict[str, asyncio.Event] = {}
"""Per channel: set when the slow field started executing an event."""


@strawberry.type
class Tick:
    channel: str
    n: int

    @strawberry.field
    async def gated(self) -> int:
        """Waits for its channel's gate: the group executing it falls behind meanwhile."""
        _entered[self.channel].set()
        await _gates[self.channel].wait()
        return self.n


def to_tick(event: Event) -> Tick:
    if event.data.get("skip"):
        return SKIP  # type: ignore[no-any-return]
    return Tick(channel=event.channel or "", n=int(event.data["n"]))


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self, channel: str) -> AsyncGenerator[Tick, None]:
        return stream(channel, map=to_tick)  # type: ignore[return-value]


gated_schema = strawberry.Schema(query=Query, subscription=Subscription)

TICKS = "subscription ($c: String!) { ticks(channel: $c) { n } }"
SLOW_TICKS = "subscription ($c: String!) { ticks(channel: $c) { n gated } }"


class GatedServer:
    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.ws_url = f"ws://127.0.0.1:{port}/graphql/"


@pytest.fixture
def small_buffer() -> Iterator[None]:
    """SUBSCRIBER_BUFFER of 3 for the broker the server builds (and this test publishes with)."""
    config = {**settings.GQL_PUBSUB, "SUBSCRIBER_BUFFER": SUBSCRIBER_BUFFER}
    with override_settings(GQL_PUBSUB=config):
        yield


@pytest.fixture
async def gated_server(small_buffer: None) -> AsyncIterator[GatedServer]:
    """uvicorn on this test's event loop serving the gated schema (its lifespan starts the
    broker, with the small buffer)."""
    from gql_pubsub.asgi import get_asgi_application

    port = free_port()
    app = get_asgi_application(gated_schema)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), 10, "the in-process uvicorn")
    assert server.started, "in-process uvicorn did not start"
    assert get_broker().buffer_size == SUBSCRIBER_BUFFER
    yield GatedServer(app, port)
    server.should_exit = True
    await asyncio.wait_for(task, scaled(20))


@pytest.fixture
def tokens(make_user: Callable[..., Any], token_for: Any) -> list[str]:
    """Tokens of two users."""
    return [token_for(make_user(name)) for name in ("fast", "slow")]


async def socket(server: GatedServer, token: str) -> GraphQLWS:
    client = await GraphQLWS.connect(server.ws_url)
    await client.init({"token": token})
    return client


async def test_a_subscription_that_falls_behind_its_buffer_ends_with_an_error_and_others_go_on(
    gated_server: GatedServer, tokens: list[str]
) -> None:
    """Past SUBSCRIBER_BUFFER events behind: `next` with the error, `complete`; others unhurt."""
    channel = unique("overflow")
    _gates[channel], _entered[channel] = asyncio.Event(), asyncio.Event()
    fast = await socket(gated_server, tokens[0])
    slow = await socket(gated_server, tokens[1])
    websocket = gated_server.app.websocket
    try:
        await fast.subscribe("f", TICKS, {"c": channel})
        await slow.subscribe("s", SLOW_TICKS, {"c": channel})
        await until(
            lambda: websocket.stats().live_groups == websocket.stats().group_members == 2,
            10,
            "both groups subscribed",
        )
        received = []

        async def tick(n: int) -> None:
            await apublish(channel, "custom", {"n": n})
            received.append((await fast.next_payload("f"))["data"]["ticks"]["n"])

        await tick(0)
        await within(_entered[channel].wait())  # the slow group is stuck executing event 0
        # Each event the fast socket receives was dispatched to both groups' broker subscribers
        # in one go: after SUBSCRIBER_BUFFER + 1 more, the slow group's has overflowed.
        for n in range(1, SUBSCRIBER_BUFFER + 2):
            await tick(n)
        _gates[channel].set()
        assert await slow.next_payload("s") == {"data": {"ticks": {"n": 0, "gated": 0}}}
        ended = await slow.next_payload("s")
        assert ended["data"] is None
        message = ended["errors"][0]["message"]
        assert f"fell more than {SUBSCRIBER_BUFFER} events behind" in message, message
        assert channel in message and "SUBSCRIBER_BUFFER" in message
        assert await slow.receive() == {"id": "s", "type": "complete"}

        for n in range(SUBSCRIBER_BUFFER + 2, SUBSCRIBER_BUFFER + 5):
            await tick(n)
        # The slow socket is still open and the ended operation sends nothing more: the next
        # message it gets is the answer to a new query.
        await slow.subscribe("q", "{ ok }")
        assert await slow.next_payload("q") == {"data": {"ok": True}}
        assert await slow.receive() == {"id": "q", "type": "complete"}
    finally:
        _gates[channel].set()
        await asyncio.gather(fast.close(), slow.close())
        del _gates[channel], _entered[channel]
    assert received == list(range(SUBSCRIBER_BUFFER + 5))


async def test_a_grouped_subscription_drops_the_events_its_map_skips(
    gated_server: GatedServer, tokens: list[str]
) -> None:
    """Over the socket: events mapped to SKIP send no `next`; the others arrive in order."""
    channel = unique("skip-socket")
    async with await socket(gated_server, tokens[0]) as client:
        await client.subscribe("t", TICKS, {"c": channel})
        websocket = gated_server.app.websocket
        await until(lambda: websocket.stats().live_groups == 1, 10, "the group subscribed")
        for data in ({"n": 0}, {"skip": True}, {"n": 1}, {"skip": True}, {"skip": True}):
            await apublish(channel, "custom", data)
        await apublish(channel, "custom", {"n": 2})
        got = [(await client.next_payload("t"))["data"]["ticks"]["n"] for _ in range(3)]
    assert got == [0, 1, 2]


# -- 3. a deleted Subscription row stops the `events` stream --------------------------------

EVENTS = "subscription { events { channel kind data } }"


@pytest.fixture
def follower(make_user: Callable[..., Any], token_for: Any) -> tuple[Any, str, str, str]:
    """A user following two `news:` channels (any user may read them); token and channels."""
    from gql_pubsub.models import Channel

    user = make_user("follower")
    news, other = unique("news:deleted"), unique("news:kept")
    for name in (news, other):
        Channel.objects.create(name=name).subscribe(user)
    return user, token_for(user), news, other


async def test_deleting_a_subscription_row_stops_its_channel_on_the_events_stream(
    server: LiveServer, redis_client: redis.Redis, follower: tuple[Any, str, str, str]
) -> None:
    """`Subscription.objects.filter(...).delete()`: later events of that channel never arrive."""
    from gql_pubsub.models import Subscription

    user, token, news, other = follower
    async with await connected(server, token) as client:
        await client.subscribe("ev", EVENTS)
        for name in (news, other):
            await to_thread(wait_numsub, redis_client, name, 1)
        await sync_to_async(publish)(news, "custom", {"n": "before"})
        before = (await client.next_payload("ev"))["data"]["events"]
        assert before == {"channel": news, "kind": "CUSTOM", "data": {"n": "before"}}

        deleted, _ = await sync_to_async(
            lambda: Subscription.objects.filter(user=user, channel__name=news).delete()
        )()
        assert deleted == 1
        for n in range(10):
            await sync_to_async(publish)(news, "custom", {"n": f"after {n}"})
        # Published after those, on one connection: a leaked one would arrive first.
        await sync_to_async(publish)(other, "custom", {"marker": True})
        after = (await client.next_payload("ev"))["data"]["events"]
    assert after == {"channel": other, "kind": "CUSTOM", "data": {"marker": True}}


# -- 4. SKIP in plain Python -----------------------------------------------------------------


def _evens(event: Event) -> Any:
    """SKIP for odd n; any other value (0 and None included) is streamed."""
    if "none" in event.data:
        return None
    n = int(event.data["n"])
    return SKIP if n % 2 else n


async def test_a_stream_drops_exactly_the_events_its_map_returns_skip_for(
    broker: Broker,
) -> None:
    """stream(..., map=fn): SKIP drops an event; falsy values such as 0 and None do not."""
    channel = unique("skip")
    async with stream(channel, map=_evens) as events:
        for data in ({"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}, {"none": True}, {"n": 5}, {"n": 6}):
            await broker.publish([channel], Event(EventKind.CUSTOM, None, None, data))
        await broker.publish([channel], Event(EventKind.CUSTOM, None, None, {"n": 8}))  # marker
        got = [await within(anext(events)) for _ in range(5)]
    assert got == [0, 2, None, 6, 8]  # exactly these: nothing else came before the marker
