"""A revocation that arrives while an operation starts (its resolver has checked access, its
stream is not yet known) still ends it: the operation never streams the revoked channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from gql_pubsub.asgi import get_asgi_application
from gql_pubsub.models import revoke
from gql_pubsub.testing import GraphQLTestClient, OperationCompleted, lifespan

from .. import fanout_app
from ..helpers import HELD, ITEMS
from ..services import scaled, to_thread


async def test_a_revocation_during_an_operations_start_ends_it_once_its_channels_are_known(
    make_user: Callable[..., Any], token_for: Callable[[Any], str]
) -> None:
    """The user's access is revoked while a second subscription's resolver is between its check
    and its stream: once the stream names the channel, the operation ends with the revocation,
    as the one already running did (before, it went live on the revoked channel)."""
    user = await to_thread(make_user, "starting")
    channel = f"starting-{uuid.uuid4().hex[:10]}"
    checked, go_on = fanout_app.held.setdefault(channel, (asyncio.Event(), asyncio.Event()))
    application = get_asgi_application(fanout_app.schema)
    async with lifespan(application), GraphQLTestClient(application) as client:
        await client.init({"token": token_for(user)})
        running = await client.subscribe(ITEMS, {"c": channel})
        await client.live(channel)
        starting = await client.subscribe(HELD, {"c": channel})
        await asyncio.wait_for(checked.wait(), scaled(5))
        await to_thread(revoke, user, channel)
        revoked = f"Access to {channel!r} was revoked."
        assert await client.next(running) == {"data": None, "errors": [{"message": revoked}]}
        with pytest.raises(OperationCompleted):
            await client.next(running)  # the revocation reached this connection
        go_on.set()
        assert await client.next(starting) == {"data": None, "errors": [{"message": revoked}]}
        with pytest.raises(OperationCompleted):
            await client.next(starting)
