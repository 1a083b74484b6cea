"""The same document behaves the same over HTTP and over the socket: Strawberry's validation rules
(OneOf inputs), the operation limits, the schema's error processing (its log, and
``disable_field_suggestions``), and its executor class (``info.variable_values`` is a dict).
A schema with an extension says once, at startup, why its subscriptions run per subscriber."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import strawberry
from django.contrib.auth.models import AnonymousUser
from django.test import AsyncRequestFactory
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from gql_pubsub import Event, apublish, stream
from gql_pubsub.asgi import GraphQLApplication, get_asgi_application
from gql_pubsub.schema import Schema
from gql_pubsub.testing import GraphQLTestClient, OperationFailed, lifespan
from gql_pubsub.transports.http.view import GraphQLView
from gql_pubsub.transports.websocket.endpoint import GraphQLWebSocket

from ..services import captured_log


@strawberry.input(one_of=True)
class Pick:
    a: str | None = strawberry.UNSET
    b: str | None = strawberry.UNSET


@strawberry.type
class Node:
    n: str

    @strawberry.field
    def child(self) -> Node:
        return Node(n=self.n)

    @strawberry.field
    def given(self, info: Info[Any, Any]) -> str:
        """What a resolver reads of the operation: its variables and its extensions."""
        return json.dumps([info.variable_values, info.input_extensions], sort_keys=True)

    @strawberry.field
    def broken(self) -> str | None:
        raise RuntimeError(f"broken for {self.n}")


def to_node(event: Event) -> Node:
    return Node(n=str(event.data["n"]))


@strawberry.type
class Query:
    @strawberry.field
    def node(self, pick: Pick, tag: str = "") -> Node:
        return Node(n=pick.a or pick.b or "")


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def nodes(self, pick: Pick, tag: str = "") -> AsyncIterator[Node]:
        return stream(pick.a or pick.b or "", map=to_node, shared=True)


schema = Schema(query=Query, subscription=Subscription)
quiet_schema = Schema(
    query=Query,
    subscription=Subscription,
    config=StrawberryConfig(disable_field_suggestions=True),
)


async def over_http(schema: strawberry.Schema, query: str) -> Any:
    """The view's answer to one POST, through the library's GraphQLView."""
    request = AsyncRequestFactory().post(
        "/graphql/", json.dumps({"query": query}), content_type="application/json"
    )
    return await answer(schema, request)


async def answer(schema: strawberry.Schema, request: Any) -> Any:
    """The library's GraphQLView's answer to an anonymous ``request``."""

    async def anonymous() -> AnonymousUser:
        return AnonymousUser()

    request.auser = anonymous
    response = await GraphQLView.as_view(schema=schema)(request)
    return json.loads(response.content)


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Callable[[Any], str]) -> str:
    return token_for(make_user("parity"))


@pytest.fixture
async def application() -> AsyncIterator[GraphQLApplication]:
    app = get_asgi_application(schema)
    async with lifespan(app):
        yield app


async def over_socket(app: GraphQLApplication, token: str, query: str) -> Any:
    """The socket's answer to one operation: its errors if it failed, else its first result."""
    async with GraphQLTestClient(app) as client:
        await client.init({"token": token})
        try:
            op = await client.subscribe(query)
            return await client.next(op)
        except OperationFailed as failed:
            return {"errors": failed.errors}


def messages(answer: Any) -> list[str]:
    return [error["message"] for error in answer["errors"]]


BOTH_PICKED = '{ node(pick: {a: "x", b: "y"}) { n } }'
SUBSCRIPTION_BOTH_PICKED = 'subscription { nodes(pick: {a: "x", b: "y"}) { n } }'


@pytest.mark.parametrize("document", [BOTH_PICKED, SUBSCRIPTION_BOTH_PICKED])
async def test_a_oneof_input_with_two_fields_is_refused_alike_over_http_and_the_socket(
    application: GraphQLApplication, token: str, document: str
) -> None:
    http, socket = (
        await over_http(schema, document),
        await over_socket(application, token, document),
    )
    assert (
        messages(http)
        == messages(socket)
        == ["OneOf Input Object 'Pick' must specify exactly one key."]
    )


