"""One composition root: each application builds its own hub (engine, fan-out, hooks, sessions)
and hands it down, so two applications in one process share nothing but the process's broker
(one connection for every subscription), which runs while either of them does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from gql_pubsub import apublish
from gql_pubsub.asgi import get_asgi_application
from gql_pubsub.broker.process import get_broker
from gql_pubsub.testing import ConnectionClosed, GraphQLTestClient, lifespan
from gql_pubsub.transports.websocket.protocol import CloseCode

from .. import fanout_app
from ..helpers import RefusesUsersNamed
from ..services import to_thread


async def test_two_applications_in_one_process_keep_their_own_hooks_groups_and_limits(
    make_user: Callable[..., Any], token_for: Callable[[Any], str]
) -> None:
    """Two applications of one schema, one with hooks of its own, MAX_CONNECTIONS_PER_USER = 1:
    each applies its own hooks and counts its own sockets, neither sees the other's groups,
    and the first goes on receiving after the second has shut down."""
    user, blocked = await to_thread(lambda: (make_user("both"), make_user("blocked")))
    token, blocked_token = await to_thread(lambda: (token_for(user), token_for(blocked)))
    channel = f"composition-{uuid.uuid4().hex}"
    first = get_asgi_application(fanout_app.schema)
    second = get_asgi_application(
        fanout_app.schema, hooks=RefusesUsersNamed("blocked", "blocked here")
    )
    assert first.hub is not second.hub
    with override_settings(GQL_PUBSUB={"MAX_CONNECTIONS_PER_USER": 1}):
        async with lifespan(first), GraphQLTestClient(first) as client:
            await client.init({"token": token})
            op = await client.subscribe(f'subscription {{ items(channel: "{channel}") {{ n }} }}')
            await client.live(channel)
            async with lifespan(second):
                async with GraphQLTestClient(second) as other:
                    await other.init({"token": token})  # the first's socket is not counted here
                    assert second.websocket.stats().groups == 0
                    assert second.websocket.stats().users == 1
                async with GraphQLTestClient(second) as other:
                    with pytest.raises(ConnectionClosed) as closed:
                        await other.init({"token": blocked_token})
                assert (closed.value.code, closed.value.reason) == (
                    CloseCode.FORBIDDEN,
                    "Forbidden: blocked here",
                )
                async with GraphQLTestClient(first) as other:
                    await other.init({"token": blocked_token})  # the first has no such rule
                stats = first.websocket.stats()
                assert (stats.groups, stats.users) == (1, 1)
            assert get_broker().is_live(channel)  # the second's shutdown left it running
            await apublish(channel, "custom", {"n": 1})
            assert await client.next(op) == {"data": {"items": {"n": "1"}}}
