"""How the app is served: uvicorn's WebSocket protocols, and ASGI middleware around the app."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from gql_pubsub import apublish
from gql_pubsub.transports.websocket.send_buffer import NO_FLOW_CONTROL_FLAG
from gql_pubsub.transports.websocket.servers import (
    GRANIAN_WEBSOCKETS,
    LEGACY_UVICORN_WEBSOCKETS,
    UVICORN_FAST,
    UVICORN_LEGACY,
    slow_websocket_path,
)

from ..conftest import InProcessServer, serve_in_process, wait_numsub
from ..gqlws import GraphQLWS
from ..services import captured_log, live_server, to_thread

ITEMS = "subscription ($c: String!) { items(channel: $c, shared: true) { n } }"


def application() -> Any:
    from gql_pubsub.asgi import get_asgi_application

    from .. import fanout_app

    return get_asgi_application(fanout_app.schema)


def wrapping_send(app: Any) -> Any:
    """An ASGI middleware of the common kind (tracing, metrics): it wraps ``send``."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        async def traced_send(message: Any) -> None:
            await send(message)

        await app(scope, receive, traced_send)

    return middleware


async def two_sockets_receive_three_events(
    server: InProcessServer, redis_client: redis.Redis, token: str
) -> list[list[str]]:
    channel = f"serving-{uuid.uuid4().hex[:10]}"
    clients = [await GraphQLWS.connect(server.ws_url) for _ in range(2)]
    try:
        for client in clients:
            await client.init({"token": token})
            await client.subscribe("1", ITEMS, {"c": channel})
        await to_thread(wait_numsub, redis_client, channel, 1)
        for n in range(3):
            await apublish(channel, "custom", {"n": n})
        return [
            [(await client.next_payload("1"))["data"]["items"]["n"] for _ in range(3)]
            for client in clients
        ]
    finally:
        await asyncio.gather(*(client.close() for client in clients))


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Any) -> str:
    return str(token_for(make_user()))


@pytest.mark.parametrize("ws", ["auto", "websockets-sansio", "wsproto"])
async def test_uvicorns_flow_controlled_protocols_take_the_fast_path_silently(
    ws: str,
    redis_client: redis.Redis,
    token: str,
) -> None:
    """On uvicorn's default and wsproto protocols frames are written in place: no warning."""
    async with serve_in_process(application(), ws=ws) as server:
        with captured_log(
            "gql_pubsub.websocket", logging.WARNING
        ) as warnings:  # once started: uvicorn's logging set-up drops handlers
            got = await two_sockets_receive_three_events(server, redis_client, token)
    assert got == [["0", "1", "2"]] * 2
    assert NO_FLOW_CONTROL_FLAG not in warnings.messages


@pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # websockets.legacy, under it
@pytest.mark.parametrize(
    ("ws", "wrap"), [("websockets", lambda app: app), ("auto", wrapping_send)], ids=["legacy", "mw"]
)
async def test_a_send_without_flow_control_still_delivers_and_the_server_says_why_once(
    ws: str,
    wrap: Callable[[Any], Any],
    redis_client: redis.Redis,
    token: str,
) -> None:
    """uvicorn's legacy protocol, or a middleware wrapping send: every event, and one warning."""
    async with serve_in_process(wrap(application()), ws=ws) as server:
        with captured_log(
            "gql_pubsub.websocket", logging.WARNING
        ) as warnings:  # once started: uvicorn's logging set-up drops handlers
            got = await two_sockets_receive_three_events(server, redis_client, token)
    assert got == [["0", "1", "2"]] * 2
    assert warnings.messages.count(NO_FLOW_CONTROL_FLAG) == 1


@pytest.mark.parametrize("ws", ["websockets", "auto"])
def test_a_server_on_uvicorns_legacy_websockets_says_so_at_startup_naming_the_setting(
    ws: str, log_dir: Path
) -> None:
    """``--ws websockets``: one warning before any socket opens, naming ``--ws
    websockets-sansio``; uvicorn's default: none."""
    with live_server({}, log_dir=log_dir, uvicorn_args=["--ws", ws]) as server:
        started = server.log.read_text()
    if ws == "websockets":
        assert started.count(LEGACY_UVICORN_WEBSOCKETS) == 1, started
        assert "`--ws websockets-sansio`" in LEGACY_UVICORN_WEBSOCKETS
    else:
        assert "websockets" not in started, started


def test_the_slow_paths_are_told_apart_from_the_fast_ones_by_the_modules_the_server_loaded() -> (
    None
):
    """uvicorn's legacy implementation and granian warn; uvicorn's default, wsproto, or an
    ASGI server not measured do not."""
    base = {"uvicorn", "uvicorn.protocols.websockets"}
    assert slow_websocket_path(base | {UVICORN_LEGACY}) == LEGACY_UVICORN_WEBSOCKETS
    assert slow_websocket_path(base | {UVICORN_LEGACY, UVICORN_FAST[0]}) is None
    assert slow_websocket_path(base | {UVICORN_FAST[0]}) is None
    assert slow_websocket_path(base | {UVICORN_FAST[1]}) is None
    assert slow_websocket_path({"granian", "granian.asgi"}) == GRANIAN_WEBSOCKETS
    assert slow_websocket_path({"hypercorn", "hypercorn.asyncio"}) is None
