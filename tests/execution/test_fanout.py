"""One execution and one encoding per event per group of identical subscriptions, exactly."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
import strawberry
from django.conf import settings
from django.test import override_settings
from strawberry.extensions import SchemaExtension

from gql_pubsub import apublish
from gql_pubsub.transports.websocket.protocol import CloseCode

from .. import fanout_app
from ..conftest import InProcessServer, serve_in_process, wait_numsub
from ..gqlws import Closed, GraphQLWS, StalledClient
from ..services import scaled, to_thread

ITEMS = """
subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n executions viewer } }
"""


@pytest.fixture
def channel() -> str:
    return f"fanout-{uuid.uuid4().hex[:10]}"  # unique across runs sharing a Redis


@pytest.fixture
def users(make_user: Callable[..., Any], token_for: Any) -> list[tuple[Any, str]]:
    return [(user, token_for(user)) for user in (make_user("ann"), make_user("ben"))]


async def socket(server: InProcessServer, token: str) -> GraphQLWS:
    client = await GraphQLWS.connect(server.ws_url)
    await client.init({"token": token})
    return client


async def items(client: GraphQLWS, op_id: str, count: int) -> list[dict[str, Any]]:
    return [(await client.next_payload(op_id))["data"]["items"] for _ in range(count)]


async def ready(redis_client: redis.Redis, channel: str) -> None:
    await to_thread(wait_numsub, redis_client, channel, 1)


async def test_identical_subscriptions_share_one_execution_per_event(
    app_server: InProcessServer, redis_client: redis.Redis, users: Any, channel: str
) -> None:
    """Five sockets of one user, one operation: each event runs once, all five receive it."""
    (user, token), _ = users
    clients = [await socket(app_server, token) for _ in range(5)]
    try:
        for client in clients:
            await client.subscribe("1", ITEMS, {"c": channel, "s": False})
        await ready(redis_client, channel)
        # Every member joined before the first event: the group registers them synchronously
        # once the broker subscription is live, which the NUMSUB wait observed for the first.
        await _members(app_server, 5)
        for n in range(3):
            await apublish(channel, "custom", {"n": f"{channel}-{n}"})
        received = [await items(client, "1", 3) for client in clients]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    expected = [{"n": f"{channel}-{n}", "executions": 1, "viewer": user.username} for n in range(3)]
    assert received == [expected] * 5
    assert [fanout_app.executions[f"{channel}-{n}"] for n in range(3)] == [1, 1, 1]


async def test_fields_that_read_the_viewer_run_per_user_unless_the_stream_is_shared(
    app_server: InProcessServer, redis_client: redis.Redis, users: Any, channel: str
) -> None:
    """Two users in one group: the fields that may read the viewer run once per user with that
    user's context, the rest once; a shared stream runs once, anonymous."""
    (ann, ann_token), (ben, ben_token) = users
    a, b = await socket(app_server, ann_token), await socket(app_server, ben_token)
    try:
        for client in (a, b):
            await client.subscribe("own", ITEMS, {"c": channel, "s": False})
            await client.subscribe("shared", ITEMS, {"c": channel, "s": True})
        await ready(redis_client, channel)
        await _members(app_server, 4)
        assert app_server.app.websocket.stats().groups == 2  # per-viewer fields, and shared
        await apublish(channel, "custom", {"n": f"{channel}-x"})
        got: dict[str, dict[str, Any]] = {}
        for name, client in (("ann", a), ("ben", b)):
            for _ in range(2):
                message = await client.receive()
                got[f"{name}/{message['id']}"] = message["payload"]["data"]["items"]
    finally:
        await asyncio.gather(a.close(), b.close())
    assert got["ann/own"]["viewer"] == ann.username
    assert got["ben/own"]["viewer"] == ben.username
    assert got["ann/shared"]["viewer"] is None  # shared executions see no user at all
    assert got["ann/shared"] == got["ben/shared"]
    assert fanout_app.executions[f"{channel}-x"] == 3  # ann, ben, shared: one each


