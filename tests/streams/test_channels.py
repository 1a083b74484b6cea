"""The `events` stream and channel mutations on live servers, with real Redis and sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from example.chat.models import Correspondence, Message

from ..conftest import wait_numsub
from ..gqlws import GraphQLWS
from ..helpers import connected, data_of, graphql, send_message
from ..services import LiveServer, live_server, to_thread

EVENTS = """
subscription {
  events {
    channel kind data
    node { __typename ... on Message { id body author { username } } ... on Correspondence { id } }
  }
}
"""
SUBSCRIBE = "mutation ($c: String!) { subscribe(channel: $c) { channel active } }"
UNSUBSCRIBE = "mutation ($c: String!) { unsubscribe(channel: $c) { channel active } }"


@pytest.fixture
def member(
    make_user: Callable[..., Any], make_correspondence: Callable[..., Any], token_for: Any
) -> Any:
    """Dana, in three correspondences with Eve (so following three channels), and their tokens."""
    dana, eve = make_user("dana"), make_user("eve")
    rooms = [make_correspondence(dana, eve, title=f"room {n}") for n in range(3)]
    return dana, token_for(dana), token_for(eve), rooms


@pytest.fixture
def second_server(log_dir: Path) -> Iterator[LiveServer]:
    with live_server({}, log_dir=log_dir) as live:
        yield live


async def events_socket(
    server: LiveServer, token: str, redis_client: redis.Redis, rooms: list[Any]
) -> GraphQLWS:
    """A socket with `events` open and its channels live in Redis."""
    client = await connected(server, token)
    await client.subscribe("ev", EVENTS)
    for room in rooms:
        await to_thread(wait_numsub, redis_client, room.channel, 1)
    return client


async def next_event(client: GraphQLWS) -> dict[str, Any]:
    event: dict[str, Any] = (await client.next_payload("ev"))["data"]["events"]
    return event


async def test_one_events_operation_carries_every_followed_channel_in_order(
    server: LiveServer, redis_client: redis.Redis, member: Any
) -> None:
    """Three correspondences, one `events`: each event tagged with its channel, in order."""
    _dana, dana_token, eve_token, rooms = member
    async with await events_socket(server, dana_token, redis_client, rooms) as client:
        for n in range(3):
            for room in rooms:
                await send_message(server, eve_token, room.pk, f"{room.title} #{n}")
        events = [await next_event(client) for _ in range(9)]
    # As received: the order they were sent in, across the three channels.
    assert [(e["channel"], e["node"]["body"]) for e in events] == [
        (room.channel, f"{room.title} #{n}") for n in range(3) for room in rooms
    ]
    assert {e["kind"] for e in events} == {"CREATED"}
    assert {e["node"]["__typename"] for e in events} == {"Message"}


async def test_my_subscriptions_lists_the_followed_channels(
    server: LiveServer, member: Any
) -> None:
    _dana, dana_token, _eve_token, rooms = member
    data = await data_of(server, "{ mySubscriptions { channel active } }", token=dana_token)
    assert data["mySubscriptions"] == sorted(
        ({"channel": r.channel, "active": True} for r in rooms), key=lambda s: s["channel"]
    )


async def test_unsubscribe_and_subscribe_on_one_server_change_a_stream_on_another(
    server: LiveServer, second_server: LiveServer, redis_client: redis.Redis, member: Any
) -> None:
    """Mutations through one process; the `events` stream on the other follows within a second."""
    _dana, dana_token, eve_token, rooms = member
    quiet, loud = rooms[0], rooms[1]
    async with await events_socket(second_server, dana_token, redis_client, rooms) as client:
        data = await data_of(server, UNSUBSCRIBE, {"c": quiet.channel}, dana_token)
        assert data["unsubscribe"] == {"channel": quiet.channel, "active": False}
        await to_thread(wait_numsub, redis_client, quiet.channel, 0, 1)
        await send_message(server, eve_token, quiet.pk, "not for dana's stream")
        await send_message(server, eve_token, loud.pk, "marker")
        assert (await next_event(client))["node"]["body"] == "marker"

        data = await data_of(server, SUBSCRIBE, {"c": quiet.channel}, dana_token)
        assert data["subscribe"] == {"channel": quiet.channel, "active": True}
        await to_thread(wait_numsub, redis_client, quiet.channel, 1, 1)
        await send_message(server, eve_token, quiet.pk, "back again")
        assert (await next_event(client))["node"]["body"] == "back again"


async def test_a_removed_participant_stops_receiving_at_once(
    server: LiveServer, redis_client: redis.Redis, member: Any
) -> None:
    """Removed while `events` is open: nothing published after the removal commits arrives."""
    dana, dana_token, _eve_token, rooms = member
    left, stays = rooms[0], rooms[1]

    @sync_to_async
    def remove_then_write() -> None:
        Correspondence.objects.get(pk=left.pk).participants.remove(dana)
        author = left.participants.first()
        for n in range(20):
            Message.objects.create(correspondence=left, author=author, body=f"after {n}")
        Message.objects.create(correspondence=stays, author=author, body="marker")

    async with await events_socket(server, dana_token, redis_client, rooms) as client:
        await remove_then_write()
        event = await next_event(client)
    assert (event["channel"], event["node"]["body"]) == (stays.channel, "marker")


async def test_a_denied_channel_is_an_error_and_never_reaches_anyone(
    server: LiveServer,
    redis_client: redis.Redis,
    member: Any,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """Ten outsiders try to follow a correspondence: errors; 30 messages later, none leaked."""
    _dana, _dana_token, eve_token, rooms = member
    target = rooms[0]

    @sync_to_async
    def outsiders() -> list[tuple[str, Any]]:
        result = []
        for _ in range(10):
            user = make_user("outsider")
            result.append((token_for(user), make_correspondence(user, title="own")))
        return result

    people = await outsiders()
    clients = []
    try:
        for token, own in people:
            response = await graphql(server, SUBSCRIBE, {"c": target.channel}, token)
            assert "You may not read channel" in response.json()["errors"][0]["message"]
            clients.append(await events_socket(server, token, redis_client, [own]))
        for n in range(30):
            await send_message(server, eve_token, target.pk, f"private {n}")
        for (_token, own), client in zip(people, clients, strict=True):
            await sync_to_async(
                lambda own=own: Message.objects.create(
                    correspondence=own, author=own.participants.first(), body="yours"
                )
            )()
            event = await next_event(client)
            assert (event["channel"], event["node"]["body"]) == (own.channel, "yours")
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_a_removed_participant_is_dropped_from_a_shared_group_at_once(
    server: LiveServer, redis_client: redis.Redis, member: Any
) -> None:
    """messageAdded shares one execution among participants; removal ends Dana's, not Eve's."""
    from ..helpers import MESSAGE_ADDED

    dana, dana_token, eve_token, rooms = member
    room = rooms[0]
    dana_socket = await connected(server, dana_token)
    eve_socket = await connected(server, eve_token)
    try:
        for client in (dana_socket, eve_socket):
            await client.subscribe("m", MESSAGE_ADDED, {"c": str(room.pk)})
        await to_thread(wait_numsub, redis_client, room.channel, 1)
        await send_message(server, eve_token, room.pk, "before")  # both are live
        for client in (dana_socket, eve_socket):  # the room's first message, for both
            assert (await client.next_payload("m"))["data"]["messageAdded"]["body"] == "before"

        @sync_to_async
        def remove_then_write() -> None:
            Correspondence.objects.get(pk=room.pk).participants.remove(dana)
            author = room.participants.first()
            for n in range(20):
                Message.objects.create(correspondence=room, author=author, body=f"after {n}")

        await remove_then_write()
        ended = await dana_socket.receive()
        assert ended["type"] == "next"
        assert "revoked" in ended["payload"]["errors"][0]["message"]
        assert await dana_socket.receive() == {"id": "m", "type": "complete"}
        bodies = [
            (await eve_socket.next_payload("m"))["data"]["messageAdded"]["body"] for _ in range(20)
        ]
        assert bodies == [f"after {n}" for n in range(20)]
    finally:
        await asyncio.gather(dana_socket.close(), eve_socket.close())


async def test_a_deactivated_user_is_disconnected(
    server: LiveServer, redis_client: redis.Redis, member: Any
) -> None:
    from gql_pubsub.core.control import control_channel

    dana, dana_token, _eve_token, _rooms = member

    async with await connected(server, dana_token) as client:
        await to_thread(wait_numsub, redis_client, control_channel(dana.pk), 1)

        @sync_to_async
        def deactivate() -> None:
            dana.is_active = False
            dana.save(update_fields=["is_active"])

        await deactivate()
        closed = await client.expect_close()
    assert closed.code == 4403
