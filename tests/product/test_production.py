"""Safe by default in production: what a server started with DEBUG off refuses and hides."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import pytest
import redis
from django.conf import settings
from django.test import AsyncClient, override_settings

from gql_pubsub.conf import get_settings
from gql_pubsub.transports.websocket.protocol import CloseCode

from ..gqlws import GraphQLWS
from ..helpers import MESSAGE_ADDED, connected, graphql, send_message
from ..services import (
    ROOT,
    LiveServer,
    gunicorn_server,
    live_server,
    production_env,
    scaled,
    to_thread,
    wait_until,
)

ME = "{ me { id username } }"


def uvicorn_exit(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the example under uvicorn, expecting it to refuse to start (and so to exit)."""
    command = [sys.executable, "-m", "uvicorn", "example.asgi:application", "--port", "0"]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
    )


@pytest.fixture(scope="module")
def production_server(log_dir: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    env = production_env()
    with live_server(env, log_dir=log_dir) as live:
        yield live, env


def test_the_server_refuses_to_start_with_the_development_jwt_secret() -> None:
    """DEBUG off and JWT_SECRET left at the example's public default: uvicorn exits, saying why."""
    env = production_env()
    del env["JWT_SECRET"]
    result = uvicorn_exit(env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "gql_pubsub.E002" in output
    assert "anyone who knows it can sign tokens" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("secret", "check"),
    [("short-but-random-Zq8", "gql_pubsub.E002"), ("", "gql_pubsub.E001")],
    ids=["short", "missing"],
)
def test_the_server_refuses_to_start_with_a_short_or_missing_jwt_secret(
    secret: str, check: str
) -> None:
    output = "".join(_outputs(uvicorn_exit(production_env(JWT_SECRET=secret))))
    assert check in output


def test_the_example_refuses_to_start_with_its_development_secret_key() -> None:
    result = uvicorn_exit(production_env(DJANGO_SECRET_KEY=_example_dev_secret()))
    assert result.returncode != 0
    assert "example.E001" in result.stdout + result.stderr


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user("prod")


async def test_a_token_signed_with_the_development_secret_is_refused_in_production(
    production_server: tuple[LiveServer, dict[str, str]], user: Any
) -> None:
    """The forged token of the review (sub=<pk>, the public secret) gets nobody's account."""
    live, env = production_server
    forged = jwt.encode(
        {"sub": str(user.pk), "exp": int(time.time()) + 600}, _example_dev_secret(), "HS256"
    )
    response = await graphql(live, ME, token=forged)
    assert response.status_code == 401
    async with await GraphQLWS.connect(live.ws_url) as client:
        await client.send({"type": "connection_init", "payload": {"token": forged}})
        closed = await client.expect_close()
    assert closed.code == CloseCode.FORBIDDEN
    genuine = jwt.encode(
        {"sub": str(user.pk), "exp": int(time.time()) + 600}, env["JWT_SECRET"], "HS256"
    )
    response = await graphql(live, ME, token=genuine)
    assert response.json()["data"]["me"]["username"] == user.username


def test_a_misspelt_setting_fails_manage_py_check_with_debug_on_and_off() -> None:
    """A typo in GQL_PUBSUB is check error gql_pubsub.E003 listing the known keys, no traceback."""
    for debug in ("1", "0"):
        result = subprocess.run(
            [sys.executable, "-m", "django", "check"],
            cwd=ROOT,
            env={
                **os.environ,
                **production_env(DEBUG=debug),
                "DJANGO_SETTINGS_MODULE": "tests.typo_settings",
            },
            capture_output=True,
            text=True,
            timeout=scaled(60),
        )
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "gql_pubsub.E003" in output
        assert "unknown key(s) ['BROKR_URL']" in output
        assert "'BROKER_URL'" in output  # the known keys are listed
        assert "Traceback" not in output


async def test_deployments_on_different_redis_databases_never_see_each_others_events(
    log_dir: Path, redis_url: str, redis_client: redis.Redis, pair: Any
) -> None:
    """Staging on …/14 and production on …/15 of one Redis: a message reaches only its own."""
    alice_token, bob_token, correspondence = pair
    channel = correspondence.channel
    with (
        live_server({"REDIS_URL": _with_database(redis_url, 15)}, log_dir=log_dir) as production,
        live_server({"REDIS_URL": _with_database(redis_url, 14)}, log_dir=log_dir) as staging,
    ):
        async with (
            await connected(production, bob_token) as own,
            await connected(staging, bob_token) as other,
        ):
            for client, db in ((own, 15), (other, 14)):
                await client.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
                name = f"gql_pubsub:{db}:{channel}"
                await to_thread(
                    wait_until,
                    lambda name=name: dict(redis_client.pubsub_numsub(name)).get(name.encode()),
                    10,
                    f"a subscription to {name}",
                )
            sent = await send_message(production, alice_token, correspondence.pk, "private")
            assert await own.next_payload("m") == {"data": {"messageAdded": sent}}
            await other.expect_silence(0.5)


REFUSALS = {
    "missing": ({}, "Forbidden: no token in connection_init and no logged-in session"),
    "malformed": ({"token": "not-a-jwt"}, "Forbidden: token malformed"),
    "bad-signature": ({"sub": "{pk}", "key": "another-secret-" + "k" * 32}, "signature invalid"),
    "expired": ({"sub": "{pk}", "exp": 1}, "Forbidden: token expired"),
    "string-exp": ({"sub": "{pk}", "exp": "4000000000"}, "exp must be a number"),
    "deactivated": ({"sub": "{deactivated}"}, "Forbidden: user deactivated"),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_refused_socket_is_told_why_and_the_refusal_is_logged(
    server: LiveServer, make_user: Callable[..., Any], case: str
) -> None:
    """Each reason reaches the client in the 4403 close and the log at INFO, never the token."""
    spec, reason = REFUSALS[case]
    payload = await to_thread(_connection_payload, spec, make_user)
    async with await GraphQLWS.connect(server.ws_url) as client:
        host, port = client.ws.local_address[:2]
        await client.send({"type": "connection_init", "payload": payload})
        closed = await client.expect_close()
    assert closed.code == CloseCode.FORBIDDEN
    assert reason in closed.reason
    token = payload.get("token")
    if token:
        assert token not in closed.reason
    line = f"INFO gql_pubsub.websocket: Closed the socket of {host}:{port} with 4403: "

    def logged() -> list[str]:  # the port may have served an earlier test's socket too
        return [e for e in server.log.read_text().splitlines() if line in e and reason in e]

    await to_thread(wait_until, logged, 5, f"{line!r} with {reason!r} in the log")
    if token:
        assert token not in server.log.read_text()


async def test_an_operation_error_sent_over_the_socket_is_logged_with_the_client_address(
    server: LiveServer, pair: Any, make_correspondence: Callable[..., Any]
) -> None:
    """A refused subscription is an `error` for the client and an INFO line for the operator."""
    alice_token, _bob_token, _correspondence = pair
    elsewhere = await to_thread(make_correspondence)  # alice is no participant
    async with await connected(server, alice_token) as client:
        host, port = client.ws.local_address[:2]
        await client.subscribe("x", MESSAGE_ADDED, {"c": str(elsewhere.pk)})
        message = await client.receive()
    assert message["type"] == "error"
    line = f"INFO gql_pubsub.websocket: Operation 'x' of {host}:{port} failed: "
    await to_thread(
        wait_until, lambda: line in server.log.read_text(), 5, f"{line!r} in the server's log"
    )


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": 1}, "Token expired: log in again for a new one."),
        ({"exp": "4000000000"}, "Token malformed: exp must be a number: log in again"),
    ],
    ids=["expired", "string-exp"],
)
async def test_an_http_request_with_a_refused_token_gets_a_401_saying_why(
    server: LiveServer, user: Any, claims: dict[str, Any], message: str
) -> None:
    token = jwt.encode({"sub": str(user.pk), **claims}, get_settings().jwt_secret, "HS256")
    response = await graphql(server, ME, token=token)
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"].startswith(message)


