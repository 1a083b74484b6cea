"""The settings that no other file's tests cover, each applied for real: CHANNEL_PREFIX and
its default, GRAPHQL_PATH, JWT_LIFETIME, a TOKEN_EXPIRY plug-in, ALLOWED_ORIGINS = ["*"],
KEEPALIVE_INTERVAL = 0, MAX_CONNECTIONS_PER_USER = 0, MAX_EVENT_SIZE through the settings, and
CONNECTION_INIT_TIMEOUT as a time. Every test runs against real Redis, a real uvicorn and real
WebSocket clients, and has a control showing that the setting, not a default, made the
difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import pytest
import redis
import redis.asyncio
import uvicorn
from django.conf import settings
from django.test import override_settings

from gql_pubsub import Event, EventKind, apublish, publish
from gql_pubsub.broker.backends.redis import split_message
from gql_pubsub.broker.process import configured_prefix, get_broker
from gql_pubsub.core.events import EventTooLarge
from gql_pubsub.testing import HandshakeRefused
from gql_pubsub.transports.websocket.protocol import CloseCode

from ..conftest import InProcessServer
from ..gqlws import GraphQLWS
from ..services import free_port, scaled

# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def configured(*, drop: tuple[str, ...] = (), **changes: Any) -> Iterator[None]:
    """The suite's GQL_PUBSUB with ``changes`` (and without the keys in ``drop``)."""
    config = {k: v for k, v in settings.GQL_PUBSUB.items() if k not in drop}
    with override_settings(GQL_PUBSUB={**config, **changes}):
        yield


def unique_channel(name: str) -> str:
    return f"promises-{name}-{uuid.uuid4().hex[:10]}"


def with_database(url: str, db: int) -> str:
    """The same Redis URL with another database number."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def expires_in_one_second(token: str) -> float:
    """A TOKEN_EXPIRY plug-in: whatever the token says, it expires one second from now."""
    return time.time() + 1


class Wire:
    """A raw redis-py pattern subscriber: which Redis channel names carry which events."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.client = redis.asyncio.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()
        self.channel = channel

    async def __aenter__(self) -> Wire:
        await self.pubsub.psubscribe(f"*{self.channel}")
        confirmation = await self.pubsub.get_message(timeout=scaled(5))
        assert confirmation is not None and confirmation["type"] == "psubscribe", confirmation
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.client.aclose()

    async def next(self, timeout: float = 5) -> tuple[str, Event]:
        """The next message on any Redis channel ending in ``channel``: its name and event."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(timeout)
        while (remaining := deadline - loop.time()) > 0:
            message = await self.pubsub.get_message(
                ignore_subscribe_messages=True, timeout=remaining
            )
            if message is not None and message["type"] == "pmessage":
                name = message["channel"].decode()
                return name, Event.decode(split_message(message["data"])[2], self.channel)
        raise TimeoutError(f"nothing was published on *{self.channel} within {timeout}s")


async def receive(subscriber: AsyncIterator[Event], timeout: float = 5) -> Event:
    return await asyncio.wait_for(anext(subscriber), scaled(timeout))


def custom(n: int) -> Event:
    return Event(kind=EventKind.CUSTOM, model=None, pk=None, data={"n": n})


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """Run ``app`` in a uvicorn on this test's event loop (as the app_server fixture does)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(int(scaled(200))):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        assert server.started, "in-process uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, scaled(20))


async def acked(url: str, token: str, **kwargs: Any) -> GraphQLWS:
    """A socket past connection_ack, authenticated with ``token``."""
    client = await GraphQLWS.connect(url, **kwargs)
    try:
        await client.init({"token": token})
    except BaseException:
        await client.close()
        raise
    return client


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Callable[[Any], str]) -> str:
    return token_for(make_user("promised"))


# -- CHANNEL_PREFIX ---------------------------------------------------------------------------


