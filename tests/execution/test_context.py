"""info.context over the WebSocket offers what it offers over HTTP: a resolver written for one
reads the request (headers, cookies, query string, path, client, user, session) and writes on
the response the same way on the other."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib.sessions.backends.db import SessionStore
from django.test import AsyncRequestFactory

from gql_pubsub.asgi import get_asgi_application
from gql_pubsub.testing import GraphQLTestClient, lifespan
from gql_pubsub.transports.http.view import GraphQLView

from .. import fanout_app
from ..services import to_thread


async def test_a_resolver_reads_the_request_alike_over_http_and_the_websocket(
    make_user: Callable[..., Any], token_for: Callable[[Any], str]
) -> None:
    user = await to_thread(make_user, "context")
    token = await to_thread(token_for, user)
    headers = {"User-Agent": "context-test", "Cookie": "flavour=cookie"}

    factory = AsyncRequestFactory()
    request = factory.post(
        "/graphql/?flavour=query",
        {"query": "{ requestFacts }"},
        content_type="application/json",
        headers=headers,
    )
    request.COOKIES["flavour"] = "cookie"  # the factory keeps cookies apart from headers
    request.user = user
    request.session = SessionStore()  # as SessionMiddleware sets it

    async def auser() -> Any:
        return user

    request.auser = auser  # type: ignore[method-assign]
    request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]  # a bearer request
    view = GraphQLView.as_view(schema=fanout_app.schema)
    response = await view(request)
    assert response.status_code == 200, response.content
    over_http = json.loads(json.loads(response.content)["data"]["requestFacts"])

    application = get_asgi_application(fanout_app.schema)
    async with (
        lifespan(application),
        GraphQLTestClient(
            application,
            "/graphql/?flavour=query",
            headers=headers.items(),
            client=("127.0.0.1", 50123),
        ) as client,
    ):
        await client.init({"token": token})
        result = await client.execute("{ requestFacts }")
    over_websocket = json.loads(result["data"]["requestFacts"])

    assert over_websocket == over_http
    assert over_websocket == {
        "agent": "context-test",
        "cookie": "cookie",
        "query": "query",
        "path": "/graphql/",
        "client": "127.0.0.1",
        "user": user.get_username(),
        "same user": True,
        "session": True,
    }