async def test_a_refused_subscriber_gets_an_error_and_joins_no_group(
    app_server: InProcessServer, redis_client: redis.Redis, users: Any, channel: str
) -> None:
    """The resolver's refusal is an `error` for that operation; the socket keeps working."""
    (_user, token), _ = users
    async with await socket(app_server, token) as client:
        await client.subscribe("no", ITEMS, {"c": f"forbidden-{channel}", "s": True})
        error = await client.receive()
        assert error["type"] == "error"
        assert error["payload"][0]["message"] == "You may not read this channel."
        assert app_server.app.websocket.stats().groups == 0
        await client.subscribe("yes", ITEMS, {"c": channel, "s": True})
        await ready(redis_client, channel)
        await apublish(channel, "custom", {"n": f"{channel}-ok"})
        assert (await items(client, "yes", 1))[0]["n"] == f"{channel}-ok"


async def test_the_last_member_leaving_ends_the_group_and_its_redis_subscription(
    app_server: InProcessServer, redis_client: redis.Redis, users: Any, channel: str
) -> None:
    (_user, token), _ = users
    a, b = await socket(app_server, token), await socket(app_server, token)
    for client in (a, b):
        await client.subscribe("1", ITEMS, {"c": channel, "s": True})
    await ready(redis_client, channel)
    await a.send({"id": "1", "type": "complete"})
    await b.close()
    await to_thread(wait_numsub, redis_client, channel, 0)
    assert app_server.app.websocket.stats().groups == 0
    await a.close()


async def test_a_stalled_client_is_closed_and_the_others_keep_their_pace(
    app_server: InProcessServer, redis_client: redis.Redis, users: Any, channel: str
) -> None:
    """A client that stops reading is closed with 1013 once SEND_BUFFER frames wait.

    The others receive every event, in order, meanwhile.
    """
    (_user, token), _ = users
    config = {**settings.GQL_PUBSUB, "SEND_BUFFER": 20}
    with override_settings(GQL_PUBSUB=config):  # read when each connection starts
        fast = await socket(app_server, token)
        stalled = await StalledClient.connect(app_server.ws_url)
        await stalled.send({"type": "connection_init", "payload": {"token": token}})
        assert (await stalled.receive())["type"] == "connection_ack"
    try:
        query = "subscription ($c: String!) { items(channel: $c, shared: true) { n padding } }"
        await fast.subscribe("1", query, {"c": channel})
        await stalled.send(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"c": channel}},
            }
        )
        await ready(redis_client, channel)
        websocket = app_server.app.websocket
        events = 0
        # 64 KB events until the kernel's and the transport's buffers are full, SEND_BUFFER
        # frames wait, and the server drops the stalled client from the group.
        while websocket.stats().group_members == 2:
            assert events < 3000, "the stalled client was never closed"
            await apublish(channel, "custom", {"n": events, "size": 65536})
            payload = await fast.next_payload("1")
            assert payload["data"]["items"]["n"] == str(events)
            events += 1
        received, closed = await _read_until_closed(stalled, events)
        assert closed.code == CloseCode.TRY_AGAIN_LATER
        assert received < events
    finally:
        await asyncio.gather(fast.close(), stalled.close())


async def _read_until_closed(client: StalledClient, sent: int) -> tuple[int, Closed]:
    """Read until the close frame; fail if more than the ``sent`` events arrive before it."""
    received = 0
    while received <= sent:
        try:
            await client.receive()
        except Closed as closed:
            return received, closed
        received += 1
    raise AssertionError(f"{received} messages for {sent} events, and no close")


