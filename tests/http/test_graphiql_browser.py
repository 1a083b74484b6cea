"""GraphiQL works offline, in a real headless Chromium against the example's live server: the
page renders with no request leaving 127.0.0.1 (its assets come from the package), a query runs
with the token from the headers pane, and a subscription receives a message another user sends.

Needs Debian's ``chromium`` (``apt-get install chromium``); without it the test is skipped,
except in CI, where it fails."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from typing import IO, Any

import pytest
import redis

from ..conftest import NODE_DIR, wait_numsub
from ..helpers import send_message
from ..services import LiveServer, scaled, to_thread


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the GraphiQL test")
        pytest.skip("No Chromium: apt-get install chromium (then re-run) to test GraphiQL")
    return binary


def read_line(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    assert line, "the browser script ended early"
    step: dict[str, Any] = json.loads(line)
    return step


@pytest.fixture
def pair(make_user: Any, make_correspondence: Any) -> tuple[Any, Any, Any]:
    """Dana and Eve, and their correspondence."""
    dana, eve = make_user("dana"), make_user("eve")
    return dana, eve, make_correspondence(dana, eve)


async def test_graphiql_runs_offline_a_query_and_a_subscription_in_a_real_browser(
    node: str,
    chromium: str,
    server: LiveServer,
    redis_client: redis.Redis,
    pair: tuple[Any, Any, Any],
    token_for: Any,
) -> None:
    dana, eve, room = pair
    subscription = f'subscription {{ messageAdded(correspondenceId: "{room.pk}") {{ body }} }}'
    process = await to_thread(
        subprocess.Popen,
        [
            node, "graphiql_browser.mjs", chromium, f"{server.http_url}/graphql/",
            token_for(dana), "{ me { username } }", subscription, "from eve, seen in GraphiQL",
        ],
        cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        steps = [await to_thread(read_line, process.stdout) for _ in range(3)]
        assert [s["step"] for s in steps] == ["rendered", "queried", "subscribed"], steps
        assert json.loads(steps[1]["result"]) == {"data": {"me": {"username": dana.username}}}
        await to_thread(wait_numsub, redis_client, room.channel, 1)
        await send_message(server, token_for(eve), room.pk, "from eve, seen in GraphiQL")
        received, done = [await to_thread(read_line, process.stdout) for _ in range(2)]
    finally:
        await asyncio.wait_for(to_thread(process.wait), scaled(60))
        process.stdout.close()
    assert received["step"] == "received", received
    assert json.loads(received["result"])["data"]["messageAdded"]["body"] == (
        "from eve, seen in GraphiQL"
    )
    assert done == {"step": "done", "offsite": [], "problems": []}
