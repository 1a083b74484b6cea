"""Limits, each with a clear error or close code: documents, operations, rate, size, sockets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from gql_pubsub import Broker, Event, EventKind
from gql_pubsub.core.events import EventTooLarge
from gql_pubsub.execution.limits import RateLimit
from gql_pubsub.transports.websocket.protocol import CloseCode

from ..conftest import InProcessServer
from ..gqlws import GraphQLWS


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Any) -> str:
    return token_for(make_user("limited"))


@pytest.fixture
def limits(request: pytest.FixtureRequest) -> Iterator[None]:
    """Override GQL_PUBSUB keys for this test (read when each connection starts)."""
    with override_settings(GQL_PUBSUB={**settings.GQL_PUBSUB, **request.param}):
        yield


async def socket(server: InProcessServer, token: str) -> GraphQLWS:
    client = await GraphQLWS.connect(server.ws_url)
    await client.init({"token": token})
    return client


async def test_a_document_nested_too_deep_is_an_error(
    app_server: InProcessServer, token: str
) -> None:
    """MAX_QUERY_DEPTH (15): deeper documents get an `error` naming the limit."""
    nested = "name " + "ofType { " * 18 + "name" + " }" * 18
    async with await socket(app_server, token) as client:
        await client.subscribe(
            "deep", f"{{ __schema {{ types {{ fields {{ type {{ {nested} }} }} }} }} }}"
        )
        error = await client.receive()
    assert error["type"] == "error"
    assert "levels deep; the limit is 15" in error["payload"][0]["message"]


async def test_a_document_selecting_too_many_fields_is_an_error(
    app_server: InProcessServer, token: str
) -> None:
    """MAX_QUERY_FIELDS (500): a document of 600 aliased fields is refused before execution."""
    fields = " ".join(f"a{n}: ok" for n in range(600))
    async with await socket(app_server, token) as client:
        await client.subscribe("wide", f"{{ {fields} }}")
        error = await client.receive()
    assert error["type"] == "error"
    assert "selects 600 fields; the limit is 500" in error["payload"][0]["message"]


@pytest.mark.parametrize("limits", [{"MAX_OPERATIONS_PER_CONNECTION": 2}], indirect=True)
@pytest.mark.usefixtures("limits")
async def test_operations_beyond_the_per_connection_limit_are_refused(
    app_server: InProcessServer, token: str
) -> None:
    query = "subscription ($c: String!) { items(channel: $c, shared: true) { n } }"
    async with await socket(app_server, token) as client:
        for n in range(3):
            await client.subscribe(f"op{n}", query, {"c": f"limits-{n}"})
        error = await client.receive()
    assert (error["id"], error["type"]) == ("op2", "error"), error
    assert (
        "Too many operations on this connection: the limit is 2" in error["payload"][0]["message"]
    )


@pytest.mark.parametrize("limits", [{"OPERATION_RATE": 0.5, "OPERATION_BURST": 2}], indirect=True)
@pytest.mark.usefixtures("limits")
async def test_operations_faster_than_the_rate_limit_are_refused(
    app_server: InProcessServer, token: str
) -> None:
    async with await socket(app_server, token) as client:
        answers = []
        for n in range(3):
            await client.subscribe(f"q{n}", "{ ok }")
            answers.append(await client.receive())
            if answers[-1]["type"] == "next":
                answers.append(await client.receive())  # its complete
    assert [a["type"] for a in answers] == ["next", "complete", "next", "complete", "error"]
    assert "Too many operations too fast" in answers[-1]["payload"][0]["message"]


@pytest.mark.parametrize("limits", [{"MAX_MESSAGE_SIZE": 1000}], indirect=True)
@pytest.mark.usefixtures("limits")
async def test_a_message_over_the_size_limit_closes_with_1009(
    app_server: InProcessServer, token: str
) -> None:
    async with await socket(app_server, token) as client:
        await client.subscribe("big", "{ ok }" + " " * 2000)
        closed = await client.expect_close()
    assert closed.code == CloseCode.MESSAGE_TOO_BIG
    assert "1000 bytes" in closed.reason


@pytest.mark.parametrize("limits", [{"MAX_MESSAGE_SIZE": 1000}], indirect=True)
@pytest.mark.usefixtures("limits")
async def test_the_size_limit_counts_bytes_not_characters(
    app_server: InProcessServer, token: str
) -> None:
    """300 emoji are 300 characters but 1,200 bytes of UTF-8: over a 1,000-byte limit."""
    async with await socket(app_server, token) as client:
        await client.subscribe("fits", "{ ok }" + " " * 900)  # ASCII under the limit: served
        assert [(await client.receive())["type"] for _ in range(2)] == ["next", "complete"]
        query = "{ ok } #" + "\U0001f600" * 300
        frame = json.dumps(
            {"id": "emoji", "type": "subscribe", "payload": {"query": query}}, ensure_ascii=False
        )
        assert len(frame) < 1000 < len(frame.encode())
        await client.send(frame)
        closed = await client.expect_close()
    assert closed.code == CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize("limits", [{"MAX_CONNECTIONS_PER_USER": 2}], indirect=True)
@pytest.mark.usefixtures("limits")
async def test_connections_beyond_the_per_user_limit_are_refused(
    app_server: InProcessServer, token: str
) -> None:
    first, second = await socket(app_server, token), await socket(app_server, token)
    try:
        async with await GraphQLWS.connect(app_server.ws_url) as third:
            await third.send({"type": "connection_init", "payload": {"token": token}})
            closed = await third.expect_close()
        assert closed.code == CloseCode.FORBIDDEN
        assert "already has 2 connections" in closed.reason
        await second.close()
        async with await socket(app_server, token):  # a slot is free again
            pass
    finally:
        await first.close()


async def test_publishing_an_event_over_max_event_size_raises_a_clear_error() -> None:
    """The publishing code gets an exception that says what to do, not a silent drop."""
    broker = Broker(None, max_event_size=100)
    big = Event(kind=EventKind.CUSTOM, model=None, pk=None, data={"blob": "x" * 200})
    with pytest.raises(EventTooLarge, match=r"over GQL_PUBSUB\['MAX_EVENT_SIZE'\] \(100\)"):
        broker.publish_sync(["anywhere"], big)
    with pytest.raises(EventTooLarge):
        await broker.publish(["anywhere"], big)
    await broker.stop()


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limit_allows_a_burst_then_one_per_interval() -> None:
    clock = Clock()
    limit = RateLimit(rate=2, burst=3, clock=clock)
    assert [limit.allow() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.49
    assert not limit.allow()  # 0.98 of a token
    clock.now += 0.02
    assert limit.allow()
    assert not limit.allow()


def test_an_idle_rate_limit_saves_up_only_its_burst() -> None:
    clock = Clock()
    limit = RateLimit(rate=10, burst=2, clock=clock)
    clock.now += 3600
    assert [limit.allow() for _ in range(3)] == [True, True, False]


def test_a_zero_rate_means_no_limit() -> None:
    limit = RateLimit(rate=0, burst=0, clock=Clock())
    assert all(limit.allow() for _ in range(1000))