async def _members(server: InProcessServer, count: int, timeout: float = 10) -> None:
    """Wait until the server's groups have ``count`` members in all. Polled on this event loop,
    the in-process server's own, so nothing is read while the server changes it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(timeout)
    while (members := server.app.websocket.stats().group_members) != count:
        assert loop.time() < deadline, f"{members} group members after {timeout}s, not {count}"
        await asyncio.sleep(0.01)


@pytest.fixture
def followers(make_user: Callable[..., Any], token_for: Any, channel: str) -> list[Any]:
    """Three users following one `news:` channel."""
    from gql_pubsub.models import Channel

    news = Channel.objects.create(name=f"news:{channel}")
    users = [make_user("follower") for _ in range(3)]
    for user in users:
        news.subscribe(user)
    return users


async def followed_sockets(
    server: InProcessServer, redis_client: redis.Redis, tokens: list[str], channel: str
) -> tuple[list[GraphQLWS], int]:
    """A `followed` operation per token, each live; how many events that took to show."""
    query = "subscription { followed { n executions viewer } }"
    clients = [await socket(server, token) for token in tokens]
    for client in clients:
        await client.subscribe("f", query)
    await to_thread(wait_numsub, redis_client, f"news:{channel}", 1)
    # The first subscriber's stream is live; publish until every stream has one event.
    published = 0
    for index, client in enumerate(clients):
        for _ in range(40):  # 0.5 s each: 20 s at most
            published += 1
            await apublish(f"news:{channel}", "custom", {"n": f"{channel}-{published}"})
            try:
                await client.next_payload("f", timeout=0.5)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError(f"the stream of follower {index} never went live")
    published += 1  # and one that every stream reads up to: nothing earlier is left unread
    await apublish(f"news:{channel}", "custom", {"n": f"{channel}-synced"})
    for client in clients:
        await _next_with_n(client, f"{channel}-synced", published)
    return clients, published


async def test_followed_streams_of_different_users_share_one_execution_per_event(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    followers: list[Any],
    token_for: Any,
    channel: str,
) -> None:
    """Each user's own stream, in one group; one execution per event, with no user in it."""
    tokens = [token_for(user) for user in followers]
    clients, published = await followed_sockets(app_server, redis_client, tokens, channel)
    try:
        stats = app_server.app.websocket.stats()
        assert (stats.groups, stats.group_members) == (1, 3)
        await apublish(f"news:{channel}", "custom", {"n": f"{channel}-last"})
        last = [await _next_with_n(client, f"{channel}-last", published + 1) for client in clients]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert last == [{"n": f"{channel}-last", "executions": 1, "viewer": None}] * 3
    assert fanout_app.executions[f"{channel}-last"] == 1


async def test_a_follower_who_unsubscribes_stops_at_once_and_the_rest_of_its_group_goes_on(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    followers: list[Any],
    token_for: Any,
    channel: str,
) -> None:
    """The unsubscribe commits, then an event: two of three followers get it, executed once."""
    from gql_pubsub.models import Channel

    tokens = [token_for(user) for user in followers]
    clients, published = await followed_sockets(app_server, redis_client, tokens, channel)
    news = f"news:{channel}"

    def unsubscribe_then_publish() -> None:
        Channel.objects.get(name=news).unsubscribe(followers[0])
        from gql_pubsub import publish

        publish(news, "custom", {"n": f"{channel}-after"})

    try:
        await to_thread(unsubscribe_then_publish)
        after = [await _next_with_n(c, f"{channel}-after", published + 1) for c in clients[1:]]
        await clients[0].expect_silence(scaled(0.5))
        stats = app_server.app.websocket.stats()
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert after == [{"n": f"{channel}-after", "executions": 1, "viewer": None}] * 2
    assert (stats.groups, stats.group_members) == (1, 3)  # the first one's stream goes on


async def _next_with_n(client: GraphQLWS, n: str, limit: int) -> dict[str, Any]:
    """The first item numbered ``n``, among at most ``limit`` (every event published)."""
    for _ in range(limit):
        item: dict[str, Any] = (await client.next_payload("f"))["data"]["followed"]
        if item["n"] == n:
            return item
    raise AssertionError(f"no item {n!r} among {limit} messages")


async def subscribed_by_each(
    server: InProcessServer, tokens: list[str], query: str, channel: str
) -> list[GraphQLWS]:
    """A socket per token, each subscribed to ``query`` on ``channel`` (not declared shared)."""
    clients = [await socket(server, token) for token in tokens]
    for client in clients:
        await client.subscribe("1", query, {"c": channel, "s": False})
    return clients


