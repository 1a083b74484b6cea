"""Documents are parsed and validated once per distinct text, over either transport, read from
the server's cache."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from gql_pubsub import apublish
from gql_pubsub.asgi import GraphQLApplication

from ..conftest import InProcessServer, wait_numsub
from ..gqlws import GraphQLWS
from ..helpers import ITEMS
from ..services import to_thread, until


def unique(name: str) -> str:
    return f"documents-{name}-{uuid.uuid4().hex[:10]}"


async def acked(url: str, token: str) -> GraphQLWS:
    client = await GraphQLWS.connect(url)
    await client.init({"token": token})
    return client


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Callable[[Any], str]) -> str:
    return token_for(make_user("http"))


# -- 3. parsed and validated once per distinct text ----------------------------------------------

ITEMS_WITH_SIZE = "subscription ($c: String!) { items(channel: $c) { n size } }"


async def test_a_document_is_parsed_and_validated_once_per_distinct_text(
    app_server: InProcessServer, redis_client: redis.Redis, token: str
) -> None:
    """Four subscriptions of one text (two variable sets): one cache miss; a new text: another."""
    app: GraphQLApplication = app_server.app  # type: ignore[assignment]
    stats = app.websocket.stats
    channels = [unique("parse-a"), unique("parse-b")]
    before = stats()
    clients = [await acked(app_server.ws_url, token) for _ in range(3)]
    try:
        for client in clients:
            await client.subscribe("1", ITEMS, {"c": channels[0]})
        await clients[0].subscribe("2", ITEMS, {"c": channels[1]})

        def lookups() -> int:
            now = stats()
            return (
                now.documents_parsed
                + now.document_cache_hits
                - before.documents_parsed
                - before.document_cache_hits
            )

        await until(lambda: lookups() == 4, "four document lookups")
        after_same = stats()
        assert after_same.documents_parsed - before.documents_parsed == 1
        assert after_same.document_cache_hits - before.document_cache_hits == 3
        assert after_same.documents_cached == before.documents_cached + 1

        # The cached document serves real operations: every one of them gets its event.
        await until(lambda: app.websocket.stats().group_members == 4, "four members")
        for channel in channels:
            await to_thread(wait_numsub, redis_client, channel, 1)
            await apublish(channel, "custom", {"n": channel})
        for client in clients:
            assert await client.next_payload("1") == {"data": {"items": {"n": channels[0]}}}
        assert await clients[0].next_payload("2") == {"data": {"items": {"n": channels[1]}}}

        await clients[1].subscribe("3", ITEMS_WITH_SIZE, {"c": channels[0]})
        await clients[2].subscribe("3", ITEMS_WITH_SIZE, {"c": channels[0]})
        await until(lambda: lookups() == 6, "two more document lookups")
        after_other = stats()
        assert after_other.documents_parsed - before.documents_parsed == 2
        assert after_other.document_cache_hits - before.document_cache_hits == 4
    finally:
        await asyncio.gather(*(client.close() for client in clients))
