"""The benchmark server: the harness's schema on gql_pubsub (`uvicorn benchmarks.app:application`).

subscription messageAdded(room: String!) { id room body sentAt }, fed by gql_pubsub.publish on
channel `room:<room>` (benchmarks/publisher.py), every subscriber sharing one execution per event.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import strawberry

from gql_pubsub import Event, stream
from gql_pubsub.asgi import get_asgi_application


@strawberry.type
class Message:
    id: strawberry.ID
    room: str
    body: str
    sent_at: float


def to_message(event: Event) -> Message:
    data = event.data
    return Message(id=data["id"], room=data["room"], body=data["body"], sent_at=data["sentAt"])


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def message_added(self, room: str) -> AsyncGenerator[Message, None]:
        return stream(f"room:{room}", map=to_message, shared=True)  # type: ignore[return-value]


BENCH_USER = SimpleNamespace(pk=1, username="bench", is_authenticated=True, is_active=True)


async def bench_user(token: str) -> Any:
    """Any token is the benchmark's one user (the harness sends {"token": "bench"})."""
    return BENCH_USER


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