async def members_in_groups(server: InProcessServer, members: int) -> tuple[int, int]:
    """(groups, members) once every subscriber has joined one."""
    stats = server.app.websocket.stats()
    for _ in range(int(scaled(200))):
        stats = server.app.websocket.stats()
        if stats.group_members == members:
            break
        await asyncio.sleep(0.02)
    return stats.groups, stats.group_members


PLAIN = (
    "subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n size label } }"
)
VIEWER = "subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n viewer } }"
TAGGED = "subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n tag } }"


async def test_different_users_share_one_execution_when_no_field_can_read_the_viewer(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
) -> None:
    """Not declared shared; plain fields and a resolver that says it is viewer-independent."""
    users = await to_thread(lambda: [make_user("plain") for _ in range(3)])
    clients = await subscribed_by_each(app_server, [token_for(u) for u in users], PLAIN, channel)
    try:
        assert await members_in_groups(app_server, 3) == (1, 3)
        await ready(redis_client, channel)
        await apublish(channel, "custom", {"n": f"{channel}-1", "size": 2})
        items = [(await client.next_payload("1"))["data"]["items"] for client in clients]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert items == [{"n": f"{channel}-1", "size": 2, "label": f"item {channel}-1"}] * 3


@pytest.mark.parametrize("query", [VIEWER, TAGGED], ids=["reads-the-viewer", "says-dependent"])
async def test_a_field_that_may_depend_on_the_viewer_is_never_shared_across_users(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
    query: str,
) -> None:
    """Many users, many events, one group: each subscriber's payloads carry its own user's
    value of the field, resolved once per user per event; nobody's value reaches another."""
    users = await to_thread(lambda: [make_user("viewer") for _ in range(4)])
    clients = await subscribed_by_each(app_server, [token_for(u) for u in users], query, channel)
    try:
        assert await members_in_groups(app_server, 4) == (1, 4)
        await ready(redis_client, channel)
        for n in range(25):
            await apublish(channel, "custom", {"n": f"{channel}-{n}"})
        received = [
            [(await client.next_payload("1"))["data"]["items"] for _ in range(25)]
            for client in clients
        ]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    for user, items in zip(users, received, strict=True):
        assert [item["n"] for item in items] == [f"{channel}-{n}" for n in range(25)]
        if query is VIEWER:
            assert {item["viewer"] for item in items} == {user.username}
    if query is TAGGED:
        assert [fanout_app.tagged[f"{channel}-{n}"] for n in range(25)] == [4] * 25


MIXED = """
subscription ($c: String!, $s: Boolean!) {
  items(channel: $c, shared: $s) { n label viewer box { n seenBy } me { n } later size }
}
"""


async def test_only_the_fields_that_read_the_viewer_run_per_user_the_rest_once_per_event(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
) -> None:
    """Three users, one group: ``label`` runs once per event for all of them; ``viewer``, a
    nested ``box.seenBy``, an object field ``me`` and an async ``later`` are each user's own, in
    the field order of the document."""
    users = await to_thread(lambda: [make_user("mixed") for _ in range(3)])
    clients = await subscribed_by_each(app_server, [token_for(u) for u in users], MIXED, channel)
    try:
        assert await members_in_groups(app_server, 3) == (1, 3)
        await ready(redis_client, channel)
        for n in range(5):
            await apublish(channel, "custom", {"n": f"{channel}-{n}", "size": n})
        received = [
            [(await client.next_payload("1"))["data"]["items"] for _ in range(5)]
            for client in clients
        ]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    for user, items in zip(users, received, strict=True):
        name = user.username
        assert items == [
            {
                "n": f"{channel}-{n}",
                "label": f"item {channel}-{n}",
                "viewer": name,
                "box": {"n": f"{channel}-{n}", "seenBy": f"{channel}-{n} seen by {name}"},
                "me": {"n": f"{channel}-{n} for {name}"},
                "later": f"later for {name}",
                "size": n,
            }
            for n in range(5)
        ]
        assert [list(item) for item in items] == [list(items[0])] * 5  # the document's order
    assert [fanout_app.labelled[f"{channel}-{n}"] for n in range(5)] == [1] * 5


