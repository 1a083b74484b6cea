"""Run an ASGI application's lifespan in-process: its startup, then, after, its shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gql_pubsub.core.asgi_types import ASGIApp, Message


@contextlib.asynccontextmanager
async def lifespan(application: ASGIApp, *, timeout: float = 10.0) -> AsyncIterator[None]:
    """Run the application's startup (the broker, the outbox relay) and, after, its shutdown."""
    inbound: asyncio.Queue[Message] = asyncio.Queue()
    outbound: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task: asyncio.Task[None] = asyncio.create_task(
        application(scope, inbound.get, outbound.put)  # type: ignore[arg-type]
    )

    async def step(kind: str) -> None:
        await inbound.put({"type": f"lifespan.{kind}"})
        async with asyncio.timeout(timeout):
            answer = await outbound.get()
        if answer["type"] != f"lifespan.{kind}.complete":
            raise RuntimeError(f"The application's {kind} failed: {answer.get('message', '')}")

    try:
        await step("startup")
        yield
        await step("shutdown")
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