async def test_an_explicit_channel_prefix_names_the_redis_channels(redis_url: str) -> None:
    """CHANNEL_PREFIX = "myapp:": events go out on `myapp:<channel>` and are received there."""
    channel = unique_channel("prefix")
    with configured(CHANNEL_PREFIX="myapp:"):
        broker = get_broker()
        try:
            async with Wire(redis_url, channel) as wire, broker.subscribe(channel) as subscriber:
                client = redis.Redis.from_url(redis_url)
                try:  # the subscribing side uses the prefix too
                    subscribed = client.pubsub_numsub(f"myapp:{channel}")
                finally:
                    client.close()
                await apublish(channel, "custom", {"n": 1})
                name, on_the_wire = await wire.next()
                received = await receive(subscriber)
        finally:
            await broker.stop()
    assert subscribed == [(f"myapp:{channel}".encode(), 1)]
    assert name == f"myapp:{channel}"
    assert on_the_wire.data == {"n": 1}
    assert (received.kind, received.data, received.channel) == (EventKind.CUSTOM, {"n": 1}, channel)


async def test_the_default_channel_prefix_holds_the_database_number_of_the_broker_url(
    redis_url: str,
) -> None:
    """No CHANNEL_PREFIX: `gql_pubsub:<db>:`, so deployments on /3 and /5 never see each other."""
    channel = unique_channel("db")
    with configured(drop=("CHANNEL_PREFIX",), BROKER_URL=with_database(redis_url, 3)):
        staging = get_broker()
    with configured(drop=("CHANNEL_PREFIX",), BROKER_URL=with_database(redis_url, 5)):
        production = get_broker()
    assert staging is not production
    try:
        async with (
            Wire(redis_url, channel) as wire,
            staging.subscribe(channel) as staging_events,
            production.subscribe(channel) as production_events,
        ):
            await staging.publish([channel], custom(3))
            assert (await wire.next())[0] == f"gql_pubsub:3:{channel}"
            assert (await receive(staging_events)).data == {"n": 3}
            await production.publish([channel], custom(5))  # after staging's, on the same name
            assert (await wire.next())[0] == f"gql_pubsub:5:{channel}"
            # production's first event is its own: staging's never reached it
            assert (await receive(production_events)).data == {"n": 5}
    finally:
        await staging.stop()
        await production.stop()


# -- GRAPHQL_PATH -----------------------------------------------------------------------------


async def test_the_socket_is_served_on_graphql_path_and_refused_elsewhere(token: str) -> None:
    """GRAPHQL_PATH = "/custom/ws/": graphql-transport-ws there; the old path gets HTTP 403."""
    from gql_pubsub.asgi import get_asgi_application

    from ..fanout_app import schema

    with configured(GRAPHQL_PATH="/custom/ws/"):
        app = get_asgi_application(schema)
        async with serving(app) as port:
            async with await acked(f"ws://127.0.0.1:{port}/custom/ws/", token) as client:
                await client.subscribe("q", "{ ok }")
                assert await client.next_payload("q") == {"data": {"ok": True}}
                assert await client.receive() == {"id": "q", "type": "complete"}
            with pytest.raises(HandshakeRefused) as refused:
                await GraphQLWS.connect(f"ws://127.0.0.1:{port}/graphql/")
    assert refused.value.status == 403


# -- JWT_LIFETIME -----------------------------------------------------------------------------


@pytest.mark.parametrize(("lifetime", "expected"), [(120, 120), (None, 3600)])
def test_create_jwt_makes_tokens_that_live_jwt_lifetime_seconds(
    make_user: Callable[..., Any], lifetime: int | None, expected: int
) -> None:
    """JWT_LIFETIME = 120: exp - iat is 120; left out, the default is an hour (3600)."""
    from gql_pubsub.auth.tokens import create_jwt, jwt_user

    user = make_user("lifetime")
    changes = {} if lifetime is None else {"JWT_LIFETIME": lifetime}
    with configured(drop=("JWT_LIFETIME",), **changes):
        token = create_jwt(user)
        assert jwt_user(token) == user  # a valid token of that user
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == expected
    assert abs(claims["iat"] - time.time()) < scaled(5)


# -- TOKEN_EXPIRY -----------------------------------------------------------------------------


