"""100 users, random memberships, 1,000 events: each user receives exactly what they may see."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from example.chat.models import Correspondence, Message

from ..conftest import wait_numsub
from ..gqlws import GraphQLWS
from ..helpers import connected
from ..services import LiveServer, to_thread

USERS, ROOMS, EVENTS = 100, 10, 1000
LIVE_ROUNDS = 20
"""At most this many rounds of `live:` messages, one per room, before the test's events."""
EVENTS_QUERY = "subscription { events { channel node { ... on Message { body } } } }"


@pytest.fixture
def world(make_user: Callable[..., Any], token_for: Any) -> Any:
    """Users with random memberships (each in at least one of ten correspondences)."""
    rng = random.Random(20261127)
    users = [make_user("crowd") for _ in range(USERS)]
    rooms = [Correspondence.objects.create(title=f"crowd {n}") for n in range(ROOMS)]
    members: dict[int, set[int]] = {}
    for n, user in enumerate(users):
        chosen = {n % ROOMS} | {r for r in range(ROOMS) if rng.random() < 0.3}
        members[user.pk] = chosen
        for r in chosen:
            rooms[r].participants.add(user)
    return users, rooms, members, [token_for(u) for u in users], rng


async def test_every_user_gets_exactly_the_events_they_may_see(
    server: LiveServer, redis_client: redis.Redis, world: Any
) -> None:
    users, rooms, members, tokens, rng = world
    clients: list[GraphQLWS] = list(await asyncio.gather(*(connected(server, t) for t in tokens)))
    try:
        for client in clients:
            await client.subscribe("ev", EVENTS_QUERY)
        for room in rooms:
            await to_thread(wait_numsub, redis_client, room.channel, 1)
        # Every stream is live once each has received a first event on its own room.
        await _until_all_live(clients, users, rooms)

        plan = [rng.randrange(ROOMS) for _ in range(EVENTS)]

        @sync_to_async
        def publish_all() -> None:
            author = users[0]
            for k, r in enumerate(plan):
                Message.objects.create(correspondence=rooms[r], author=author, body=f"e{k}:{r}")
            for r, room in enumerate(rooms):
                Message.objects.create(correspondence=room, author=author, body=f"end:{r}")

        await publish_all()
        for user, client in zip(users, clients, strict=True):
            expected = [f"e{k}:{r}" for k, r in enumerate(plan) if r in members[user.pk]]
            ends = {f"end:{r}" for r in members[user.pk]}
            got: list[str] = []
            # Left-over `live:` messages may come too, but no more than were published.
            limit = len(expected) + len(ends) + LIVE_ROUNDS * ROOMS
            for _ in range(limit):
                if not ends:
                    break
                body = (await client.next_payload("ev"))["data"]["events"]["node"]["body"]
                if body.startswith("end:"):
                    ends.discard(body)
                elif not body.startswith("live:"):
                    got.append(body)
            assert not ends, f"{ends} missing after {limit} messages"
            assert sorted(got, key=_order) == expected  # exactly these, none other
            assert all(int(b.split(":")[1]) in members[user.pk] for b in got)
    finally:
        await asyncio.gather(*(c.close() for c in clients))


def _order(body: str) -> int:
    return int(body[1:].split(":")[0])


async def _until_all_live(clients: list[GraphQLWS], users: list[Any], rooms: list[Any]) -> None:
    """Publish a `live:` message in every room until every stream has received one."""

    async def went_live(client: GraphQLWS) -> bool:
        try:
            for _ in range(LIVE_ROUNDS * len(rooms)):  # every `live:` message this can publish
                payload = await client.next_payload("ev", timeout=1)
                if payload["data"]["events"]["node"]["body"].startswith("live:"):
                    return True
        except TimeoutError:
            return False
        raise AssertionError(f"{LIVE_ROUNDS * len(rooms)} messages and no `live:` one among them")

    pending = list(clients)
    for _ in range(LIVE_ROUNDS):
        await sync_to_async(
            lambda: [
                Message.objects.create(correspondence=room, author=users[0], body=f"live:{n}")
                for n, room in enumerate(rooms)
            ]
        )()
        live = await asyncio.gather(*(went_live(c) for c in pending))
        pending = [c for c, ok in zip(pending, live, strict=True) if not ok]
        if not pending:
            return
    raise AssertionError(f"{len(pending)} streams never went live")
