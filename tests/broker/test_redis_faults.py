"""Real Redis faults: a killed, restarted, paused or unreachable Redis, and a killed worker.

Every test that disturbs Redis does so to a redis-server of its own (``RedisServer``), never to
the suite's shared one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gql_pubsub import Broker, Event, EventKind, Subscriber
from gql_pubsub.server.session import BROKER_UNREACHABLE

from ..gqlws import Closed, GraphQLWS
from ..helpers import MESSAGE_ADDED, connected, send_message, server_connections
from ..services import ROOT, RedisServer, free_port, live_server, scaled, to_thread, wait_until

EXAMPLE_PREFIX = "gql_pubsub:0:"
"""The example's CHANNEL_PREFIX on a ``RedisServer`` (its URL names database 0)."""

HEALTH_CHECK_INTERVAL = scaled(0.5)
"""The broker's heartbeat in the health-check tests (scaled: a silent read times out after 2x)."""

PAUSE_MS = int(4 * HEALTH_CHECK_INTERVAL * 1000)
"""CLIENT PAUSE of the health-check test: twice the read timeout (2 x the interval)."""


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill clients of, pause, stop and start again."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def admin(own_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client of ``own_redis`` for CLIENT LIST / KILL / PAUSE and PUBSUB NUMSUB."""
    client = redis.Redis.from_url(own_redis.url, socket_timeout=scaled(10))
    yield client
    client.close()


def subscribe_connections(admin: redis.Redis, pid: int) -> list[dict[str, Any]]:
    """The connections named ``gql_pubsub-<pid>-subscribe`` (one process's SUBSCRIBE link)."""
    name = f"gql_pubsub-{pid}-subscribe"
    return [c for c in admin.client_list() if c.get("name") == name]


def numsub(admin: redis.Redis, channel: str) -> int:
    """PUBSUB NUMSUB of a (prefixed) Redis channel."""
    return int(dict(admin.pubsub_numsub(channel)).get(channel.encode(), 0))


async def wait_for_subscription(
    admin: redis.Redis,
    pid: int,
    channel: str,
    *,
    not_id: str | None = None,
    timeout: float = 10,
) -> dict[str, Any]:
    """Wait until process ``pid`` holds one subscription connection (other than ``not_id``),
    subscribed to something, and ``channel`` has exactly one subscriber; return it."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        try:
            connections = subscribe_connections(admin, pid)
            subscribers = numsub(admin, channel)
        except redis.ConnectionError:  # a restarted Redis: the admin reconnects next time
            return False
        found[:] = connections
        return (
            len(connections) == 1
            and connections[0]["id"] != not_id
            and int(connections[0].get("sub", 0)) >= 1
            and subscribers == 1
        )

    await to_thread(
        wait_until,
        ready,
        timeout,
        f"one subscription connection of {pid} (not id {not_id}) subscribed to {channel}",
    )
    return found[0]


async def holds_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Assert ``predicate`` stays true, checked every 0.1 s, for ``seconds`` (an observation
    window, like ``expect_silence``: it ends on its deadline, it synchronises nothing)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await to_thread(predicate), what
        await asyncio.sleep(0.1)


async def receive(subscriber: Subscriber, timeout: float = 5) -> Event:
    return await asyncio.wait_for(anext(subscriber), scaled(timeout))


def custom(n: int) -> Event:
    return Event(kind=EventKind.CUSTOM, model=None, pk=None, data={"n": n})


# -- 1. the subscription connection reconnects and resubscribes --------------------------------


@pytest.mark.parametrize("fault", ["client-kill", "redis-restart"])
async def test_the_subscription_connection_reconnects_and_resubscribes_after_a_fault(
    fault: str, own_redis: RedisServer, admin: redis.Redis, log_dir: Path, pair: Any
) -> None:
    """After CLIENT KILL of its SUBSCRIBE link, or a Redis restart, the server resubscribes."""
    alice_token, bob_token, correspondence = pair
    channel = EXAMPLE_PREFIX + correspondence.channel
    with live_server({"REDIS_URL": own_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token) as bob:
            await bob.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
            before = await wait_for_subscription(admin, server.pid, channel)
            if fault == "client-kill":
                admin.execute_command("CLIENT", "KILL", "ID", before["id"])
                not_id: str | None = before["id"]
            else:
                await to_thread(own_redis.stop)
                await to_thread(own_redis.start)
                not_id = None  # a new redis-server numbers its clients afresh: any link is new
            await wait_for_subscription(admin, server.pid, channel, not_id=not_id)

            await send_message(server, alice_token, correspondence.pk, f"after the {fault}")
            payload = await bob.next_payload("m", timeout=10)
            assert payload["data"]["messageAdded"]["body"] == f"after the {fault}"
            await bob.expect_silence(0.3)  # once
        log = server.log.read_text()
    assert "Reconnected to Redis" in log, log
    assert "Traceback" not in log, log


# -- 2. the health check replaces a silent connection ------------------------------------------


@pytest.fixture
async def checked_broker(own_redis: RedisServer) -> AsyncIterator[Broker]:
    """A Redis broker on this test's loop, on ``own_redis``, with a 0.5 s health check."""
    broker = Broker(
        own_redis.url,
        prefix=f"faults-{uuid.uuid4().hex[:8]}:",
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )
    await broker.start()
    yield broker
    await broker.stop()