SECRET = """
subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n secret } }
"""
STRICT = """
subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n strictSecret } }
"""


@pytest.mark.parametrize("query", [SECRET, STRICT], ids=["nullable", "non-null"])
async def test_a_per_user_field_that_fails_for_one_user_is_that_users_error_alone(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
    query: str,
) -> None:
    """The refused user gets what an execution of their own gives (null where the error is,
    the whole item for a non-null field, and the error with its path); the others their
    values, in the same group."""
    allowed, denied = await to_thread(lambda: (make_user("ok"), make_user("deny")))
    clients = await subscribed_by_each(
        app_server, [token_for(allowed), token_for(denied)], query, channel
    )
    try:
        assert await members_in_groups(app_server, 2) == (1, 2)
        await ready(redis_client, channel)
        await apublish(channel, "custom", {"n": f"{channel}-1"})
        ok, refused = [await client.next_payload("1") for client in clients]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    field = "secret" if query is SECRET else "strictSecret"
    assert ok == {"data": {"items": {"n": f"{channel}-1", field: f"for {allowed.username}"}}}
    if query is SECRET:
        assert refused["data"] == {"items": {"n": f"{channel}-1", "secret": None}}
    else:
        assert refused["data"] is None
    assert [(e["message"], e["path"]) for e in refused["errors"]] == [
        (f"{denied.username} may not read this.", ["items", field])
    ]


async def test_subscribers_resuming_from_cursors_get_their_own_values_in_catch_up_and_live(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
) -> None:
    """Ann stays; Ben leaves with his cursor, three events pass, and he comes back: the events
    he missed and the live ones carry his own ``viewer``, Ann's hers, from one group."""
    ann, ben = await to_thread(lambda: (make_user("ann"), make_user("ben")))

    async def resumable(token: str, after: str | None) -> tuple[GraphQLWS, str]:
        client = await socket(app_server, token)
        variables = {"c": channel, "s": False}
        extensions = {"after": after}
        await client.send(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": VIEWER, "variables": variables, "extensions": extensions},
            }
        )
        live = await client.next_payload("1")
        assert set(live) == {"extensions"}, live
        return client, live["extensions"]["cursor"]

    def seen(payload: dict[str, Any]) -> tuple[str, str]:
        assert payload["extensions"]["cursor"]
        item = payload["data"]["items"]
        return item["n"], item["viewer"]

    staying, _ = await resumable(token_for(ann), None)
    back = None
    try:
        leaving, cursor = await resumable(token_for(ben), None)
        await leaving.close()
        names = [f"{channel}-{n}" for n in range(4)]
        for name in names[:3]:
            await apublish(channel, "custom", {"n": name})
        back, _ = await resumable(token_for(ben), cursor)
        await _members(app_server, 2)
        await apublish(channel, "custom", {"n": names[3]})
        bens = [seen(await back.next_payload("1")) for _ in names]
        anns = [seen(await staying.next_payload("1")) for _ in names]
        assert app_server.app.websocket.stats().groups == 1
    finally:
        await asyncio.gather(staying.close(), *([back.close()] if back else []))
    assert bens == [(name, ben.username) for name in names]
    assert anns == [(name, ann.username) for name in names]