async def test_a_token_expiry_plugin_closes_the_socket_when_it_says(
    app_server: InProcessServer, token: str
) -> None:
    """TOKEN_EXPIRY → a function saying "in 1 s": 4403 about 1 s after the ack (JWT: 1 h)."""
    loop = asyncio.get_running_loop()
    with configured(TOKEN_EXPIRY=f"{__name__}.{expires_in_one_second.__name__}"):
        init_sent = loop.time()
        plugged = await acked(app_server.ws_url, token)
        plugged_ack = loop.time()
    default = await acked(app_server.ws_url, token)  # the default expiry: the JWT's exp
    default_ack = loop.time()
    try:
        closed = await plugged.expect_close(timeout=5)
        closed_at = loop.time()
        # the control lives on past the plugged socket's second, and still answers
        await default.expect_silence(max(0.0, default_ack + 1.5 - loop.time()))
        await default.send({"type": "ping"})
        assert await default.receive() == {"type": "pong"}
    finally:
        await plugged.close()
        await default.close()
    assert closed.code == CloseCode.FORBIDDEN
    assert "expired" in closed.reason.lower()
    assert closed_at - init_sent >= 0.9
    assert closed_at - plugged_ack <= 1 + scaled(0.5)


# -- ALLOWED_ORIGINS = ["*"] ------------------------------------------------------------------


async def test_allowed_origins_star_accepts_a_handshake_from_any_origin(
    app_server: InProcessServer, token: str
) -> None:
    """ALLOWED_ORIGINS = ["*"]: a browser of https://anything.example connects; [] refuses it."""
    origin = {"Origin": "https://anything.example"}
    with configured(ALLOWED_ORIGINS=["*"]):
        async with await acked(app_server.ws_url, token, additional_headers=origin) as client:
            await client.send({"type": "ping"})
            assert await client.receive() == {"type": "pong"}
    with configured(ALLOWED_ORIGINS=[]), pytest.raises(HandshakeRefused) as refused:
        await GraphQLWS.connect(app_server.ws_url, additional_headers=origin)
    assert refused.value.status == 403


@pytest.fixture
def session_cookie(make_user: Callable[..., Any]) -> str:
    """The Cookie header of a browser logged in to the site (a real session row)."""
    from django.test import Client

    browser = Client()
    browser.force_login(make_user("browser"))
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={browser.cookies[name].value}"


async def test_allowed_origins_star_lets_any_origins_session_cookie_authenticate(
    app_server: InProcessServer, session_cookie: str
) -> None:
    """ALLOWED_ORIGINS = ["*"]: no token, the session cookie of another origin gets the ack."""
    headers = {"Origin": "https://anything.example", "Cookie": session_cookie}
    with configured(ALLOWED_ORIGINS=["*"]):
        async with await GraphQLWS.connect(app_server.ws_url, additional_headers=headers) as c:
            await c.init({})  # no token: the session is the only credential
        # control: the same socket without the cookie has no credential at all
        no_cookie = {"Origin": "https://anything.example"}
        async with await GraphQLWS.connect(app_server.ws_url, additional_headers=no_cookie) as c:
            await c.send({"type": "connection_init", "payload": {}})
            closed = await c.expect_close()
    assert closed.code == CloseCode.FORBIDDEN
    assert "no logged-in session" in closed.reason


# -- KEEPALIVE_INTERVAL = 0 -------------------------------------------------------------------


async def test_keepalive_interval_zero_sends_no_pings(
    app_server: InProcessServer, token: str
) -> None:
    """KEEPALIVE_INTERVAL = 0: no `ping` in 1.5 s after the ack; with 0.3 one comes in ~0.3 s."""
    with configured(KEEPALIVE_INTERVAL=0):
        async with await acked(app_server.ws_url, token) as quiet:
            await quiet.expect_silence(1.5, pings=False)
            await quiet.send({"type": "ping"})  # still open, and answering
            assert await quiet.receive() == {"type": "pong"}
    loop = asyncio.get_running_loop()
    with configured(KEEPALIVE_INTERVAL=0.3):
        async with await acked(app_server.ws_url, token) as pinged:
            acked_at = loop.time()
            assert await pinged.receive(timeout=2) == {"type": "ping"}
            assert loop.time() - acked_at <= 0.3 + scaled(0.5)


