"""Shared steps of the end-to-end tests: GraphQL over HTTP, authenticated sockets, readiness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import redis
import redis.client
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from gql_pubsub.auth.tokens import TokenRejected
from gql_pubsub.broker.backends.redis import split_message
from gql_pubsub.server.hooks import Hooks

from .conftest import wait_numsub
from .gqlws import GraphQLWS
from .services import LiveServer, scaled, to_thread

ITEMS = "subscription ($c: String!) { items(channel: $c) { n } }"
"""The test schema's (``fanout_app``) subscription to a channel's items."""
HELD = "subscription ($c: String!) { heldItems(channel: $c) { n } }"
"""The same, its resolver held until the test lets it go on (``fanout_app.held``)."""

MESSAGE_FIELDS = "id body createdAt author { username } correspondence { id }"
MESSAGE_ADDED = f"""
subscription ($c: ID!) {{ messageAdded(correspondenceId: $c) {{ {MESSAGE_FIELDS} }} }}
"""
CORRESPONDENCE_EVENTS = f"""
subscription ($c: ID!) {{
  correspondenceEvents(correspondenceId: $c) {{ kind message {{ {MESSAGE_FIELDS} }} }}
}}
"""
SEND_MESSAGE = f"""
mutation ($c: ID!, $b: String!) {{
  sendMessage(correspondenceId: $c, body: $b) {{ {MESSAGE_FIELDS} }}
}}
"""


async def graphql(
    server: LiveServer,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> httpx.Response:
    """POST one GraphQL operation to the live server."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as client:
        return await client.post(
            "/graphql/", json={"query": query, "variables": variables or {}}, headers=headers
        )


async def data_of(
    server: LiveServer,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """The ``data`` of a successful operation (fails the test on errors)."""
    response = await graphql(server, query, variables, token)
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def send_message(
    server: LiveServer, token: str, correspondence_id: Any, body: str
) -> dict[str, Any]:
    data = await data_of(server, SEND_MESSAGE, {"c": str(correspondence_id), "b": body}, token)
    message: dict[str, Any] = data["sendMessage"]
    return message


EDIT_MESSAGE = "mutation ($id: ID!, $b: String!) { editMessage(id: $id, body: $b) { id body } }"
DELETE_MESSAGE = "mutation ($id: ID!) { deleteMessage(id: $id) }"


async def edit_message(
    server: LiveServer, token: str, message_id: str, body: str
) -> dict[str, Any]:
    data = await data_of(server, EDIT_MESSAGE, {"id": message_id, "b": body}, token)
    message: dict[str, Any] = data["editMessage"]
    return message


async def connected(server: LiveServer, token: str, *, answer_pings: bool = False) -> GraphQLWS:
    """A socket past connection_ack, authenticated with ``token`` (``answer_pings``: one that
    reads all the time and answers keep-alive pings, as real clients do)."""
    client = await GraphQLWS.connect(server.ws_url, answer_pings=answer_pings)
    await client.init({"token": token})
    return client


async def subscribed(
    client: GraphQLWS, redis_client: redis.Redis, op_id: str, query: str, correspondence: Any
) -> None:
    """Subscribe and wait until the server's Redis subscription to the channel is live."""
    await client.subscribe(op_id, query, {"c": str(correspondence.pk)})
    await to_thread(wait_numsub, redis_client, correspondence.channel, 1)


def server_connections(redis_client: redis.Redis, pid: int) -> list[dict[str, Any]]:
    """The Redis connections a server process holds (named gql_pubsub-<pid>-…)."""
    prefix = f"gql_pubsub-{pid}-"
    return [c for c in redis_client.client_list() if str(c.get("name", "")).startswith(prefix)]


async def sockets_in_rooms(
    server: LiveServer, writer_token: str, reader_token: str, rooms: list[Any], per_room: int
) -> list[GraphQLWS]:
    """``per_room`` sockets of the reader subscribed to messageAdded in each room (socket n in
    room n % len(rooms)), each shown live by a "ready" message (they answer keep-alive pings:
    a loaded machine can stretch a test past the keep-alive deadline)."""
    sockets = [
        await connected(server, reader_token, answer_pings=True)
        for _ in range(len(rooms) * per_room)
    ]
    try:
        for n, client in enumerate(sockets):
            await client.subscribe("m", MESSAGE_ADDED, {"c": str(rooms[n % len(rooms)].pk)})
        for room in rooms:
            await send_message(server, writer_token, room.pk, "ready")
        for client in sockets:
            payload = await client.next_payload("m", timeout=15)
            assert payload["data"]["messageAdded"]["body"] == "ready"
    except BaseException:
        await asyncio.gather(*(client.close() for client in sockets))
        raise
    return sockets


async def paced_writes(
    server: LiveServer,
    writer_token: str,
    rooms: list[Any],
    *,
    rate: int,
    seconds: int,
    at: dict[int, Callable[[], object]],
) -> list[list[str]]:
    """sendMessage ``rate`` times a second for ``seconds`` into the rooms in turn, calling
    ``at[k]()`` before the k-th; every mutation must succeed. The bodies sent, by room."""
    bodies: list[list[str]] = [[] for _ in rooms]
    answers = []
    start = time.monotonic()
    for k in range(rate * seconds):
        if k in at:
            at[k]()
        body = f"message {k}"
        bodies[k % len(rooms)].append(body)
        room = rooms[k % len(rooms)]
        answers.append(
            await graphql(server, SEND_MESSAGE, {"c": str(room.pk), "b": body}, writer_token)
        )
        await asyncio.sleep(max(0.0, start + (k + 1) / rate - time.monotonic()))
    assert all(a.status_code == 200 and "errors" not in a.json() for a in answers)
    return bodies


async def each_gets_its_room(
    server: LiveServer, sockets: list[GraphQLWS], bodies: list[list[str]], *, timeout: float
) -> None:
    """Every socket receives every message of its room, once, in order."""

    async def all_of_its_room(n: int, client: GraphQLWS) -> list[str]:
        expected = bodies[n % len(bodies)]
        got: list[str] = []
        while len(got) < len(expected):
            payload = await client.next_payload("m", timeout=timeout)
            assert payload.get("data") is not None, (got, payload, server.log.read_text())
            got.append(payload["data"]["messageAdded"]["body"])
        return got

    received = await asyncio.gather(*(all_of_its_room(n, c) for n, c in enumerate(sockets)))
    for n, got in enumerate(received):
        assert got == bodies[n % len(bodies)], f"socket {n}"  # each once, in order


class RefusesUsersNamed(Hooks):
    """The default rules, but a user whose name starts with ``prefix`` is refused: ``on_connect``
    raises ``TokenRejected(reason)``."""

    def __init__(self, prefix: str, reason: str) -> None:
        self.prefix = prefix
        self.reason = reason

    async def on_connect(
        self, scope: Any, payload: dict[str, Any], token: str | None
    ) -> AbstractBaseUser | AnonymousUser:
        user = await super().on_connect(scope, payload, token)
        if user.get_username().startswith(self.prefix):
            raise TokenRejected(self.reason)
        return user


def published_data(listener: redis.client.PubSub, until: int, within: float = 5) -> list[Any]:
    """The data of the events a Redis listener receives, until ``until`` of them have come or
    ``within`` seconds (scaled) have passed: ask for one more than expected to catch a repeat."""
    received: list[Any] = []
    deadline = time.monotonic() + scaled(within)
    while len(received) < until and time.monotonic() < deadline:
        message = listener.get_message(timeout=0.2)  # bounded; ends on the deadline
        if message and message["type"] == "message":
            received.append(orjson.loads(split_message(message["data"])[2])["data"])
    return received