async def test_a_healthy_subscription_connection_is_pinged_and_kept(
    checked_broker: Broker, admin: redis.Redis
) -> None:
    """Control: without a stall the heartbeat PINGs and the same connection is kept for 2.5 s."""
    channel = checked_broker.prefix + "room"
    async with checked_broker.subscribe("room") as subscriber:
        first = await wait_for_subscription(admin, os.getpid(), channel)

        def pinged() -> bool:
            connections = subscribe_connections(admin, os.getpid())
            return [(c["id"], c["cmd"]) for c in connections] == [(first["id"], "ping")]

        await to_thread(wait_until, pinged, 4 * HEALTH_CHECK_INTERVAL, "a heartbeat PING")
        window = PAUSE_MS / 1000 + 1  # as long as the other test's pause and its slack
        await holds_for(
            lambda: [c["id"] for c in subscribe_connections(admin, os.getpid())] == [first["id"]],
            window,
            f"the subscription connection {first['id']} is kept",
        )
        await checked_broker.publish(["room"], custom(1))
        assert (await receive(subscriber)).data == {"n": 1}


async def test_a_subscription_connection_that_stops_answering_is_replaced(
    checked_broker: Broker, admin: redis.Redis
) -> None:
    """A Redis that answers no PING for 2 s (4 x the interval) gets a new subscription link."""
    channel = checked_broker.prefix + "room"
    async with checked_broker.subscribe("room") as subscriber:
        before = await wait_for_subscription(admin, os.getpid(), channel)
        admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        # The wait's first CLIENT LIST is answered when the pause ends; a replacement begun
        # during the pause completes right after it.
        await wait_for_subscription(
            admin, os.getpid(), channel, not_id=before["id"], timeout=PAUSE_MS / 1000 + 3
        )
        await checked_broker.publish(["room"], custom(2))
        assert (await receive(subscriber)).data == {"n": 2}


# -- 3. the ASGI startup fails clearly when Redis is unreachable -------------------------------