async def test_a_document_deeper_than_the_limit_is_refused_alike_over_http_and_the_socket(
    application: GraphQLApplication, token: str
) -> None:
    deep = '{ node(pick: {a: "x"}) { ' + "child { " * 16 + "n" + " }" * 16 + " } }"
    http, socket = await over_http(schema, deep), await over_socket(application, token, deep)
    assert messages(http) == messages(socket)
    assert len(messages(http)) == 1
    assert "the limit is 15" in messages(http)[0]


async def test_disabled_field_suggestions_are_left_out_over_the_socket_as_over_http(
    token: str,
) -> None:
    document = 'subscription { nodes(pick: {a: "x"}) { nn } }'
    app = get_asgi_application(quiet_schema)
    async with lifespan(app):
        socket = await over_socket(app, token, document)
    http = await over_http(quiet_schema, document)
    assert messages(socket) == messages(http) == ["Cannot query field 'nn' on type 'Node'."]
    loud = await over_http(schema, document)
    assert "Did you mean" in messages(loud)[0]  # the suggestion that the config removed


async def test_resolvers_read_variables_and_extensions_alike_on_a_grouped_subscription(
    application: GraphQLApplication, token: str
) -> None:
    """``info.variable_values`` and ``info.input_extensions``: Strawberry's executor class."""
    channel = f"parity-{uuid.uuid4().hex[:10]}"
    variables, extensions = {"p": {"a": channel}}, {"trace": "t-1"}
    request = AsyncRequestFactory().post(
        "/graphql/",
        json.dumps(
            {
                "query": "query ($p: Pick!) { node(pick: $p) { given } }",
                "variables": variables,
                "extensions": extensions,
            }
        ),
        content_type="application/json",
    )
    http = await answer(schema, request)
    async with GraphQLTestClient(application) as client:
        await client.init({"token": token})
        op = await client.subscribe(
            "subscription ($p: Pick!) { nodes(pick: $p) { given } }",
            variables,
            extensions=extensions,
        )
        await client.live(channel)
        assert application.websocket.stats().groups == 1  # the grouped path, not Strawberry's
        await apublish(channel, "custom", {"n": "1"})
        socket = await client.next(op)
    given = json.dumps([variables, extensions], sort_keys=True)
    assert http == {"data": {"node": {"given": given}}}
    assert socket == {"data": {"nodes": {"given": given}}}


async def test_a_resolver_error_is_logged_by_the_schema_once_per_event_not_once_per_subscriber(
    application: GraphQLApplication, token: str
) -> None:
    """Two subscribers, one shared execution: one ERROR with its traceback, as over HTTP."""
    channel = f"parity-{uuid.uuid4().hex[:10]}"
    subscription = "subscription ($c: String!) { nodes(pick: {a: $c}) { n broken } }"
    with captured_log("gql_pubsub.errors", logging.INFO) as log:
        async with (
            GraphQLTestClient(application) as first,
            GraphQLTestClient(application) as second,
        ):
            ops = []
            for client in (first, second):
                await client.init({"token": token})
                ops.append(await client.subscribe(subscription, {"c": channel}))
            for client in (first, second):
                await client.live(channel)
            await apublish(channel, "custom", {"n": "e1"})
            results = [await first.next(ops[0]), await second.next(ops[1])]
        http = await over_http(schema, '{ node(pick: {a: "e1"}) { n broken } }')
    for result in results:
        assert result["data"] == {"nodes": {"n": "e1", "broken": None}}
        assert result["errors"][0]["message"] == "broken for e1"
        assert result["errors"][0]["path"] == ["nodes", "broken"]
    assert http["errors"][0]["message"] == "broken for e1"
    errors = [r for r in log.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "GraphQL error at nodes.broken: broken for e1",  # the socket's: once for two subscribers
        "GraphQL error at node.broken: broken for e1",  # HTTP's
    ]
    assert all(r.exc_info is not None for r in errors)


class Tracing(SchemaExtension):
    """Stands in for any schema extension (tracing, a query cost counter)."""


def test_a_schema_with_an_extension_says_once_at_startup_why_it_runs_per_subscriber() -> None:
    traced = strawberry.Schema(query=Query, subscription=Subscription, extensions=[Tracing])
    with captured_log("gql_pubsub.websocket", logging.WARNING) as log:
        GraphQLWebSocket(traced)  # (get_asgi_application sets Django's logging up again)
        GraphQLWebSocket(schema)
    assert len(log.messages) == 1
    assert "run once per subscriber" in log.messages[0]
    assert "extension Tracing" in log.messages[0]
