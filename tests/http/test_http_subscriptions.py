"""Subscriptions over HTTP, on the example's live server, with the real clients (Node): Apollo
Client's HttpLink (multipart subscriptions) and the graphql-sse client. They receive what
another user sends; a client that leaves frees the server's Redis subscription; the same
access checks as over the socket (a token, the resolver's check, a revocation mid-stream)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import IO, Any

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async

from example.chat.models import Correspondence

from ..conftest import NODE_DIR, wait_numsub
from ..helpers import MESSAGE_ADDED, send_message
from ..services import LiveServer, scaled, to_thread

SSE = {"Accept": "text/event-stream"}
MULTIPART = {"Accept": 'multipart/mixed;boundary="graphql";subscriptionSpec="1.0",application/json'}


@pytest.fixture
def pair(make_user: Any, make_correspondence: Any, token_for: Any) -> tuple[Any, str, str, Any]:
    """Dana and Eve in one correspondence: Dana, her token, Eve's token, the correspondence."""
    dana, eve = make_user("dana"), make_user("eve")
    return dana, token_for(dana), token_for(eve), make_correspondence(dana, eve)


def read_line(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    assert line, "the Node client ended early"
    parsed: dict[str, Any] = json.loads(line)
    return parsed


@pytest.mark.parametrize("client", ["apollo", "sse"])
async def test_a_real_http_client_receives_what_another_user_sends_then_frees_everything(
    node: str,
    server: LiveServer,
    redis_client: redis.Redis,
    pair: tuple[Any, str, str, Any],
    client: str,
) -> None:
    _, dana_token, eve_token, room = pair
    process = await to_thread(
        subprocess.Popen,
        [
            node, "http_subscribe.mjs", client, f"{server.http_url}/graphql/", dana_token,
            MESSAGE_ADDED, json.dumps({"c": str(room.pk)}), "3",
        ],
        cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        await to_thread(wait_numsub, redis_client, room.channel, 1)
        for n in range(3):
            await send_message(server, eve_token, room.pk, f"over HTTP #{n}")
        lines = [await to_thread(read_line, process.stdout) for _ in range(4)]
    finally:
        await asyncio.wait_for(to_thread(process.wait), scaled(30))
        process.stdout.close()
    bodies = [line["result"]["data"]["messageAdded"]["body"] for line in lines[:3]]
    assert bodies == [f"over HTTP #{n}" for n in range(3)], lines
    assert lines[3] == {"done": "count"}
    # The client closed its request: the group and the Redis subscription are gone.
    await to_thread(wait_numsub, redis_client, room.channel, 0)


async def test_an_http_subscription_without_a_user_is_refused_with_401(
    server: LiveServer, pair: tuple[Any, str, str, Any]
) -> None:
    room = pair[3]
    body = {"query": MESSAGE_ADDED, "variables": {"c": str(room.pk)}}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(10)) as client:
        response = await client.post("/graphql/", json=body, headers=SSE)
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"].startswith("Unauthorized: subscriptions")


async def events(response: httpx.Response) -> list[tuple[str, str]]:
    """The (event, data) pairs of a graphql-sse stream, until it ends."""
    found, event = [], ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") or line == "data:":
            found.append((event, line.removeprefix("data:").strip()))
    return found


async def test_a_participant_removed_mid_stream_gets_the_revocation_and_nothing_after(
    server: LiveServer, redis_client: redis.Redis, pair: tuple[Any, str, str, Any]
) -> None:
    dana, dana_token, eve_token, room = pair
    body = {"query": MESSAGE_ADDED, "variables": {"c": str(room.pk)}}
    headers = {**SSE, "Authorization": f"Bearer {dana_token}"}

    @sync_to_async
    def remove_then_write() -> None:
        Correspondence.objects.get(pk=room.pk).participants.remove(dana)

    async with (
        httpx.AsyncClient(base_url=server.http_url, timeout=scaled(20)) as client,
        client.stream("POST", "/graphql/", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reading = asyncio.create_task(events(response))
        await to_thread(wait_numsub, redis_client, room.channel, 1)
        await send_message(server, eve_token, room.pk, "before")
        await remove_then_write()
        await send_message(server, eve_token, room.pk, "after")
        received = await asyncio.wait_for(reading, scaled(20))
    assert [event for event, _ in received] == ["next", "next", "complete"], received
    assert json.loads(received[0][1])["data"]["messageAdded"]["body"] == "before"
    assert json.loads(received[1][1]) == {
        "errors": [{"message": f"Access to {room.channel!r} was revoked."}]
    }


async def test_a_multipart_subscription_to_a_correspondence_of_others_is_an_error_part(
    server: LiveServer, make_user: Any, token_for: Any, pair: tuple[Any, str, str, Any]
) -> None:
    room = pair[3]
    stranger = await to_thread(make_user, "stranger")
    body = {"query": MESSAGE_ADDED, "variables": {"c": str(room.pk)}}
    headers = {**MULTIPART, "Authorization": f"Bearer {token_for(stranger)}"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(20)) as client:
        response = await client.post("/graphql/", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/mixed")
    parts = [part for part in response.text.split("--graphql") if part.strip() not in ("", "--")]
    payloads = [json.loads(part.split("\r\n\r\n", 1)[1]) for part in parts]
    assert len(payloads) == 1
    assert payloads[0]["payload"]["errors"][0]["message"] == (
        f"Correspondence {room.pk} does not exist or you are not a participant."
    )
    assert payloads[0]["payload"].get("data") is None
    assert response.text.endswith("\r\n--graphql--\r\n")


async def test_an_http_stream_ends_when_its_token_expires(
    server: LiveServer, pair: tuple[Any, str, str, Any]
) -> None:
    from gql_pubsub import create_jwt

    dana, _, _, room = pair
    token = await to_thread(create_jwt, dana, lifetime=2)
    body = {"query": MESSAGE_ADDED, "variables": {"c": str(room.pk)}}
    headers = {**SSE, "Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=server.http_url, timeout=scaled(20)) as client,
        client.stream("POST", "/graphql/", json=body, headers=headers) as response,
    ):
        received = await asyncio.wait_for(events(response), scaled(10))
    assert received == [
        ("next", '{"errors":[{"message":"Token expired: reconnect with a fresh token"}]}'),
        ("complete", ""),
    ]


async def test_a_websocket_and_an_http_subscriber_share_one_group_and_one_execution(
    pair: tuple[Any, str, str, Any], redis_client: redis.Redis
) -> None:
    """The example served in-process: its HTTP view and its socket share the schema's groups."""
    from gql_pubsub import get_asgi_application

    from ..conftest import serve_in_process
    from ..gqlws import GraphQLWS

    _, dana_token, eve_token, room = pair
    variables = {"c": str(room.pk)}
    application = get_asgi_application("example.schema.schema")
    async with serve_in_process(application) as server:
        url = f"http://127.0.0.1:{server.port}"
        socket = await GraphQLWS.connect(server.ws_url)
        await socket.init({"token": dana_token})
        await socket.subscribe("1", MESSAGE_ADDED, variables)
        headers = {**SSE, "Authorization": f"Bearer {eve_token}"}
        body = {"query": MESSAGE_ADDED, "variables": variables}
        async with (
            httpx.AsyncClient(base_url=url, timeout=scaled(20)) as client,
            client.stream("POST", "/graphql/", json=body, headers=headers) as response,
        ):
            lines = response.aiter_lines()
            stats = application.websocket.stats()
            for _ in range(int(scaled(100))):
                stats = application.websocket.stats()
                if stats.group_members == 2:
                    break
                await asyncio.sleep(0.05)
            assert (stats.groups, stats.group_members) == (1, 2)
            await to_thread(wait_numsub, redis_client, room.channel, 1)
            await to_thread(create_message, room, "shared by both")
            by_socket = await socket.next_payload("1")
            data = ""
            async for line in lines:
                if line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    break
        await socket.close()
        # Both gone (the stream's request closed, the socket too): no group, no operation left.
        for _ in range(int(scaled(100))):
            left = application.websocket.stats()
            if (left.groups, left.group_members, left.operations) == (0, 0, 0):
                break
            await asyncio.sleep(0.05)
        assert (left.groups, left.group_members, left.operations) == (0, 0, 0)
        await to_thread(wait_numsub, redis_client, room.channel, 0)
    assert by_socket["data"]["messageAdded"]["body"] == "shared by both"
    assert json.loads(data) == by_socket  # the same encoding, once for both


def create_message(room: Any, body: str) -> None:
    from example.chat.models import Message

    Message.objects.create(correspondence=room, author=room.participants.first(), body=body)
