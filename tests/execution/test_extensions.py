"""Schemas with Strawberry extensions keep Strawberry's per-subscriber pipeline, on a real uvicorn
serving such a schema: the extension runs for each subscriber."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
import strawberry
import uvicorn
from strawberry.extensions import SchemaExtension

from gql_pubsub import Event, apublish, stream
from gql_pubsub.asgi import get_asgi_application
from gql_pubsub.broker.process import get_broker

from ..conftest import wait_numsub
from ..gqlws import GraphQLWS
from ..services import free_port, scaled, to_thread, until


def unique(name: str) -> str:
    return f"extensions-{name}-{uuid.uuid4().hex[:10]}"


async def acked(url: str, token: str) -> GraphQLWS:
    client = await GraphQLWS.connect(url)
    await client.init({"token": token})
    return client


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Callable[[Any], str]) -> str:
    return token_for(make_user("http"))


# -- 5. Strawberry extensions keep the per-subscriber pipeline -----------------------------------

on_execute: collections.Counter[str] = collections.Counter()
"""``on_execute`` calls of the counting extension, by the operation's ``c`` variable."""
resolutions: collections.Counter[str] = collections.Counter()
"""Executions of ``ExtItem.resolved``, by event."""


class CountingExtension(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        variables = self.execution_context.variables or {}
        on_execute[str(variables.get("c"))] += 1
        yield


@strawberry.type
class ExtItem:
    n: str

    @strawberry.field
    def resolved(self) -> bool:
        resolutions[self.n] += 1
        return True


def to_ext_item(event: Event) -> ExtItem:
    return ExtItem(n=str(event.data["n"]))


@strawberry.type
class ExtQuery:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class ExtSubscription:
    @strawberry.subscription
    async def items(self, c: str) -> AsyncGenerator[ExtItem, None]:
        return stream(c, map=to_ext_item)  # type: ignore[return-value]


extension_schema = strawberry.Schema(
    query=ExtQuery, subscription=ExtSubscription, extensions=[CountingExtension]
)
EXT_ITEMS = "subscription ($c: String!) { items(c: $c) { n resolved } }"


@contextlib.asynccontextmanager
async def serving(schema: strawberry.Schema) -> AsyncIterator[str]:
    """uvicorn serving ``get_asgi_application(schema)`` on this loop; yields the socket URL."""
    port = free_port()
    config = uvicorn.Config(
        get_asgi_application(schema),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or task.done(), "uvicorn to start", 20)
        assert server.started, "in-process uvicorn did not start"
        yield f"ws://127.0.0.1:{port}/graphql/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, scaled(20))


async def test_a_schema_with_an_extension_runs_it_for_each_subscriber(
    redis_client: redis.Redis, token: str
) -> None:
    """Two sockets, one document, one event: both receive it, executed once per subscriber."""
    channel = unique("extension")
    async with serving(extension_schema) as url:
        clients = [await acked(url, token) for _ in range(2)]
        try:
            for client in clients:
                await client.subscribe("1", EXT_ITEMS, {"c": channel})
            await to_thread(wait_numsub, redis_client, channel, 1)
            await until(
                lambda: on_execute[channel] == 2 and get_broker().subscriber_count(channel) == 2,
                f"the extension's on_execute for both subscribers (now {on_execute[channel]})",
            )
            await apublish(channel, "custom", {"n": channel})
            payloads = [await client.next_payload("1") for client in clients]
        finally:
            await asyncio.gather(*(client.close() for client in clients))
    assert payloads == [{"data": {"items": {"n": channel, "resolved": True}}}] * 2
    assert on_execute[channel] == 2
    assert resolutions[channel] == 2  # the selection set ran for each subscriber
