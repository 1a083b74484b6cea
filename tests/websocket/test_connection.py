"""Connecting and authenticating, over the socket and over HTTP, on a live server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from gql_pubsub.testing import HandshakeRefused
from gql_pubsub.transports.websocket.protocol import CloseCode

from ..gqlws import GraphQLWS
from ..helpers import graphql
from ..services import LiveServer


@pytest.fixture
def alice(make_user: Callable[..., Any], token_for: Any) -> Any:
    user = make_user("alice", password="pw")
    return user, token_for(user)


@pytest.mark.parametrize(
    "payload",
    [{}, {"token": "not-a-jwt"}, {"Authorization": "Bearer nope"}, {"token": ""}],
    ids=["anonymous", "garbage-token", "garbage-header", "empty-token"],
)
async def test_connection_init_without_a_valid_token_is_closed_with_4403(
    server: LiveServer, payload: dict[str, Any]
) -> None:
    """No user, no connection: 4403 Forbidden right after connection_init."""
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.send({"type": "connection_init", "payload": payload})
        closed = await client.expect_close()
    assert closed.code == CloseCode.FORBIDDEN


async def test_an_expired_token_is_refused(server: LiveServer, alice: Any) -> None:
    """A correctly signed token past its exp is closed with 4403."""
    user, _ = alice
    expired = jwt.encode(
        {"sub": str(user.pk), "exp": 1_000_000},
        settings.GQL_PUBSUB["JWT_SECRET"],
        algorithm="HS256",
    )
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.send({"type": "connection_init", "payload": {"token": expired}})
        assert (await client.expect_close()).code == CloseCode.FORBIDDEN


async def test_a_token_signed_with_another_key_is_refused(server: LiveServer, alice: Any) -> None:
    """The signature is checked: a forged token is closed with 4403."""
    user, _ = alice
    forged = jwt.encode({"sub": str(user.pk), "exp": 4_000_000_000}, "x" * 32, algorithm="HS256")
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.send({"type": "connection_init", "payload": {"token": forged}})
        assert (await client.expect_close()).code == CloseCode.FORBIDDEN


@pytest.mark.parametrize("shape", ["token", "Authorization", "authorization-lower"])
async def test_both_token_shapes_apollo_users_send_are_accepted(
    server: LiveServer, alice: Any, shape: str
) -> None:
    """{"token": t} and {"Authorization": "Bearer t"} both authenticate the connection."""
    user, token = alice
    payload = {
        "token": {"token": token},
        "Authorization": {"Authorization": f"Bearer {token}"},
        "authorization-lower": {"authorization": f"Bearer {token}"},
    }[shape]
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.init(payload)
        await client.subscribe("me", "{ me { username } }")
        assert await client.next_payload("me") == {"data": {"me": {"username": user.username}}}


async def test_subscribe_before_connection_init_is_closed_with_4401(server: LiveServer) -> None:
    """The protocol's order is enforced: no operation before the ack."""
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.subscribe("1", "{ me { id } }")
        assert (await client.expect_close()).code == CloseCode.UNAUTHORIZED


async def test_the_legacy_graphql_ws_subprotocol_is_refused_with_4406(server: LiveServer) -> None:
    """Only graphql-transport-ws is spoken; subscriptions-transport-ws clients are told so."""
    async with await GraphQLWS.connect(server.ws_url, subprotocols=["graphql-ws"]) as client:
        closed = await client.expect_close()
    assert closed.code == CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE
    assert "graphql-transport-ws" in closed.reason


async def test_a_silent_client_is_closed_with_4408_after_the_init_timeout(
    server: LiveServer,
) -> None:
    """No connection_init within CONNECTION_INIT_TIMEOUT (3 s) closes the socket."""
    async with await GraphQLWS.connect(server.ws_url) as client:
        assert (
            await client.expect_close(timeout=10)
        ).code == CloseCode.CONNECTION_INITIALISATION_TIMEOUT


async def test_a_second_connection_init_is_closed_with_4429(server: LiveServer, alice: Any) -> None:
    _, token = alice
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.init({"token": token})
        await client.send({"type": "connection_init", "payload": {"token": token}})
        assert (await client.expect_close()).code == CloseCode.TOO_MANY_INITIALISATION_REQUESTS