INTROSPECTION = "{ __schema { queryType { name } } }"
GRAPHIQL_HEADERS = {"Accept": "text/html"}


async def test_graphiql_and_introspection_are_off_in_production(
    production_server: tuple[LiveServer, dict[str, str]], user: Any
) -> None:
    """DEBUG off: no GraphiQL page, and introspection is a validation error on HTTP and socket."""
    live, env = production_server
    async with httpx.AsyncClient(base_url=live.http_url, timeout=scaled(30)) as client:
        page = await client.get("/graphql/", headers=GRAPHIQL_HEADERS)
    assert page.status_code == 404
    body = (await graphql(live, INTROSPECTION)).json()
    assert "data" not in body or body["data"] is None
    assert "introspection has been disabled" in body["errors"][0]["message"]
    assert (await graphql(live, "{ __typename }")).json() == {"data": {"__typename": "Query"}}
    token = jwt.encode(
        {"sub": str(user.pk), "exp": int(time.time()) + 600}, env["JWT_SECRET"], "HS256"
    )
    async with await connected(live, token) as client:
        await client.subscribe("i", INTROSPECTION)
        message = await client.receive()
    assert message["type"] == "error"
    assert "introspection has been disabled" in message["payload"][0]["message"]


async def test_graphiql_and_introspection_are_on_in_development(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as client:
        page = await client.get("/graphql/", headers=GRAPHIQL_HEADERS)
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    body = (await graphql(server, INTROSPECTION)).json()
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_a_production_project_can_turn_graphiql_and_introspection_on() -> None:
    """GRAPHIQL and INTROSPECTION set to True win over DEBUG off."""
    config = {**settings.GQL_PUBSUB, "GRAPHIQL": True, "INTROSPECTION": True}
    client = AsyncClient()
    with override_settings(DEBUG=False, ALLOWED_HOSTS=["testserver"], GQL_PUBSUB=config):
        page = await client.get("/graphql/", headers=GRAPHIQL_HEADERS)
        body = (await client.post("/graphql/", {"query": INTROSPECTION}, "application/json")).json()
    assert page.status_code == 200
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_a_subscription_sent_over_http_gets_a_clear_400_and_no_traceback(
    server: LiveServer, pair: Any
) -> None:
    alice_token, _bob_token, correspondence = pair
    log_before = server.log.read_text()
    response = await graphql(server, MESSAGE_ADDED, {"c": str(correspondence.pk)}, alice_token)
    assert response.status_code == 400
    assert "served over WebSocket" in response.text
    assert "Cannot return null" not in response.text
    new_lines = server.log.read_text()[len(log_before) :]
    assert "Traceback" not in new_lines
    assert "ERROR" not in new_lines


MEMORY_BROKER_WARNING = "WARNING gql_pubsub.broker: This process is one of 2 worker processes"


def test_the_in_memory_broker_warns_when_the_server_runs_several_workers(log_dir: Path) -> None:
    """`--workers 2` without REDIS_URL: a WARNING names the fix (a single worker stays quiet)."""
    with live_server({"REDIS_URL": ""}, workers=2, log_dir=log_dir) as several:
        wait_until(
            lambda: MEMORY_BROKER_WARNING in several.log.read_text(),
            30,
            "the in-memory broker's warning",
        )
        assert "Set GQL_PUBSUB['BROKER_URL'] to redis://" in several.log.read_text()
    with live_server({"REDIS_URL": ""}, log_dir=log_dir) as single:
        assert "using the in-memory broker" in single.log.read_text()  # started: lifespan done
        assert "worker processes" not in single.log.read_text()


def test_the_in_memory_broker_warns_under_gunicorn_with_several_workers(log_dir: Path) -> None:
    """`gunicorn -w 2 -k uvicorn_worker.UvicornWorker` without REDIS_URL: the same WARNING."""
    with gunicorn_server({"REDIS_URL": ""}, workers=2, log_dir=log_dir) as several:
        wait_until(
            lambda: MEMORY_BROKER_WARNING in several.log.read_text(),
            30,
            "the in-memory broker's warning",
        )


def _connection_payload(spec: dict[str, Any], make_user: Callable[..., Any]) -> dict[str, Any]:
    """Build the connection_init payload a case describes (a token signed for a real user)."""
    if "sub" not in spec:
        return dict(spec)
    user = make_user("refused")
    if spec["sub"] == "{deactivated}":
        user.is_active = False
        user.save()
    claims = {"sub": str(user.pk), "exp": spec.get("exp", int(time.time()) + 600)}
    key = spec.get("key") or get_settings().jwt_secret
    return {"token": jwt.encode(claims, key, "HS256")}


def _with_database(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def _outputs(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert result.returncode != 0, result.stdout + result.stderr
    return result.stdout, result.stderr


def _example_dev_secret() -> str:
    from example.settings import DEV_SECRET

    return DEV_SECRET
