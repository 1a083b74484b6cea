"""gql_pubsub.testing: the client users test their schemas with, in-process or over the network
to a running server (the suite's own tests use the latter), against the example schema on the
suite's real Redis and database."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from example.chat.models import Message
from gql_pubsub import apublish
from gql_pubsub.asgi import GraphQLApplication, get_asgi_application
from gql_pubsub.testing import (
    ConnectionClosed,
    GraphQLTestClient,
    HandshakeRefused,
    OperationCompleted,
    OperationFailed,
    lifespan,
)
from gql_pubsub.transports.websocket.protocol import CloseCode
from gql_pubsub.transports.websocket.send_buffer import NO_FLOW_CONTROL_FLAG

from .. import fanout_app
from ..conftest import serve_in_process
from ..helpers import HELD, ITEMS, MESSAGE_ADDED
from ..services import captured_log, scaled, to_thread


@pytest.fixture
async def application() -> AsyncIterator[GraphQLApplication]:
    app = get_asgi_application("example.schema.schema")
    async with lifespan(app):
        yield app


# --8<-- [start:new_client]
@pytest.fixture(params=["in-process", "over the network"])
async def new_client(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Any]]:
    """Make clients of the example's application: in-process, or over a real socket to uvicorn
    serving it (in this process, so that ``live()`` sees its broker)."""
    app = get_asgi_application("example.schema.schema")
    if request.param == "in-process":
        async with lifespan(app):
            yield lambda: GraphQLTestClient(app)
    else:
        async with serve_in_process(app) as server:
            yield lambda: GraphQLTestClient.over_network(server.ws_url)
    # --8<-- [end:new_client]


@pytest.fixture
def room(
    make_user: Callable[..., Any], make_correspondence: Callable[..., Any], token_for: Any
) -> tuple[Any, Any, str]:
    """A correspondence, its participant, and the participant's token."""
    user = make_user("tested")
    return make_correspondence(user), user, token_for(user)


# --8<-- [start:subscription_test]
async def test_a_subscription_receives_a_committed_write_and_queries_run_on_the_same_socket(
    new_client: Callable[[], GraphQLTestClient], room: tuple[Any, Any, str]
) -> None:
    """init with a token, subscribe, write, ``next``; a query's one result; ``complete``."""
    correspondence, user, token = room
    async with new_client() as client:
        assert client.subprotocol == "graphql-transport-ws"
        await client.init({"token": token})
        assert await client.execute("{ me { username } }") == {
            "data": {"me": {"username": user.username}}
        }
        op = await client.subscribe(MESSAGE_ADDED, {"c": str(correspondence.pk)})
        await client.live(correspondence.channel)
        await to_thread(
            Message.objects.create, correspondence=correspondence, author=user, body="hi"
        )
        result = await client.next(op)
        assert result["data"]["messageAdded"]["body"] == "hi"
        await client.complete(op)
        assert await client.execute("{ me { username } }") == {
            "data": {"me": {"username": user.username}}
        }
    # --8<-- [end:subscription_test]


async def test_refusals_raise_with_the_servers_code_and_reason(
    new_client: Callable[[], GraphQLTestClient], room: tuple[Any, Any, str]
) -> None:
    """A bad token closes with 4403 and the reason; a refused operation raises its errors."""
    token = room[2]
    async with new_client() as client:
        with pytest.raises(ConnectionClosed) as closed:
            await client.init({"token": "not-a-token"})
    assert closed.value.code == CloseCode.FORBIDDEN
    assert closed.value.reason.startswith("Forbidden: token")

    async with new_client() as client:
        await client.init({"token": token})
        op = await client.subscribe(MESSAGE_ADDED, {"c": "0"})
        with pytest.raises(OperationFailed, match="does not exist or you are not a participant"):
            await client.next(op)
        op = await client.subscribe("{ me { username } }")
        await client.next(op)
        with pytest.raises(OperationCompleted):
            await client.next(op)


async def test_a_send_after_the_server_closed_raises_connection_closed_with_its_code(
    new_client: Callable[[], GraphQLTestClient],
) -> None:
    """Sending on a socket the server has closed raises the library's ``ConnectionClosed`` (with
    the server's code), not the transport's own exception, on either socket."""
    async with new_client() as client:
        with pytest.raises(ConnectionClosed):
            await client.init({"token": "not-a-token"})
        with pytest.raises(ConnectionClosed) as closed:
            await client.send({"type": "ping"})
    assert closed.value.code == CloseCode.FORBIDDEN


