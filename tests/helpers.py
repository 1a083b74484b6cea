"""Shared steps of the end-to-end tests: GraphQL over HTTP, authenticated sockets, readiness."""

from __future__ import annotations

from typing import Any

import httpx
import redis

from .conftest import wait_numsub
from .gqlws import GraphQLWS
from .services import LiveServer, scaled, to_thread

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