async def test_followed_streams_of_different_users_fill_their_own_values_in_one_group(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    followers: list[Any],
    token_for: Any,
    channel: str,
) -> None:
    """Three users' followed channels, not declared shared, with a field that reads the viewer:
    one group, each event's ``viewer`` its own user's."""
    query = "subscription { followedOwn { n viewer } }"
    clients = [await socket(app_server, token_for(user)) for user in followers]
    try:
        for client in clients:
            await client.subscribe("f", query)
        await _members(app_server, 3)
        assert app_server.app.websocket.stats().groups == 1
        # Each stream goes live on its own: publish until every one has shown an event.
        published = 0
        got: list[list[dict[str, Any]]] = [[] for _ in clients]
        for index, client in enumerate(clients):
            for _ in range(40):
                published += 1
                await apublish(f"news:{channel}", "custom", {"n": f"{channel}-{published}"})
                try:
                    got[index].append((await client.next_payload("f", 0.5))["data"]["followedOwn"])
                    break
                except TimeoutError:
                    continue
        await apublish(f"news:{channel}", "custom", {"n": f"{channel}-last"})
        for index, client in enumerate(clients):
            while not got[index] or got[index][-1]["n"] != f"{channel}-last":
                got[index].append((await client.next_payload("f"))["data"]["followedOwn"])
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    for user, items in zip(followers, got, strict=True):
        assert {item["viewer"] for item in items} == {user.username}


CHECKED = """
subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n viewer checked } }
"""


async def test_when_the_shared_part_fails_each_user_gets_the_error_and_their_own_values(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
) -> None:
    """A shared field fails for one event: each user's payload has it null with its error, and
    their own ``viewer``; the next event is whole again."""
    users = await to_thread(lambda: [make_user("checked") for _ in range(2)])
    clients = await subscribed_by_each(app_server, [token_for(u) for u in users], CHECKED, channel)
    try:
        assert await members_in_groups(app_server, 2) == (1, 2)
        await ready(redis_client, channel)
        await apublish(channel, "custom", {"n": f"{channel}-bad"})
        await apublish(channel, "custom", {"n": f"{channel}-good"})
        received = [[await client.next_payload("1") for _ in range(2)] for client in clients]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    for user, (bad, good) in zip(users, received, strict=True):
        assert bad["data"] == {
            "items": {"n": f"{channel}-bad", "viewer": user.username, "checked": None}
        }
        assert [(e["message"], e["path"]) for e in bad["errors"]] == [
            (f"{channel}-bad is bad", ["items", "checked"])
        ]
        assert good == {
            "data": {"items": {"n": f"{channel}-good", "viewer": user.username, "checked": "ok"}}
        }


@pytest.mark.parametrize(
    "query", [PLAIN, VIEWER, MIXED], ids=["shared", "per-viewer-field", "per-viewer-objects"]
)
async def test_a_groups_memory_does_not_grow_with_the_events_it_serves(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    users: Any,
    channel: str,
    query: str,
) -> None:
    """300 more events through a group leave fewer than 300 more live objects behind.

    (graphql-core's per-event executors share their original's memo of sub-selections, keyed
    by a list made anew for every event: it grew by an entry of some 16 objects per event.)
    """
    (_, token), _ = users
    assert await _memory_growth(app_server, redis_client, token, query, channel) < 300


class _Traced(SchemaExtension):
    """Any schema extension: its schema's subscriptions run through Strawberry's pipeline."""


async def test_a_per_subscriber_streams_memory_does_not_grow_with_the_events_it_serves(
    redis_client: redis.Redis, users: Any, channel: str
) -> None:
    """The same through Strawberry's own pipeline (a schema with an extension), which builds
    graphql-core's per-event executors too."""
    from gql_pubsub.asgi import get_asgi_application

    traced = strawberry.Schema(
        query=fanout_app.Query, subscription=fanout_app.Subscription, extensions=[_Traced]
    )
    (_, token), _ = users
    async with serve_in_process(get_asgi_application(traced)) as server:
        assert await _memory_growth(server, redis_client, token, PLAIN, channel) < 300


async def _memory_growth(
    server: InProcessServer, redis_client: redis.Redis, token: str, query: str, channel: str
) -> int:
    """How many more objects live after 300 more events than after the first 50."""
    client = await socket(server, token)

    async def events(first: int, count: int) -> None:
        for n in range(first, first + count):
            await apublish(channel, "custom", {"n": f"{channel}-{n}"})
        for _ in range(count):
            await client.next_payload("1")

    try:
        await client.subscribe("1", query, {"c": channel, "s": False})
        await ready(redis_client, channel)
        await events(0, 50)
        gc.collect()
        before = len(gc.get_objects())
        await events(50, 300)
        gc.collect()
        after = len(gc.get_objects())
    finally:
        await client.close()
    return after - before


