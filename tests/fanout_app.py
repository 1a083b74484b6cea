"""A schema that counts its executions, served in-process by a real uvicorn for test_fanout."""

from __future__ import annotations

import asyncio
import collections
import enum
import json
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.permission import BasePermission
from strawberry.types import Info

from gql_pubsub import Event, stream
from gql_pubsub.execution.context import get_user
from gql_pubsub.execution.viewers import VIEWER_DEPENDENT, VIEWER_INDEPENDENT

executions: collections.Counter[str] = collections.Counter()
"""How many times each event's selection set ran, by the event's ``n``."""

labelled: collections.Counter[str] = collections.Counter()
"""How many times each event's ``label`` (declared viewer-independent) was resolved."""

tagged: collections.Counter[str] = collections.Counter()
"""How many times each event's ``tag`` (declared viewer-dependent) was resolved."""


class NotDenied(BasePermission):
    """Refuses users whose name starts with "deny"."""

    message = "Users named deny… may not see this."

    def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        return not get_user(info).get_username().startswith("deny")


@strawberry.enum
class Mood(enum.Enum):
    GLAD = "glad"
    WARY = "wary"


resolved: collections.Counter[str] = collections.Counter()
"""How many times ``counted`` was resolved, by event and user."""


@strawberry.type
class Box:
    n: str

    @strawberry.field
    def seen_by(self, info: Info[Any, Any]) -> str:
        """A field that reads the viewer, under a plain one."""
        return f"{self.n} seen by {get_user(info).get_username()}"


@strawberry.type
class Item:
    n: str
    size: int
    box: Box

    @strawberry.field(metadata=VIEWER_DEPENDENT)
    def tag(self) -> str:
        """Reads nothing of the viewer, but says it must never be shared."""
        tagged[self.n] += 1
        return "t"

    @strawberry.field(metadata=VIEWER_INDEPENDENT)
    def label(self) -> str:
        """A resolver that says it never reads who asks: shared."""
        labelled[self.n] += 1
        return f"item {self.n}"

    @strawberry.field
    async def later(self, info: Info[Any, Any]) -> str:
        """An async resolver that reads the viewer."""
        await asyncio.sleep(0)
        return f"later for {get_user(info).get_username()}"

    @strawberry.field(metadata=VIEWER_INDEPENDENT)
    def checked(self) -> str | None:
        """Shared, and fails for events whose ``n`` ends with "-bad"."""
        if self.n.endswith("-bad"):
            raise ValueError(f"{self.n} is bad")
        return "ok"

    @strawberry.field
    def me(self, info: Info[Any, Any]) -> Box:
        """An object that depends on the viewer, with what it selects."""
        return Box(n=f"{self.n} for {get_user(info).get_username()}")

    @strawberry.field
    def secret(self, info: Info[Any, Any]) -> str | None:
        """Refused to users whose name starts with "deny": an error, and null, for them."""
        name = get_user(info).get_username()
        if name.startswith("deny"):
            raise PermissionError(f"{name} may not read this.")
        return f"for {name}"

    @strawberry.field
    def strict_secret(self, info: Info[Any, Any]) -> str:
        """As ``secret``, but non-null: its error nulls the whole item."""
        name = get_user(info).get_username()
        if name.startswith("deny"):
            raise PermissionError(f"{name} may not read this.")
        return f"for {name}"

    @strawberry.field
    def executions(self) -> int:
        executions[self.n] += 1
        return executions[self.n]

    @strawberry.field
    def viewer(self, info: Info[Any, Any]) -> str | None:
        user = get_user(info)
        return user.get_username() if user.is_authenticated else None

    @strawberry.field(permission_classes=[NotDenied])
    def guarded(self, info: Info[Any, Any]) -> str | None:
        """Behind a permission class (null and its error for users named deny…)."""
        return f"guarded for {get_user(info).get_username()}"

    @strawberry.field(permission_classes=[NotDenied])
    def strict_guarded(self) -> str:
        """Non-null behind a permission class: the denial nulls the whole item."""
        return "strictly guarded"

    @strawberry.field
    def mood(self, info: Info[Any, Any]) -> Mood:
        """An enum that depends on the viewer."""
        return Mood.WARY if get_user(info).get_username().startswith("deny") else Mood.GLAD

    @strawberry.field
    def whereabouts(self, root: Item, info: Info[Any, Any]) -> str:
        """The request's path, the field's name and path, and the root parameter."""
        path = info.path
        return f"{root.n} {info.context.request.path} {info.field_name} {path.prev.key}.{path.key}"

    @strawberry.field
    def count(self, info: Info[Any, Any]) -> int:
        """An Int that is not one for users named deny…: graphql-core's serialization error."""
        name = get_user(info).get_username()
        return "many" if name.startswith("deny") else len(name)  # type: ignore[return-value]

    @strawberry.field
    def awaited(self, info: Info[Any, Any]) -> str:
        """A plain function that returns a coroutine (graphql-core awaits it)."""

        async def later() -> str:
            return f"awaited for {get_user(info).get_username()}"

        return later()  # type: ignore[return-value]

    @strawberry.field
    def counted(self, info: Info[Any, Any]) -> str:
        """Counts its calls per event and user (``resolved``)."""
        name = get_user(info).get_username()
        resolved[f"{self.n} {name}"] += 1
        return name

    @strawberry.field
    def padding(self) -> str:
        return "x" * self.size


def to_item(event: Event) -> Item:
    n = str(event.data["n"])
    return Item(n=n, size=int(event.data.get("size", 0)), box=Box(n=n))


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


held: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}
"""``held_items``'s channels: set when its resolver has checked access, and to let it return."""


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def held_items(self, channel: str) -> AsyncGenerator[Item, None]:
        """``items``, whose resolver waits, its access checked, until the test lets it go on."""
        checked, go_on = held.setdefault(channel, (asyncio.Event(), asyncio.Event()))
        checked.set()
        await go_on.wait()
        return stream(channel, map=to_item)  # type: ignore[return-value]

    @strawberry.subscription
    async def items(self, channel: str, shared: bool = False) -> AsyncGenerator[Item, None]:
        if channel.startswith("forbidden"):
            raise PermissionError("You may not read this channel.")
        return stream(channel, map=to_item, shared=shared)  # type: ignore[return-value]

    @strawberry.subscription
    async def followed(self, info: Info[Any, Any]) -> AsyncGenerator[Item, None]:
        """Everything the caller follows, executed once per event for all of them."""
        from gql_pubsub.streams.user_streams import listen_to_user_subscriptions

        return listen_to_user_subscriptions(  # type: ignore[return-value]
            get_user(info), map=to_item, shared=True
        )

    @strawberry.subscription
    async def followed_own(self, info: Info[Any, Any]) -> AsyncGenerator[Item, None]:
        """Everything the caller follows, not declared shared."""
        from gql_pubsub.streams.user_streams import listen_to_user_subscriptions

        return listen_to_user_subscriptions(get_user(info), map=to_item)  # type: ignore[return-value]


schema = strawberry.Schema(query=Query, subscription=Subscription)