# -- MAX_CONNECTIONS_PER_USER = 0 -------------------------------------------------------------


@pytest.fixture
def two_tokens(make_user: Callable[..., Any], token_for: Callable[[Any], str]) -> tuple[str, str]:
    """Tokens of two users: per-user counts of one test phase cannot leak into the other."""
    return token_for(make_user("unlimited")), token_for(make_user("limited"))


async def test_max_connections_per_user_zero_means_no_limit(
    app_server: InProcessServer, two_tokens: tuple[str, str]
) -> None:
    """MAX_CONNECTIONS_PER_USER = 0: six sockets of one user all get their ack; with 2, no third."""
    unlimited, limited = two_tokens
    with configured(MAX_CONNECTIONS_PER_USER=0):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(6):
                await stack.enter_async_context(await acked(app_server.ws_url, unlimited))
    with configured(MAX_CONNECTIONS_PER_USER=2):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                await stack.enter_async_context(await acked(app_server.ws_url, limited))
            third = await stack.enter_async_context(await GraphQLWS.connect(app_server.ws_url))
            await third.send({"type": "connection_init", "payload": {"token": limited}})
            closed = await third.expect_close()
    assert closed.code == CloseCode.FORBIDDEN
    assert "already has 2 connections" in closed.reason


# -- MAX_EVENT_SIZE ---------------------------------------------------------------------------


def test_publish_refuses_an_event_over_the_max_event_size_setting(
    redis_client: redis.Redis,
) -> None:
    """MAX_EVENT_SIZE = 200: publish() of a 500-byte event raises EventTooLarge, sends nothing."""
    channel = unique_channel("size")
    pubsub = redis_client.pubsub()  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(configured_prefix() + channel)
        confirmation = pubsub.get_message(timeout=scaled(5))
        assert confirmation is not None and confirmation["type"] == "subscribe", confirmation

        def next_published() -> Any:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=scaled(5))
            assert message is not None, "nothing was published"
            return Event.decode(split_message(message["data"])[2], channel).data

        with configured(MAX_EVENT_SIZE=200):
            assert get_broker().max_event_size == 200  # the broker was rebuilt with it
            with pytest.raises(EventTooLarge, match=r"over GQL_PUBSUB\['MAX_EVENT_SIZE'\] \(200\)"):
                publish(channel, "custom", {"x": "y" * 500})
            publish(channel, "custom", {"x": "y" * 50})  # under the limit: goes out
            assert next_published() == {"x": "y" * 50}  # the first one: the large was not sent
        publish(channel, "custom", {"x": "y" * 500})  # the default limit (1 MiB) lets it through
        assert next_published() == {"x": "y" * 500}
    finally:
        pubsub.close()


# -- CONNECTION_INIT_TIMEOUT ------------------------------------------------------------------


async def test_a_silent_socket_is_closed_after_connection_init_timeout(
    app_server: InProcessServer,
) -> None:
    """CONNECTION_INIT_TIMEOUT = 0.5: 4408 half a second after the socket opened, not 3 s."""
    loop = asyncio.get_running_loop()
    with configured(CONNECTION_INIT_TIMEOUT=0.5):
        started = loop.time()
        async with await GraphQLWS.connect(app_server.ws_url) as client:
            opened = loop.time()
            closed = await client.expect_close(timeout=5)
            closed_at = loop.time()
    assert closed.code == CloseCode.CONNECTION_INITIALISATION_TIMEOUT
    assert closed_at - started >= 0.45  # the server's timer starts after the handshake began
    assert closed_at - opened <= 0.5 + scaled(0.5)


async def test_a_longer_connection_init_timeout_keeps_a_silent_socket_open(
    app_server: InProcessServer, token: str
) -> None:
    """CONNECTION_INIT_TIMEOUT = 2: still open after 1 s of silence, and connection_init works."""
    with configured(CONNECTION_INIT_TIMEOUT=2.0):
        async with await GraphQLWS.connect(app_server.ws_url) as client:
            await client.expect_silence(1.0)
            await client.init({"token": token})
