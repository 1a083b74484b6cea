"""Several processes on one Redis, and many subscriptions on a constant number of connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from example.chat.models import Correspondence, Message

from ..conftest import numsub, wait_numsub
from ..gqlws import GraphQLWS
from ..helpers import MESSAGE_ADDED, connected, send_message, server_connections, subscribed
from ..services import LiveServer, live_server, scaled, to_thread, wait_until

SUBSCRIPTIONS = 200


@pytest.fixture
def second_server(log_dir: Path) -> Iterator[LiveServer]:
    with live_server({}, log_dir=log_dir) as live:
        yield live


@pytest.fixture
def two_workers(log_dir: Path) -> Iterator[LiveServer]:
    with live_server({}, workers=2, log_dir=log_dir) as live:
        yield live


async def test_a_message_sent_through_one_server_reaches_a_subscriber_on_another(
    server: LiveServer, second_server: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """Two processes share Redis: the mutation runs on one, the socket is on the other."""
    alice_token, bob_token, correspondence = pair
    async with await connected(second_server, bob_token) as client:
        await subscribed(client, redis_client, "m", MESSAGE_ADDED, correspondence)
        sent = await send_message(server, alice_token, correspondence.pk, "across processes")
        payload = await client.next_payload("m")
    assert payload["data"]["messageAdded"] == sent


SEND_OVER_SOCKET = """
mutation ($c: ID!, $b: String!) { sendMessage(correspondenceId: $c, body: $b) { body } }
"""


async def test_two_uvicorn_workers_both_deliver(
    two_workers: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """With --workers 2, subscribers on either worker receive a message sent through either."""
    _alice_token, bob_token, correspondence = pair
    clients: list[GraphQLWS] = []
    try:
        # Connections land on whichever worker accepts; open them until both workers subscribe.
        while numsub(redis_client, correspondence.channel) < 2:
            assert len(clients) < 100, "every connection landed on the same worker"
            client = await connected(two_workers, bob_token)
            await client.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
            clients.append(client)
            await to_thread(
                wait_until,
                lambda: numsub(redis_client, correspondence.channel) >= 1,
                10,
                "a worker subscribed",
            )
        warm_ups = await _warm_up(clients, correspondence)
        # Every socket sends one message over itself: the worker holding that socket runs the
        # mutation and publishes. Both workers hold some of these sockets (each holds a Redis
        # subscription, and only these sockets subscribe), so messages go out through both.
        bodies = [f"through socket {n}" for n in range(len(clients))]
        received: list[list[str]] = [[] for _ in clients]  # messageAdded bodies, as received
        for n, (client, body) in enumerate(zip(clients, bodies, strict=True)):
            op = f"send{n}"
            await client.subscribe(op, SEND_OVER_SOCKET, {"c": str(correspondence.pk), "b": body})
            # Left-over warm-ups and the messages sent so far may come first; then the answer.
            limit = warm_ups + n + 2
            answer = await _messages_until(client, op, received[n], limit)
            assert answer == {
                "id": op,
                "type": "next",
                "payload": {"data": {"sendMessage": {"body": body}}},
            }
            done = await _messages_until(client, op, received[n], limit)
            assert done == {"id": op, "type": "complete"}
        for n, client in enumerate(clients):
            while bodies[-1] not in received[n]:
                assert len(received[n]) < warm_ups + len(bodies), f"socket {n}: {received[n]}"
                payload = await client.next_payload("m")
                received[n].append(payload["data"]["messageAdded"]["body"])
            got = [body for body in received[n] if body != "warm-up"]
            assert got == bodies, f"socket {n} received {got}, not every message once in order"
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def _warm_up(clients: list[GraphQLWS], correspondence: Any) -> int:
    """Publish until every subscription has received one event (they are then all live);
    return how many warm-up messages were published."""
    author = await sync_to_async(lambda: correspondence.participants.first())()
    pending = set(range(len(clients)))
    published = 0
    deadline = asyncio.get_running_loop().time() + scaled(30)
    while pending:
        assert asyncio.get_running_loop().time() < deadline, f"{len(pending)} never warmed up"
        await Message.objects.acreate(correspondence=correspondence, author=author, body="warm-up")
        published += 1
        for index in list(pending):
            try:
                await clients[index].next_payload("m", timeout=0.5)
                pending.discard(index)
            except TimeoutError:
                pass
    return published


async def _messages_until(
    client: GraphQLWS, op: str, received: list[str], limit: int
) -> dict[str, Any]:
    """The next message for operation ``op``; the ``messageAdded`` events read before it are
    appended to ``received``. Fails after ``limit`` messages of any other kind."""
    for _ in range(limit):
        message = await client.receive()
        if message.get("id") == op:
            return message
        assert message.get("id") == "m" and message["type"] == "next", message
        received.append(message["payload"]["data"]["messageAdded"]["body"])
    raise AssertionError(f"no message for {op!r} among {limit} messages: {received}")


def _correspondences(count: int, *participants: Any) -> list[Correspondence]:
    created = Correspondence.objects.bulk_create(
        Correspondence(title=f"c{n}") for n in range(count)
    )
    through = Correspondence.participants.through
    through.objects.bulk_create(
        through(correspondence_id=c.pk, user_id=u.pk) for c in created for u in participants
    )
    return created


@pytest.mark.parametrize("layout", ["one socket", "one socket each"])
async def test_many_subscriptions_share_a_constant_number_of_redis_connections(
    server: LiveServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    layout: str,
) -> None:
    """200 subscriptions hold the same Redis connections as one, and leave nothing behind."""
    user = await sync_to_async(make_user)("many")
    token = token_for(user)
    rooms = await sync_to_async(_correspondences)(SUBSCRIPTIONS, user)
    channels = [room.channel for room in rooms]

    # Baseline: the server's connections with one live subscription (and a publish behind it).
    async with await connected(server, token) as probe:
        await subscribed(probe, redis_client, "m", MESSAGE_ADDED, rooms[0])
        await Message.objects.acreate(correspondence=rooms[0], author=user, body="probe")
        await probe.next_payload("m")
        assert_few_connections(redis_client, server.pid)

    sockets = 1 if layout == "one socket" else SUBSCRIPTIONS
    clients = list(await asyncio.gather(*(connected(server, token) for _ in range(sockets))))
    try:
        for n, room in enumerate(rooms):
            await clients[n % sockets].subscribe(f"op{n}", MESSAGE_ADDED, {"c": str(room.pk)})
        await to_thread(
            wait_until,
            lambda: all(numsub(redis_client, c) == 1 for c in channels),
            30,
            "every channel subscribed",
        )
        await sync_to_async(
            lambda: [
                Message.objects.create(correspondence=r, author=user, body=r.title) for r in rooms
            ]
        )()
        received = {}
        for client in clients:
            for _ in range(SUBSCRIPTIONS // sockets):
                message = await client.receive()
                received[message["id"]] = message["payload"]["data"]["messageAdded"]["body"]
        assert received == {f"op{n}": room.title for n, room in enumerate(rooms)}
        assert_few_connections(redis_client, server.pid)
    finally:
        await asyncio.gather(*(c.close() for c in clients))

    for channel in channels:
        await to_thread(wait_numsub, redis_client, channel, 0)
    assert_few_connections(redis_client, server.pid)


def assert_few_connections(redis_client: redis.Redis, pid: int) -> None:
    """One subscription connection, and a few publishing ones (as many as publish at once)."""
    names = sorted(c["name"] for c in server_connections(redis_client, pid))
    assert sum(name.endswith("-subscribe") for name in names) == 1, names
    assert len(names) <= 4, names
