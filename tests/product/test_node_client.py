"""The real graphql-ws client (Node) resumes across a killed and a restarted server: nothing
is lost, nothing is doubled. Its code is the README's recipe (tests/node/resume_client.mjs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import redis

from ..conftest import NODE_DIR, numsub
from ..helpers import MESSAGE_ADDED
from ..services import free_port, live_server, scaled, to_thread, wait_until


class NodeClient:
    """resume_client.mjs running: each JSON line it prints, as it prints it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(json.loads(line))

    def bodies(self) -> list[str]:
        return [line["data"]["messageAdded"]["body"] for line in list(self.lines) if "data" in line]

    def count(self, key: str) -> int:
        return sum(1 for line in list(self.lines) if key in line)


@contextlib.contextmanager
def node_client(node: str, url: str, token: str, correspondence: Any) -> Iterator[NodeClient]:
    variables = json.dumps({"c": str(correspondence.pk)})
    arguments = ["--url", url, "--token", token, "--query", MESSAGE_ADDED, "--variables", variables]
    with node_script(node, "resume_client.mjs", *arguments) as client:
        yield client


@contextlib.contextmanager
def node_script(node: str, script: str, *arguments: str) -> Iterator[NodeClient]:
    """A Node script of tests/node running, its JSON lines read as it prints them; it stops
    when its stdin closes."""
    process = subprocess.Popen(
        [node, script, *arguments],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,  # it stops when its stdin closes
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = NodeClient(process)
    try:
        yield client
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(scaled(10))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        client._reader.join(scaled(10))  # it ends at the pipe's end of file
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def writer(correspondence: Any, author: Any, bodies: list[str], pace: float) -> Callable[[], None]:
    """Writes the messages from this process (as a worker or a shell would), at ``pace``/s."""
    from example.chat.models import Message

    def write() -> None:
        for body in bodies:
            Message.objects.create(correspondence=correspondence, author=author, body=body)
            time.sleep(1 / pace)  # pacing the load, not synchronising

    return write


async def test_graphql_ws_resumes_across_a_kill_and_a_restart_with_none_lost_or_doubled(
    node: str,
    log_dir: Path,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """500 messages written at 100/s while the server is killed (SIGKILL) and later restarted
    (SIGTERM): the graphql-ws client reconnects each time with its cursor and receives all
    500 once, in order."""
    reader, author = await to_thread(lambda: (make_user("reader"), make_user("author")))
    room = await to_thread(make_correspondence, reader, author)
    token = await to_thread(token_for, reader)
    bodies = [f"message {n}" for n in range(500)]
    port = free_port()
    url = f"ws://127.0.0.1:{port}/graphql/"
    with contextlib.ExitStack() as servers:
        server = servers.enter_context(live_server({}, log_dir=log_dir, port=port))
        with node_client(node, url, token, room) as client:
            await to_thread(wait_until, lambda: client.count("live"), 20, "live")
            writing = asyncio.create_task(to_thread(writer(room, author, bodies, pace=100)))

            async def written(n: int) -> None:
                await to_thread(wait_until, lambda: len(client.bodies()) >= n, 30, f"{n} delivered")

            await written(100)
            server.kill_group()  # kill -9: no close frame, in-flight frames lost
            server.process.wait(10)
            servers.close()
            server = servers.enter_context(live_server({}, log_dir=log_dir, port=port))
            await written(250)
            servers.close()  # SIGTERM: a graceful restart
            server = servers.enter_context(live_server({}, log_dir=log_dir, port=port))
            await writing
            await written(len(bodies))
            await to_thread(
                wait_until, lambda: client.count("connected") >= 3, 10, "three connections"
            )
            got = client.bodies()
        assert client.count("refetch") == 0
        assert client.count("error") == 0, client.lines[-5:]
        assert len(got) == len(bodies), f"{len(got)} received, {len(set(got))} distinct"
        assert got == bodies  # none lost, none doubled, in order


async def test_the_readme_apollo_recipe_goes_on_receiving_through_a_server_restart(
    node: str,
    log_dir: Path,
    redis_client: redis.Redis,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """Apollo Client with GraphQLWsLink (graphql-ws, retrying as the README says) and HttpLink:
    a query over HTTP, then a subscription that keeps receiving after the server restarts (a
    deploy: the connection is refused for a while)."""
    reader, author = await to_thread(lambda: (make_user("reader"), make_user("author")))
    room = await to_thread(make_correspondence, reader, author)
    token = await to_thread(token_for, reader)
    port = free_port()
    http_url, ws_url = f"http://127.0.0.1:{port}/graphql/", f"ws://127.0.0.1:{port}/graphql/"
    variables = json.dumps({"c": str(room.pk)})
    with contextlib.ExitStack() as servers:
        servers.enter_context(live_server({}, log_dir=log_dir, port=port))
        arguments = (ws_url, http_url, token, MESSAGE_ADDED, variables)
        with node_script(node, "apollo_recipe.mjs", *arguments) as client:

            def results() -> list[str]:
                lines = list(client.lines)
                return [
                    line["result"]["messageAdded"]["body"] for line in lines if "result" in line
                ]

            async def receive(body: str) -> None:
                await to_thread(writer(room, author, [body], pace=100))
                await to_thread(wait_until, lambda: body in results(), 20, f"{body!r} received")

            await to_thread(wait_until, lambda: client.count("connected") == 1, 20, "connected")
            await to_thread(
                wait_until,
                lambda: numsub(redis_client, room.channel) == 1,
                20,
                "the subscription is live",
            )
            await receive("before the restart")
            servers.close()  # SIGTERM: the clients' sockets close; then connections are refused
            servers.enter_context(live_server({}, log_dir=log_dir, port=port))
            await to_thread(wait_until, lambda: client.count("connected") == 2, 30, "reconnected")
            await to_thread(
                wait_until,
                lambda: numsub(redis_client, room.channel) == 1,
                20,
                "the subscription is live again",
            )
            await receive("after the restart")
            queried = [line["query"]["me"]["username"] for line in client.lines if "query" in line]
        assert client.count("error") == 0, client.lines[-5:]
    assert queried == [reader.username]
    assert results() == ["before the restart", "after the restart"]
