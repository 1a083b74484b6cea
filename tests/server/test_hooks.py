"""gql_pubsub.server.hooks: a project changes what the socket does on connect, subscribe and
complete (custom auth, a refusal, an audit log), and each hook runs exactly when the README says."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from gql_pubsub import apublish
from gql_pubsub.asgi import GraphQLApplication, get_asgi_application
from gql_pubsub.auth.tokens import TokenRejected
from gql_pubsub.execution.context import Context
from gql_pubsub.server.hooks import Hooks, OperationRefused
from gql_pubsub.testing import ConnectionClosed, GraphQLTestClient, OperationFailed, lifespan
from gql_pubsub.transports.websocket.protocol import CloseCode, Subscribe

from .. import fanout_app
from ..services import captured_log, to_thread


class AuditedApiKeys(Hooks):
    """Connects by API key; refuses anonymous operations named 'Admin*'; logs what ends."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        self.log: list[tuple[str, str, str]] = []

    async def on_connect(
        self, scope: Any, payload: dict[str, Any], token: str | None
    ) -> AbstractBaseUser | AnonymousUser:
        key = payload.get("apiKey")
        if key is None:
            return await super().on_connect(scope, payload, token)  # tokens still work
        if key not in self.keys:
            raise TokenRejected("unknown API key")
        user: AbstractBaseUser = self.keys[key]
        return user

    async def on_subscribe(self, context: Context, operation: Subscribe) -> None:
        if (operation.operation_name or "").startswith("Admin"):
            raise OperationRefused("Admin operations are not served here.")
        self.log.append(("subscribe", operation.id, context.user.get_username()))  # type: ignore[union-attr]

    async def on_complete(self, context: Context, operation: Subscribe) -> None:
        self.log.append(("complete", operation.id, context.user.get_username()))  # type: ignore[union-attr]


@pytest.fixture
async def user(make_user: Callable[..., Any]) -> Any:
    return await to_thread(make_user, "hooked")


@pytest.fixture
async def served(user: Any) -> AsyncIterator[tuple[GraphQLApplication, AuditedApiKeys]]:
    hooks = AuditedApiKeys({"key-1": user})
    application = get_asgi_application(fanout_app.schema, hooks=hooks)
    async with lifespan(application):
        yield application, hooks


async def test_on_connect_authenticates_by_the_projects_own_rule(
    served: tuple[GraphQLApplication, AuditedApiKeys], user: Any, token_for: Any
) -> None:
    application, _ = served
    async with GraphQLTestClient(application) as client:
        await client.init({"apiKey": "key-1"})
        assert await client.execute("{ ok }") == {"data": {"ok": True}}
    async with GraphQLTestClient(application) as client:
        with pytest.raises(ConnectionClosed) as closed:
            await client.init({"apiKey": "key-2"})
    assert (closed.value.code, closed.value.reason) == (
        CloseCode.FORBIDDEN,
        "Forbidden: unknown API key",
    )
    token = await to_thread(token_for, user)
    async with GraphQLTestClient(application) as client:
        await client.init({"token": token})  # super().on_connect: the default rule
        assert await client.execute("{ ok }") == {"data": {"ok": True}}


async def test_on_subscribe_refuses_with_an_error_and_the_operation_never_starts(
    served: tuple[GraphQLApplication, AuditedApiKeys], user: Any
) -> None:
    application, hooks = served
    async with GraphQLTestClient(application) as client:
        await client.init({"apiKey": "key-1"})
        op = await client.subscribe("query AdminStats { ok }", operation_name="AdminStats")
        with pytest.raises(OperationFailed, match=r"Admin operations are not served here\."):
            await client.next(op)
        assert await client.execute("query Fine { ok }") == {"data": {"ok": True}}
    name = user.get_username()
    assert hooks.log == [("subscribe", "2", name), ("complete", "2", name)]


async def test_on_complete_runs_once_however_an_operation_ends(
    served: tuple[GraphQLApplication, AuditedApiKeys], user: Any
) -> None:
    """Completed by the client, failed validation, ended by the server, or cut by the close."""
    application, hooks = served
    channel = f"hooks-{uuid.uuid4().hex}"
    subscription = f'subscription {{ items(channel: "{channel}") {{ n }} }}'
    async with GraphQLTestClient(application) as client:
        await client.init({"apiKey": "key-1"})
        by_client = await client.subscribe(subscription)
        await client.live(channel)
        await apublish(channel, "custom", {"n": 1})
        assert await client.next(by_client) == {"data": {"items": {"n": "1"}}}
        await client.complete(by_client)
        invalid = await client.subscribe("{ nope }")
        with pytest.raises(OperationFailed):
            await client.next(invalid)
        await client.execute("{ ok }")  # "3": the server completes it
        await client.subscribe(subscription)  # "4": running when the socket closes
        await client.live(channel)
    name = user.get_username()
    assert hooks.log == [
        ("subscribe", "1", name),
        ("complete", "1", name),
        ("subscribe", "2", name),
        ("complete", "2", name),
        ("subscribe", "3", name),
        ("complete", "3", name),
        ("subscribe", "4", name),
        ("complete", "4", name),
    ]


async def test_a_failing_on_complete_is_logged_and_the_socket_goes_on(user: Any) -> None:
    class Broken(Hooks):
        async def on_complete(self, context: Context, operation: Subscribe) -> None:
            raise RuntimeError("audit store down")

    application = get_asgi_application(fanout_app.schema, hooks=Broken())
    with captured_log("gql_pubsub.websocket", logging.ERROR) as log:
        async with lifespan(application), GraphQLTestClient(application) as client:
            await client.init({"token": await to_thread(_token, user)})
            assert await client.execute("{ ok }") == {"data": {"ok": True}}
            assert await client.execute("{ ok }") == {"data": {"ok": True}}
    assert log.text().count("The on_complete hook failed for operation '1'") == 1
    assert "RuntimeError: audit store down" in log.text()


def _token(user: Any) -> str:
    from gql_pubsub.auth.tokens import create_jwt

    return create_jwt(user)
