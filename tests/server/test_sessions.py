"""One set of session rules for every transport: a subscriber over WebSocket, over Apollo's
multipart HTTP and over graphql-sse is authenticated by the same ``on_connect``, ended by its
token's expiry, a revocation and a deactivation alike, and counted under one per-user limit
across all three. Each rule is one test, run over each transport against a real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from django.test import override_settings

from gql_pubsub import create_jwt
from gql_pubsub.asgi import GraphQLApplication, get_asgi_application
from gql_pubsub.core.control import control_channel

from ..conftest import InProcessServer, serve_in_process
from ..gqlws import Closed, GraphQLWS
from ..helpers import MESSAGE_ADDED, RefusesUsersNamed
from ..services import scaled, to_thread, until

TRANSPORTS = ["websocket", "multipart", "sse"]
ACCEPT = {
    "multipart": 'multipart/mixed;boundary="graphql";subscriptionSpec="1.0",application/json',
    "sse": "text/event-stream",
}


class Refused(Exception):
    """The server refused the session before it started (a close, or an HTTP error status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Subscriber:
    """One subscription over one transport, read the same way whatever the transport."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.results: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.ended_with: str | None = None
        """What the server said when it ended the subscription (a close's reason, or the
        error of its last result), once it did."""
        self._stack = contextlib.AsyncExitStack()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, transport: str, server: InProcessServer, token: str | None, room: Any
    ) -> AsyncIterator[Subscriber]:
        """Subscribe to ``room``'s messages; raises ``Refused`` if the server refuses."""
        subscriber = cls(transport)
        async with subscriber._stack:
            if transport == "websocket":
                await subscriber._open_websocket(server, token, room)
            else:
                await subscriber._open_http(server, token, room)
            yield subscriber

    async def _open_websocket(self, server: InProcessServer, token: str | None, room: Any) -> None:
        client = await GraphQLWS.connect(server.ws_url)
        self._stack.push_async_callback(client.close)
        try:
            await client.init({"token": token} if token else {})
        except Closed as closed:
            raise Refused(closed.code or 0, closed.reason) from None
        except AssertionError as error:  # a close frame read as the ack's absence
            raise Refused(0, str(error)) from None
        await client.subscribe("1", MESSAGE_ADDED, {"c": str(room.pk)})
        self._reading(self._read_websocket(client))

    async def _read_websocket(self, client: GraphQLWS) -> None:
        try:
            while True:
                message = await client.receive(3600, skip_pings=True)
                if message["type"] == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        self.ended_with = payload["errors"][0]["message"]
                    else:
                        await self.results.put(payload)
                elif message["type"] in ("complete", "error"):
                    if message["type"] == "error":
                        self.ended_with = message["payload"][0]["message"]
                    return
        except Closed as closed:
            self.ended_with = closed.reason

    async def _open_http(self, server: InProcessServer, token: str | None, room: Any) -> None:
        client = await self._stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=scaled(20))
        )
        headers = {"Accept": ACCEPT[self.transport]}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = {"query": MESSAGE_ADDED, "variables": {"c": str(room.pk)}}
        response = await self._stack.enter_async_context(
            client.stream("POST", "/graphql/", json=body, headers=headers)
        )
        if response.status_code != 200:
            await response.aread()
            raise Refused(response.status_code, response.json()["errors"][0]["message"])
        self._reading(self._read_http(response))

    async def _read_http(self, response: httpx.Response) -> None:
        async for payload in _payloads(self.transport, response):
            if payload.get("errors"):
                self.ended_with = payload["errors"][0]["message"]
            else:
                await self.results.put(payload)

    def _reading(self, reader: Any) -> None:
        async def read() -> None:
            try:
                await reader
            finally:
                await self.results.put(None)

        task = asyncio.create_task(read())
        self._stack.callback(task.cancel)

    async def next(self) -> dict[str, Any]:
        """The next result's data."""
        result = await asyncio.wait_for(self.results.get(), scaled(10))
        assert result is not None, f"ended instead: {self.ended_with!r}"
        data: dict[str, Any] = result["data"]
        return data

    async def ended(self) -> str:
        """Wait until the server ends the subscription; what it said."""
        result = await asyncio.wait_for(self.results.get(), scaled(10))
        assert result is None, f"a result instead of the end: {result}"
        assert self.ended_with is not None
        return self.ended_with