async def test_a_path_other_than_graphql_path_is_refused_at_the_handshake(
    application: GraphQLApplication,
) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        async with GraphQLTestClient(application, "/elsewhere/"):
            pass
    assert closed.value.code == 1000


async def test_over_the_network_a_refused_handshake_raises_with_its_http_status() -> None:
    async with serve_in_process(get_asgi_application("example.schema.schema")) as server:
        with pytest.raises(HandshakeRefused) as refused:
            async with GraphQLTestClient.over_network(server.ws_url.replace("/graphql/", "/x/")):
                pass
    assert refused.value.status == 403


async def test_the_transport_exposes_flow_control_so_no_warning_is_logged(
    application: GraphQLApplication, room: tuple[Any, Any, str]
) -> None:
    """The library's outbox sees the client's flow-control flag, as behind uvicorn."""
    with captured_log("gql_pubsub.websocket", logging.WARNING) as log:
        async with GraphQLTestClient(application) as client:
            await client.init({"token": room[2]})
    assert not application.websocket.told_no_flow_control
    assert NO_FLOW_CONTROL_FLAG not in log.messages


async def test_stats_count_sockets_users_operations_and_groups_and_return_to_zero(
    room: tuple[Any, Any, str],
) -> None:
    """``GraphQLWebSocket.stats()``: two sockets of one user in one group, then nothing."""
    correspondence, _, token = room
    subscription = MESSAGE_ADDED + f"# {uuid.uuid4()}"  # texts no earlier test had parsed
    query = f"{{ me {{ username }} }} # {uuid.uuid4()}"
    application = get_asgi_application("example.schema.schema")
    websocket = application.websocket
    empty = websocket.stats()
    assert (empty.connections, empty.operations, empty.groups) == (0, 0, 0)
    async with lifespan(application):
        async with (
            GraphQLTestClient(application) as first,
            GraphQLTestClient(application) as second,
        ):
            for client in (first, second):
                await client.init({"token": token})
                await client.subscribe(subscription, {"c": str(correspondence.pk)})
            for client in (first, second):  # the second joins the group the first started
                await client.live(correspondence.channel)
            await first.execute(query)
            stats = websocket.stats()
            assert (stats.connections, stats.users, stats.operations) == (2, 1, 2)
            assert (stats.groups, stats.group_members, stats.live_groups) == (1, 2, 1)
            assert stats.documents_parsed - empty.documents_parsed == 2  # the two texts
        after = websocket.stats()
    assert (after.connections, after.users, after.operations) == (0, 0, 0)
    assert (after.groups, after.group_members, after.live_groups) == (0, 0, 0)


async def test_live_waits_for_this_clients_own_subscription_not_only_for_its_channel(
    make_user: Callable[..., Any], token_for: Callable[[Any], str]
) -> None:
    """A second socket's ``live()``: its channel is live already (the first socket's), yet it
    returns only once its own subscription has started, so the next event reaches it too."""
    user = await to_thread(make_user, "live-twice")
    channel = f"live-{uuid.uuid4().hex[:10]}"
    checked, go_on = fanout_app.held.setdefault(channel, (asyncio.Event(), asyncio.Event()))
    application = get_asgi_application(fanout_app.schema)
    async with (
        lifespan(application),
        GraphQLTestClient(application) as first,
        GraphQLTestClient(application) as second,
    ):
        for client in (first, second):
            await client.init({"token": token_for(user)})
        await first.subscribe(ITEMS, {"c": channel})
        await first.live(channel)
        held = await second.subscribe(HELD, {"c": channel})
        await asyncio.wait_for(checked.wait(), scaled(5))  # its resolver runs, not yet streaming
        waiting = asyncio.create_task(second.live(channel))
        with pytest.raises(TimeoutError):  # the channel is live, the subscription is not
            await asyncio.wait_for(asyncio.shield(waiting), 0.3)
        go_on.set()
        await waiting
        await apublish(channel, "custom", {"n": 1})
        assert await second.next(held) == {"data": {"heldItems": {"n": "1"}}}
