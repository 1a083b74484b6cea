"""Sockets held for hours: server keepalive, token expiry, and which origins may connect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from gql_pubsub.testing import HandshakeRefused
from gql_pubsub.transports.websocket.protocol import CloseCode

from ..conftest import InProcessServer
from ..gqlws import GraphQLWS
from ..services import LiveServer, scaled


@pytest.fixture
def user_token(make_user: Callable[..., Any], token_for: Any) -> tuple[Any, str]:
    user = make_user("long")
    return user, token_for(user)


async def test_a_token_that_expires_closes_its_socket_with_4403(
    server: LiveServer, user_token: Any
) -> None:
    """The socket outlives its token by less than a second; the client then reconnects."""
    from gql_pubsub.auth.tokens import create_jwt

    user, _ = user_token
    token = create_jwt(user, lifetime=2)
    expires = int(time.time()) + 2  # create_jwt's exp, to the second
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.init({"token": token})
        closed = await client.expect_close(timeout=10)
        closed_at = time.time()
    assert closed.code == CloseCode.FORBIDDEN
    assert "expired" in closed.reason
    assert expires - 1 <= closed_at <= expires + scaled(1)
    # The client reconnects: the expired token is refused again, a fresh one is served.
    async with await GraphQLWS.connect(server.ws_url) as stale:
        await stale.send({"type": "connection_init", "payload": {"token": token}})
        refused = await stale.expect_close()
    assert refused.code == CloseCode.FORBIDDEN and "expired" in refused.reason
    async with await GraphQLWS.connect(server.ws_url) as again:
        await again.init({"token": create_jwt(user)})
        await again.subscribe("me", "{ me { username } }")
        assert await again.next_payload("me") == {"data": {"me": {"username": user.username}}}


async def test_the_server_pings_and_keeps_a_client_that_answers(
    app_server: InProcessServer,
    user_token: Any,
) -> None:
    _, token = user_token
    # The client must answer within KEEPALIVE_TIMEOUT: scaled, like the test's own waits.
    config = {**settings.GQL_PUBSUB, "KEEPALIVE_INTERVAL": 0.1, "KEEPALIVE_TIMEOUT": scaled(0.5)}
    with override_settings(GQL_PUBSUB=config):
        async with await GraphQLWS.connect(app_server.ws_url) as client:
            await client.init({"token": token})
            for _ in range(5):
                assert await client.receive(timeout=2) == {"type": "ping"}
                await client.send({"type": "pong"})
            await client.send({"type": "ping"})
            for _ in range(20):  # the server's own pings may come first: answer them
                message = await client.receive(timeout=2)
                if message != {"type": "ping"}:
                    break
                await client.send({"type": "pong"})
            assert message == {"type": "pong"}


async def test_a_client_that_does_not_answer_pings_is_closed(
    app_server: InProcessServer,
    user_token: Any,
) -> None:
    """A dead peer is found: no pong within KEEPALIVE_TIMEOUT closes the socket (1001)."""
    _, token = user_token
    config = {**settings.GQL_PUBSUB, "KEEPALIVE_INTERVAL": 0.1, "KEEPALIVE_TIMEOUT": 0.3}
    with override_settings(GQL_PUBSUB=config):
        async with await GraphQLWS.connect(app_server.ws_url) as client:
            await client.init({"token": token})
            assert await client.receive(timeout=2) == {"type": "ping"}
            started = asyncio.get_running_loop().time()
            closed = await client.expect_close(timeout=5)
    assert closed.code == CloseCode.GOING_AWAY
    assert asyncio.get_running_loop().time() - started < scaled(2)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser
        ("same", True),
        ("https://app.example", True),  # in ALLOWED_ORIGINS
        ("https://evil.example", False),
    ],
)
async def test_only_the_sites_own_and_allowed_origins_may_open_a_socket(
    app_server: InProcessServer,
    user_token: Any,
    origin: str | None,
    allowed: bool,
) -> None:
    _, token = user_token
    headers = {}
    if origin is not None:
        headers["Origin"] = f"http://127.0.0.1:{app_server.port}" if origin == "same" else origin
    config = {**settings.GQL_PUBSUB, "ALLOWED_ORIGINS": ["https://app.example"]}
    with override_settings(GQL_PUBSUB=config):
        if allowed:
            async with await GraphQLWS.connect(app_server.ws_url, additional_headers=headers) as c:
                await c.init({"token": token})
        else:
            with pytest.raises(HandshakeRefused) as refused:
                await GraphQLWS.connect(app_server.ws_url, additional_headers=headers)
            assert refused.value.status == 403


async def test_a_socket_authenticated_by_a_drf_token_stays_open_and_receives_events(
    log_dir: Any, pair_of_drf_tokens: Any, redis_client: Any
) -> None:
    """TOKEN_AUTH = drf_token_user: no JWT expiry applies, the socket lives and gets events."""
    from ..helpers import MESSAGE_ADDED, connected, send_message, subscribed
    from ..services import live_server

    alice_key, bob_key, correspondence = pair_of_drf_tokens
    with live_server({"TOKEN_AUTH": "gql_pubsub.auth.drf_token_user"}, log_dir=log_dir) as server:
        async with await connected(server, bob_key) as bob:
            await subscribed(bob, redis_client, "m", MESSAGE_ADDED, correspondence)
            sent = await send_message(server, alice_key, correspondence.pk, "via DRF")
            assert await bob.next_payload("m") == {"data": {"messageAdded": sent}}


@pytest.fixture
def pair_of_drf_tokens(
    make_user: Callable[..., Any], make_correspondence: Callable[..., Any]
) -> tuple[str, str, Any]:
    from rest_framework.authtoken.models import Token

    alice, bob = make_user("alice"), make_user("bob")
    keys = [Token.objects.create(user=user).key for user in (alice, bob)]
    return keys[0], keys[1], make_correspondence(alice, bob)