async def _payloads(transport: str, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The results of a multipart or graphql-sse response body, as they arrive."""
    if transport == "sse":
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line.strip() != "data:":
                yield json.loads(line.removeprefix("data: "))
        return
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        *parts, buffer = buffer.split("--graphql")
        for part in parts:
            _, _, body = part.partition("\r\n\r\n")
            if body.strip() and body.strip() != "{}":  # {}: a heartbeat
                yield json.loads(body)["payload"]


@pytest.fixture
async def served() -> AsyncIterator[InProcessServer]:
    """The example's schema and URLs on a real uvicorn, on this test's loop, with the hooks."""
    application = get_asgi_application(
        "example.schema.schema", hooks=RefusesUsersNamed("banned", "banned from here")
    )
    async with serve_in_process(application) as server:
        yield server


@pytest.fixture
def room(
    make_user: Callable[..., Any], make_correspondence: Callable[..., Any], token_for: Any
) -> Any:
    """Dana's correspondence with Eve (``room.dana``, ``room.eve``, their tokens)."""
    dana, eve = make_user("dana"), make_user("eve")
    correspondence = make_correspondence(dana, eve)
    correspondence.dana, correspondence.eve = dana, eve
    correspondence.dana_token, correspondence.eve_token = token_for(dana), token_for(eve)
    return correspondence


async def say(room: Any, body: str) -> None:
    from example.chat.models import Message

    await to_thread(lambda: Message.objects.create(correspondence=room, author=room.eve, body=body))


async def live(server: InProcessServer, room: Any) -> None:
    """Wait until Dana's session is open (counted, her access watched) and the room's channel
    is subscribed: a message sent now reaches her subscriber."""
    from gql_pubsub.broker.process import get_broker

    application: GraphQLApplication = server.app
    broker = get_broker()
    await until(
        lambda: (
            bool(application.hub.sessions_per_user.get(room.dana.pk))
            and broker.is_live(control_channel(room.dana.pk))
            and broker.is_live(room.channel)
        ),
        "Dana's subscriber is live",
    )


async def gone(server: InProcessServer, room: Any) -> None:
    """Wait until Dana has no session left and nothing reads the room's channel."""
    from gql_pubsub.broker.process import get_broker

    application: GraphQLApplication = server.app
    broker = get_broker()
    await until(
        lambda: (
            not application.hub.sessions_per_user.get(room.dana.pk)
            and broker.subscriber_count(room.channel) == 0
        ),
        "Dana's subscribers are gone",
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_subscriber_without_a_user_is_refused_and_told_to_send_a_token(
    served: InProcessServer, room: Any, transport: str
) -> None:
    with pytest.raises(Refused) as refused:
        async with Subscriber.open(transport, served, None, room):
            pass
    assert refused.value.status in (4403, 401)
    assert "token" in refused.value.message.lower()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_on_connect_decides_who_may_subscribe_over_every_transport(
    served: InProcessServer, room: Any, make_user: Any, token_for: Any, transport: str
) -> None:
    banned = await to_thread(make_user, "banned")
    with pytest.raises(Refused) as refused:
        async with Subscriber.open(transport, served, await to_thread(token_for, banned), room):
            pass
    assert refused.value.status in (4403, 403)
    assert refused.value.message == "Forbidden: banned from here"
    async with Subscriber.open(transport, served, room.dana_token, room) as subscriber:
        await live(served, room)
        await say(room, "hello")
        assert (await subscriber.next())["messageAdded"]["body"] == "hello"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_subscription_ends_when_its_token_expires(
    served: InProcessServer, room: Any, transport: str
) -> None:
    token = await to_thread(create_jwt, room.dana, lifetime=2)
    async with Subscriber.open(transport, served, token, room) as subscriber:
        await live(served, room)
        await say(room, "before")
        assert (await subscriber.next())["messageAdded"]["body"] == "before"
        assert await subscriber.ended() == "Token expired: reconnect with a fresh token"
    await gone(served, room)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_revocation_ends_the_subscription_before_the_next_message(
    served: InProcessServer, room: Any, transport: str
) -> None:
    async with Subscriber.open(transport, served, room.dana_token, room) as subscriber:
        await live(served, room)
        await to_thread(room.participants.remove, room.dana)
        await say(room, "after")
        assert await subscriber.ended() == f"Access to {room.channel!r} was revoked."


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_deactivated_user_loses_every_subscription(
    served: InProcessServer, room: Any, transport: str
) -> None:
    async with Subscriber.open(transport, served, room.dana_token, room) as subscriber:
        await live(served, room)

        def deactivate() -> None:
            room.dana.is_active = False
            room.dana.save(update_fields=["is_active"])

        await to_thread(deactivate)
        await say(room, "after")
        assert await subscriber.ended() == "Forbidden: user deactivated"


@pytest.mark.parametrize("second", TRANSPORTS)
@pytest.mark.parametrize("first", ["websocket", "sse"])
async def test_the_per_user_limit_counts_sockets_and_http_streams_together(
    served: InProcessServer, room: Any, first: str, second: str
) -> None:
    """MAX_CONNECTIONS_PER_USER = 1: a user with a subscriber on one transport is refused a
    second on any, with the socket's reason; once the first ends, the second is served."""
    limit = "Forbidden: this user already has 1 connections here"
    with override_settings(GQL_PUBSUB={"MAX_CONNECTIONS_PER_USER": 1}):
        async with Subscriber.open(first, served, room.dana_token, room):
            await live(served, room)
            if second == "websocket":  # closed at once, before its ack
                with pytest.raises(Refused) as refused:
                    async with Subscriber.open(second, served, room.dana_token, room):
                        pass
                assert (refused.value.status, refused.value.message) == (4403, limit)
            else:  # the response has started: the stream's one result says it, then it ends
                async with Subscriber.open(second, served, room.dana_token, room) as extra:
                    assert await extra.ended() == limit
        await gone(served, room)
        async with Subscriber.open(second, served, room.dana_token, room) as subscriber:
            await live(served, room)
            await say(room, "served")
            assert (await subscriber.next())["messageAdded"]["body"] == "served"