PER_VIEWER_SHAPES = ["guarded", "strictGuarded", "mood", "whereabouts", "count", "awaited"]


@pytest.mark.parametrize("field", PER_VIEWER_SHAPES)
async def test_a_per_viewer_field_gives_each_user_what_an_execution_of_their_own_gives(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
    field: str,
) -> None:
    """A permission class (granted and denied), an enum, a resolver reading the request, the
    field's path and its root, an Int that does not serialize, a function returning a
    coroutine: filled into one group's shared result, each user's payload (values, nulls and
    errors) is exactly what Strawberry's own per-subscriber execution gives that user."""
    query = (
        "subscription ($c: String!, $s: Boolean!) "
        f"{{ items(channel: $c, shared: $s) {{ n size {field} }} }}"
    )
    from gql_pubsub.asgi import get_asgi_application

    one_by_one = strawberry.Schema(
        query=fanout_app.Query, subscription=fanout_app.Subscription, extensions=[_Traced]
    )
    users = await to_thread(lambda: [make_user("ok"), make_user("deny")])
    tokens = [token_for(u) for u in users]
    async with serve_in_process(get_asgi_application(one_by_one)) as reference:
        grouped = await subscribed_by_each(app_server, tokens, query, channel)
        alone = await subscribed_by_each(reference, tokens, query, channel)
        try:
            assert await members_in_groups(app_server, 2) == (1, 2)
            # One broker serves both servers: the group, and each reference socket's stream.
            await _listening(channel, 3)
            await apublish(channel, "custom", {"n": f"{channel}-1", "size": 3})
            got = [await client.next_payload("1") for client in grouped]
            expected = [await client.next_payload("1") for client in alone]
        finally:
            await asyncio.gather(*(c.close() for c in grouped + alone))
    assert got == expected
    assert got[0]["data"]["items"][field] is not None  # granted: a value
    assert "errors" in got[1] or field in {"mood", "whereabouts", "awaited"}


async def test_a_per_viewer_field_resolves_once_per_user_and_event_however_many_sockets(
    app_server: InProcessServer,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    token_for: Any,
    channel: str,
) -> None:
    """Ann on three sockets and Ben on one, in one group: ``counted`` runs once per event for
    each of them, and each socket has its user's value."""
    query = (
        "subscription ($c: String!, $s: Boolean!) { items(channel: $c, shared: $s) { n counted } }"
    )
    ann, ben = await to_thread(lambda: (make_user("ann"), make_user("ben")))
    tokens = [token_for(ann)] * 3 + [token_for(ben)]
    clients = await subscribed_by_each(app_server, tokens, query, channel)
    try:
        assert await members_in_groups(app_server, 4) == (1, 4)
        await ready(redis_client, channel)
        for n in range(3):
            await apublish(channel, "custom", {"n": f"{channel}-{n}"})
        received = [await items(client, "1", 3) for client in clients]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    names = [ann.username] * 3 + [ben.username]
    for name, got in zip(names, received, strict=True):
        assert got == [{"n": f"{channel}-{n}", "counted": name} for n in range(3)]
    assert {
        (n, name): fanout_app.resolved[f"{channel}-{n} {name}"]
        for n in range(3)
        for name in (ann.username, ben.username)
    } == {(n, name): 1 for n in range(3) for name in (ann.username, ben.username)}


async def _listening(channel: str, subscribers: int) -> None:
    """Wait until the broker has ``subscribers`` local subscribers on ``channel``, live."""
    from gql_pubsub.broker.process import get_broker

    broker = get_broker()
    for _ in range(int(scaled(500))):
        if broker.subscriber_count(channel) == subscribers and broker.is_live(channel):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{broker.subscriber_count(channel)} subscribers on {channel}")
