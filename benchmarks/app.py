"""The benchmark server: the harness's schema on gql_pubsub (`uvicorn benchmarks.app:application`).

subscription messageAdded(room: String!) { id room body sentAt }, fed by gql_pubsub.publish on
channel `room:<room>` (benchmarks/publisher.py). GQL_PUBSUB_BENCH_VARIANT (run.py --variant):
- ``shared`` (default): the stream is declared ``shared=True``; one user for every socket.
- ``distinct``: every socket is a user of its own and the stream is not declared shared (what a
  user gets who does not read the docs): the fields are plain, so it is shared anyway.
- ``viewer``: as ``distinct``, and ``body`` reads the viewer (a resolver that looks at
  ``info.context``): every subscriber's payload is its own.
- ``viewer-field``, ``permission``, ``request``: as ``distinct``, with the plain fields and one
  more (run.py's query selects it, ``EXTRA_FIELD``): a method returning
  ``info.context.user.username``; a field behind a permission class; a method reading
  ``info.context.request``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import strawberry
from strawberry.permission import BasePermission
from strawberry.types import Info

from gql_pubsub import Event, stream
from gql_pubsub.asgi import get_asgi_application

VARIANT = os.environ.get("GQL_PUBSUB_BENCH_VARIANT", "shared")


@strawberry.type
class PlainMessage:
    id: strawberry.ID
    room: str
    body: str
    sent_at: float


@strawberry.type(name="Message")
class ViewerMessage:
    id: strawberry.ID
    room: str
    text: strawberry.Private[str]
    sent_at: float

    @strawberry.field
    def body(self, info: Info[Any, Any]) -> str:
        """The same text, but a resolver that reads who asks: never shared."""
        return self.text if info.context.user.is_authenticated else ""


EXTRA_FIELD = {"viewer-field": "viewer", "permission": "guarded", "request": "path"}
"""The field each variant adds to the harness's selection set."""


class IsAuthenticated(BasePermission):
    message = "Log in to see this."

    def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        return bool(info.context.user.is_authenticated)


@strawberry.type(name="Message")
class RichMessage(PlainMessage):
    @strawberry.field
    def viewer(self, info: Info[Any, Any]) -> str:
        """Who receives it."""
        return str(info.context.user.username)

    @strawberry.field(permission_classes=[IsAuthenticated])
    def guarded(self) -> str:
        """Behind a permission class."""
        return self.room

    @strawberry.field
    def path(self, info: Info[Any, Any]) -> str:
        """What the receiver's request says."""
        return str(info.context.request.path)


Message: Any = {"viewer": ViewerMessage, **dict.fromkeys(EXTRA_FIELD, RichMessage)}.get(
    VARIANT, PlainMessage
)


def to_message(event: Event) -> Message:
    data = event.data
    if VARIANT == "viewer":
        return ViewerMessage(
            id=data["id"], room=data["room"], text=data["body"], sent_at=data["sentAt"]
        )
    return Message(id=data["id"], room=data["room"], body=data["body"], sent_at=data["sentAt"])  # type: ignore[no-any-return]


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def message_added(self, room: str) -> AsyncGenerator[Message, None]:
        shared = VARIANT == "shared"
        return stream(f"room:{room}", map=to_message, shared=shared)  # type: ignore[return-value]


BENCH_USER = SimpleNamespace(pk=1, username="bench", is_authenticated=True, is_active=True)


_users = itertools.count(2)


async def bench_user(token: str) -> Any:
    """Any token is the benchmark's one user (the harness sends {"token": "bench"}), or with
    the ``distinct`` and ``viewer`` variants a new user per socket."""
    if VARIANT == "shared":
        return BENCH_USER
    pk = next(_users)
    return SimpleNamespace(pk=pk, username=f"u{pk}", is_authenticated=True, is_active=True)


schema = strawberry.Schema(query=Query, subscription=Subscription)
application = get_asgi_application(schema)

if os.environ.get("GQL_PUBSUB_BENCH_GC_LOG"):
    import gc
    import sys
    import time

    _gc_start = [0.0]

    def _gc_log(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _gc_start[0] = time.perf_counter()
        else:
            took = (time.perf_counter() - _gc_start[0]) * 1000
            if took > 2:
                print(f"gc gen{info['generation']} {took:.1f} ms", file=sys.stderr, flush=True)

    gc.callbacks.append(_gc_log)
