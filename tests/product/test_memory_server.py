"""The example with nothing installed: the in-memory broker in one uvicorn process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import MESSAGE_ADDED, connected, data_of, send_message
from ..services import LiveServer, live_server, to_thread, wait_until


@pytest.fixture(scope="module")
def memory_server(log_dir: Path) -> Iterator[LiveServer]:
    with live_server({"REDIS_URL": ""}, log_dir=log_dir) as live:
        yield live


async def test_without_redis_the_example_delivers_within_its_process(
    memory_server: LiveServer,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """No REDIS_URL: the server says it uses the in-memory broker, and subscriptions work."""
    from asgiref.sync import sync_to_async

    alice, bob = await sync_to_async(lambda: (make_user("alice"), make_user("bob")))()
    correspondence = await sync_to_async(make_correspondence)(alice, bob)
    async with await connected(memory_server, token_for(bob)) as client:
        await client.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
        # No Redis to ask whether the subscription is live: resend until the first one arrives.
        first = None
        for attempt in range(50):
            await send_message(memory_server, token_for(alice), correspondence.pk, f"try {attempt}")
            try:
                first = await client.next_payload("m", timeout=0.2)
                break
            except TimeoutError:
                continue
        assert first is not None, "no message reached the subscriber"
        marker = await send_message(memory_server, token_for(alice), correspondence.pk, "marker")
        # Before the marker come only the later tries (at most one per attempt made).
        for _ in range(attempt + 1):
            payload = await client.next_payload("m")
            if payload["data"]["messageAdded"]["id"] == marker["id"]:
                break
            assert payload["data"]["messageAdded"]["body"].startswith("try "), payload
        else:
            raise AssertionError(f"the marker did not follow the {attempt + 1} tries")
    assert (await data_of(memory_server, "{ me { id } }")) == {"me": None}
    await to_thread(
        wait_until, lambda: "in-memory broker" in memory_server.log.read_text(), 5, "the log line"
    )


async def test_without_redis_a_client_resumes_from_its_cursor_within_the_process(
    memory_server: LiveServer,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """The in-memory broker keeps the same history: the live marker is the subscription's ack,
    and a client back with its cursor gets what it missed, once, in order."""
    from asgiref.sync import sync_to_async

    from ..broker.test_resume import live_cursor, resumable

    alice, bob = await sync_to_async(lambda: (make_user("alice"), make_user("bob")))()
    correspondence = await sync_to_async(make_correspondence)(alice, bob)
    async with await connected(memory_server, token_for(bob)) as client:
        await resumable(client, correspondence, None)
        await live_cursor(client)  # live: nothing sent from now on can be missed
        await send_message(memory_server, token_for(alice), correspondence.pk, "one")
        cursor = (await client.next_payload("m"))["extensions"]["cursor"]
    for body in ("two", "three"):
        await send_message(memory_server, token_for(alice), correspondence.pk, body)
    async with await connected(memory_server, token_for(bob)) as client:
        await resumable(client, correspondence, cursor)
        assert await live_cursor(client) == cursor
        missed = [(await client.next_payload("m"))["data"]["messageAdded"]["body"] for _ in "ab"]
        assert missed == ["two", "three"]
        await client.expect_silence(0.3)


async def test_the_in_process_history_keeps_each_event_at_about_its_size() -> None:
    """1,000 events of ~100 bytes in a channel's history take under 0.5 KB each (orjson's
    bytes carry a 4 KB buffer each: kept as they come, 1,000 events took 4 MB)."""
    import tracemalloc

    from gql_pubsub.broker.broker import Broker
    from gql_pubsub.core.events import Event, EventKind

    broker = Broker("memory://", history_length=1000)
    await broker.start()
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1000):
            await broker.publish(["room"], Event(EventKind.CUSTOM, None, n, {"body": "x" * 60}))
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    finally:
        await broker.stop()
    assert kept < 1000 * 500, f"{kept / 1000:.0f} bytes an event"
