"""After abuse, nothing is left behind: counted inside a server running in its own thread."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gql_pubsub.transports.websocket.protocol import CloseCode

from ..gqlws import Closed, GraphQLWS
from ..services import free_port, scaled, wait_until
from .test_fuzz import CLIENT_CAUSED, frames, play_frames


class ThreadedServer:
    """uvicorn with the counting schema on its own event loop, in a thread, for inspection."""

    def __init__(self) -> None:
        from gql_pubsub.asgi import get_asgi_application

        from .. import fanout_app

        self.port = free_port()
        self.app = get_asgi_application(fanout_app.schema)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql/"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.server.servers[0].get_loop()

    def tasks(self) -> set[asyncio.Task[Any]]:
        """The server loop's tasks, but for the one that takes this count."""

        async def tasks() -> set[asyncio.Task[Any]]:
            return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

        return asyncio.run_coroutine_threadsafe(tasks(), self.loop).result(10)

    def inspect(self) -> dict[str, Any]:
        """Counts taken on the server's own loop."""

        async def counts() -> dict[str, Any]:
            from gql_pubsub import get_broker

            stats = self.app.websocket.stats()
            return {
                "broker_subscribers": get_broker().subscriber_count(),
                "groups": stats.groups,
                "connections": stats.connections,
                "users": stats.users,
                "operations": stats.operations,
            }

        return asyncio.run_coroutine_threadsafe(counts(), self.loop).result(10)


@pytest.fixture(scope="module")
def threaded() -> Iterator[ThreadedServer]:
    server = ThreadedServer()
    server.thread.start()
    wait_until(lambda: server.server.started, 30, "threaded uvicorn")
    yield server
    # Let the clients' last sockets finish closing: a transport still open when the loop
    # closes is a leak (ResourceWarning), whoever left it.
    wait_until(lambda: not server.server.server_state.connections, 10, "the sockets to close")
    server.server.should_exit = True
    server.thread.join(scaled(20))


@pytest.fixture(scope="module")
def fuzz_token() -> str:
    from django.contrib.auth import get_user_model

    from gql_pubsub.auth.tokens import create_jwt

    return create_jwt(get_user_model().objects.create_user(username=f"robust-{uuid.uuid4().hex}"))


def test_fuzzing_leaves_no_task_group_subscriber_or_connection_behind(
    threaded: ThreadedServer, fuzz_token: str
) -> None:
    """Counted on the server's loop before and after 200 random sequences."""
    before, tasks_before = threaded.inspect(), threaded.tasks()
    query = 'subscription { items(channel: "fuzzed") { n } }'
    valid = json.dumps({"id": "s", "type": "subscribe", "payload": {"query": query}})

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        init=st.booleans(),
        sent=st.lists(st.one_of(frames(0), st.just(valid)), min_size=1, max_size=10),
    )
    def play(init: bool, sent: list[str | bytes]) -> None:
        code = asyncio.run(play_frames(threaded.ws_url, fuzz_token, init, sent))
        assert code in (None, 1006) or code in CLIENT_CAUSED  # None: it answered the last ping

    play()

    def left_behind() -> list[str]:
        return sorted(f"{t.get_name()}: {t.get_coro()!r}" for t in threaded.tasks() - tasks_before)

    wait_until(lambda: not left_behind(), 10, lambda: f"the tasks to end: {left_behind()}")
    wait_until(
        lambda: threaded.inspect() == before,
        10,
        lambda: f"the counts to return to {before} (now {threaded.inspect()})",
    )


def test_an_internal_error_closes_with_4500_and_no_traceback(
    threaded: ThreadedServer, fuzz_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault inside the server (a hook that raises) closes with 4500 and a plain reason."""
    from gql_pubsub.server.hooks import Hooks

    class Broken(Hooks):
        async def on_subscribe(self, context: Any, operation: Any) -> None:
            raise RuntimeError("secret internal detail")

    monkeypatch.setattr(threaded.app.hub, "hooks", Broken())

    async def scenario() -> Closed:
        async with await GraphQLWS.connect(threaded.ws_url) as client:
            await client.init({"token": fuzz_token})
            await client.subscribe("1", 'subscription { items(channel: "x") { n } }')
            return await client.expect_close()

    closed = asyncio.run(scenario())
    assert closed.code == CloseCode.INTERNAL_SERVER_ERROR
    assert closed.reason == "Internal server error"