@pytest.mark.parametrize(
    ("credentials", "shown"), [("", ""), (":s3cret-pw@", ":***@")], ids=["plain", "password"]
)
def test_the_server_exits_saying_which_redis_it_cannot_reach_and_what_to_do(
    credentials: str, shown: str
) -> None:
    """REDIS_URL on a port where nothing listens: uvicorn exits non-zero naming the URL."""
    port = free_port()  # bound and released: nothing listens there
    url = f"redis://{credentials}127.0.0.1:{port}/0"
    command = [
        sys.executable, "-m", "uvicorn", "example.asgi:application",
        "--host", "127.0.0.1", "--port", str(free_port()),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=scaled(30),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    safe_url = f"redis://{shown}127.0.0.1:{port}/0"
    message = f"Cannot connect to Redis at {safe_url}"
    advice = "Start Redis or fix GQL_PUBSUB['BROKER_URL']."
    assert message in output and advice in output, output
    assert "s3cret-pw" not in output, output
    assert "Traceback" not in output, output  # the message says it all
    assert "refused.." not in output, output
    # uvicorn's own last words carry the message, so the tail of a log says what to do.
    lines = output.strip().splitlines()
    assert lines[-1].endswith("Application startup failed. Exiting."), output
    assert message in lines[-2] and advice in lines[-2], output


# -- 4. a worker crash releases its Redis connections ------------------------------------------


async def test_a_killed_worker_leaves_no_connection_or_subscription_behind(
    own_redis: RedisServer, admin: redis.Redis, log_dir: Path, pair: Any
) -> None:
    """SIGKILL of a one-worker server: its links and SUBSCRIBE vanish; a new server serves."""
    alice_token, bob_token, correspondence = pair
    channel = EXAMPLE_PREFIX + correspondence.channel
    env = {"REDIS_URL": own_redis.url}
    with live_server(env, log_dir=log_dir) as doomed:
        pid = doomed.pid
        async with await connected(doomed, bob_token) as bob:
            await bob.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
            subscription = await wait_for_subscription(admin, pid, channel)
            held = {c["id"]: c["name"] for c in server_connections(admin, pid)}
            assert held[subscription["id"]] == f"gql_pubsub-{pid}-subscribe", held
            os.kill(pid, signal.SIGKILL)
            await to_thread(doomed.process.wait, scaled(10))
            assert doomed.process.returncode == -signal.SIGKILL
            with pytest.raises(Closed):
                await bob.receive(timeout=5)

        def released() -> bool:
            return not server_connections(admin, pid) and numsub(admin, channel) == 0

        await to_thread(
            wait_until,
            released,
            5,
            f"no connection of {pid} and no subscriber of {channel}",
        )

    with live_server(env, log_dir=log_dir) as fresh:
        async with await connected(fresh, bob_token) as bob:
            await bob.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
            await wait_for_subscription(admin, fresh.pid, channel)
            await send_message(fresh, alice_token, correspondence.pk, "after the crash")
            payload = await bob.next_payload("m", timeout=10)
            assert payload["data"]["messageAdded"]["body"] == "after the crash"


# -- 5. while Redis stays down, new sockets and subscriptions get a clear answer -----------------

OUTAGE_ANSWER = scaled(20)
"""The longest a client waits for the answer while Redis is down: the broker's 10 s wait for
SUBSCRIBE's confirmation, and margin."""


async def test_while_redis_is_down_new_sockets_and_subscriptions_are_told_to_retry_in_time(
    own_redis: RedisServer, log_dir: Path, pair: Any
) -> None:
    """A socket that opens during an outage is closed with 1013 (try again later: clients
    retry), a subscription asked for on an open socket gets an ``error`` and the socket stays
    open, both within a bound; once Redis is back, both work, and no traceback was logged."""
    alice_token, bob_token, correspondence = pair
    variables = {"c": str(correspondence.pk)}
    with live_server({"REDIS_URL": own_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token, answer_pings=True) as bob:
            await to_thread(own_redis.stop)

            await bob.subscribe("m", MESSAGE_ADDED, variables)
            error = await bob.receive(OUTAGE_ANSWER, skip_pings=True)
            assert error["type"] == "error" and error["id"] == "m", error
            assert error["payload"] == [{"message": BROKER_UNREACHABLE}], error

            late = await GraphQLWS.connect(server.ws_url)
            await late.send({"type": "connection_init", "payload": {"token": alice_token}})
            closed = await late.expect_close(OUTAGE_ANSWER)
            assert (closed.code, closed.reason) == (1013, BROKER_UNREACHABLE)

            await to_thread(own_redis.start)
            await bob.subscribe("m2", MESSAGE_ADDED, variables)
            async with await connected(server, alice_token) as alice:  # a new socket: acked
                await wait_for_subscription_count(own_redis, correspondence.channel)
                await send_message(server, alice_token, correspondence.pk, "after the outage")
                payload = await bob.next_payload("m2", timeout=10)
                assert payload["data"]["messageAdded"]["body"] == "after the outage"
                await alice.close()
        log = server.log.read_text()
    assert "Traceback" not in log, log


async def wait_for_subscription_count(own_redis: RedisServer, channel: str) -> None:
    """Until the server's subscription to ``channel`` is live on the restarted Redis."""
    client = redis.Redis.from_url(own_redis.url, socket_timeout=scaled(10))
    try:
        await to_thread(
            wait_until,
            lambda: numsub(client, EXAMPLE_PREFIX + channel) >= 1,
            scaled(15),
            f"the server to subscribe to {channel} again",
        )
    finally:
        client.close()