async def test_a_duplicate_operation_id_is_closed_with_4409(
    server: LiveServer, alice: Any, make_correspondence: Callable[..., Any]
) -> None:
    """Reusing the id of a running subscription closes the socket."""
    user, token = alice
    correspondence = await sync_to_async(make_correspondence)(user)
    subscription = "subscription ($c: ID!) { messageAdded(correspondenceId: $c) { id } }"
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.init({"token": token})
        await client.subscribe("1", subscription, {"c": str(correspondence.pk)})
        await client.subscribe("1", subscription, {"c": str(correspondence.pk)})
        assert (await client.expect_close()).code == CloseCode.SUBSCRIBER_ALREADY_EXISTS


async def test_invalid_json_is_closed_with_4400(server: LiveServer) -> None:
    async with await GraphQLWS.connect(server.ws_url) as client:
        await client.send("{not json")
        assert (await client.expect_close()).code == CloseCode.BAD_REQUEST


async def test_a_same_origin_session_login_authenticates_the_socket(
    server: LiveServer, alice: Any
) -> None:
    """A user logged in to the admin (session cookie) can use GraphiQL's socket."""
    user, _ = alice
    session_key = await sync_to_async(_login_session)(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}"
    origin = f"http://127.0.0.1:{server.port}"
    async with await GraphQLWS.connect(
        server.ws_url, additional_headers={"Cookie": cookie, "Origin": origin}
    ) as client:
        await client.init({})
        await client.subscribe("me", "{ me { username } }")
        assert await client.next_payload("me") == {"data": {"me": {"username": user.username}}}
    with pytest.raises(HandshakeRefused) as refused:  # cross-site WebSocket hijacking
        await GraphQLWS.connect(
            server.ws_url, additional_headers={"Cookie": cookie, "Origin": "http://evil.example"}
        )
    assert refused.value.status == 403


def _login_session(user: Any) -> str:
    from importlib import import_module

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return str(session.session_key)


# -- HTTP ---------------------------------------------------------------------------------


async def test_login_returns_a_token_that_authenticates_http(
    server: LiveServer, alice: Any
) -> None:
    """login(username, password) → token; `Authorization: Bearer` makes `me` that user."""
    user, _ = alice
    response = await graphql(
        server,
        'mutation ($u: String!) { login(username: $u, password: "pw") { token } }',
        {"u": user.username},
    )
    token = response.json()["data"]["login"]["token"]
    me = await graphql(server, "{ me { id username } }", token=token)
    assert me.json() == {"data": {"me": {"id": str(user.pk), "username": user.username}}}


async def test_a_wrong_password_is_a_graphql_error(server: LiveServer, alice: Any) -> None:
    user, _ = alice
    response = await graphql(
        server,
        'mutation ($u: String!) { login(username: $u, password: "wrong") { token } }',
        {"u": user.username},
    )
    assert response.json()["errors"][0]["message"] == "Wrong username or password."


async def test_anonymous_http_gets_null_me_and_an_error_elsewhere(server: LiveServer) -> None:
    """Anonymous users may only log in and ask `me` (null)."""
    assert (await graphql(server, "{ me { id } }")).json() == {"data": {"me": None}}
    body = (await graphql(server, "{ correspondences { id } }")).json()
    assert "Authentication required" in body["errors"][0]["message"]


async def test_an_invalid_bearer_token_over_http_is_a_401(server: LiveServer) -> None:
    response = await graphql(server, "{ me { id } }", token="nope")
    assert response.status_code == 401
    assert "log in again" in response.json()["errors"][0]["message"]
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'  # RFC 6750


async def test_no_token_secret_or_password_reaches_the_logs(
    log_dir: Any, alice: Any, make_user: Callable[..., Any]
) -> None:
    """Wrong passwords (inline and as variables) and bad tokens leave no trace in the log."""
    from ..services import live_server

    user, token = alice
    secrets = ["hunter2-inline-pw", "hunter2-variable-pw", "bad.token.value", token[:-4] + "XXXX"]
    with live_server({"DEBUG": "1"}, log_dir=log_dir) as server:
        await graphql(
            server,
            f'mutation {{ login(username: "{user.username}", password: "{secrets[0]}") '
            "{ token } }",
        )
        await graphql(
            server,
            "mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
            {"u": user.username, "p": secrets[1]},
        )
        await graphql(server, "{ me { id } }", token=secrets[2])
        for bad in secrets[2:]:
            async with await GraphQLWS.connect(server.ws_url) as client:
                await client.send({"type": "connection_init", "payload": {"token": bad}})
                await client.expect_close()
        log = server.log
    text = log.read_text()
    assert "Wrong username or password" in text  # the errors are logged…
    for secret in secrets:
        assert secret not in text  # …without what the client sent
