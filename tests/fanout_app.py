"""A schema that counts its executions, served in-process by a real uvicorn for test_fanout."""

from __future__ import annotations

import collections
import json
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.types import Info

from gql_pubsub import Event, stream
from gql_pubsub.context import get_user
from gql_pubsub.viewers import VIEWER_DEPENDENT, VIEWER_INDEPENDENT

executions: collections.Counter[str] = collections.Counter()
"""How many times each event's selection set ran, by the event's ``n``."""


@strawberry.type
class Item:
    n: str
    size: int
    tag: str = strawberry.field(default="t", metadata=VIEWER_DEPENDENT)  # said so: not shared

    @strawberry.field(metadata=VIEWER_INDEPENDENT)
    def label(self) -> str:
        """A resolver that says it never reads who asks: shared."""
        return f"item {self.n}"

    @strawberry.field
    def executions(self) -> int:
        executions[self.n] += 1
        return executions[self.n]

    @strawberry.field
    def viewer(self, info: Info[Any, Any]) -> str | None:
        user = get_user(info)
        return user.get_username() if user.is_authenticated else None

    @strawberry.field
    def padding(self) -> str:
        return "x" * self.size


def to_item(event: Event) -> Item:
    return Item(n=str(event.data["n"]), size=int(event.data.get("size", 0)))


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True

    @strawberry.field
    def request_facts(self, info: Info[Any, Any]) -> str:
        """What a resolver written for HTTP reads of the request (and writes on the response)."""
        request, response = info.context.request, info.context.response
        response.set_cookie("seen", "yes")
        return json.dumps(
            {
                "agent": request.headers.get("User-Agent"),
                "cookie": request.COOKIES.get("flavour"),
                "query": request.GET.get("flavour"),
                "path": request.path,
                "client": request.META.get("REMOTE_ADDR"),
                "user": request.user.get_username(),
                "same user": request.user == get_user(info),
                "session": hasattr(request, "session"),
            }
        )


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def items(self, channel: str, shared: bool = False) -> AsyncGenerator[Item, None]:
        if channel.startswith("forbidden"):
            raise PermissionError("You may not read this channel.")
        return stream(channel, map=to_item, shared=shared)  # type: ignore[return-value]

    @strawberry.subscription
    async def followed(self, info: Info[Any, Any]) -> AsyncGenerator[Item, None]:
        """Everything the caller follows, executed once per event for all of them."""
        from gql_pubsub.user_streams import listen_to_user_subscriptions

        return listen_to_user_subscriptions(  # type: ignore[return-value]
            get_user(info), map=to_item, shared=True
        )


schema = strawberry.Schema(query=Query, subscription=Subscription)
