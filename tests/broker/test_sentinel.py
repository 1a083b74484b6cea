"""Redis Sentinel: the broker finds its master through Sentinel, and survives a failover."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gql_pubsub.broker.backends.redis.clients import SentinelURL

from ..helpers import (
    MESSAGE_ADDED,
    connected,
    each_gets_its_room,
    paced_writes,
    send_message,
    sockets_in_rooms,
)
from ..services import SentinelRedis, live_server, scaled, to_thread, wait_until


@pytest.fixture
def sentinel_redis() -> Iterator[SentinelRedis]:
    with SentinelRedis() as setup:
        yield setup


def test_a_sentinel_url_names_its_sentinels_service_database_and_passwords() -> None:
    named = SentinelURL.parse(
        "redis+sentinel://:s3cret@10.0.0.1:26379,sentinel-2:26380/mymaster/2?sentinel_password=x"
    )
    assert named.sentinels == [("10.0.0.1", 26379), ("sentinel-2", 26380)]
    assert (named.service, named.db, named.password, named.sentinel_password) == (
        "mymaster",
        2,
        "s3cret",
        "x",
    )
    for wrong in (
        "redis+sentinel://host:26379",
        "redis+sentinel:///mymaster",
        "redis+sentinel://h/m",
    ):
        with pytest.raises(ValueError, match=r"redis\+sentinel://\[\[user\]:password@\]host:port"):
            SentinelURL.parse(wrong)


async def _numsub(port: int, channel: str) -> int:
    client = redis.Redis(port=port)
    try:
        return int(dict(await to_thread(client.pubsub_numsub, channel)).get(channel.encode(), 0))
    except redis.ConnectionError:
        return 0
    finally:
        client.close()


async def test_a_server_finds_the_master_through_sentinel_and_delivers_over_it(
    sentinel_redis: SentinelRedis, log_dir: Path, pair: Any
) -> None:
    alice_token, bob_token, correspondence = pair
    channel = f"gql_pubsub:0:{correspondence.channel}"
    with live_server({"REDIS_URL": sentinel_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token) as bob:
            await bob.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
            master = sentinel_redis.master.port
            await to_thread(
                wait_until,
                lambda: asyncio.run(_numsub(master, channel)) == 1,
                10,
                "the server's SUBSCRIBE on the master",
            )
            await send_message(server, alice_token, correspondence.pk, "through sentinel")
            payload = await bob.next_payload("m")
    assert payload["data"]["messageAdded"]["body"] == "through sentinel"


async def test_a_master_failover_under_steady_writes_loses_and_repeats_nothing(
    sentinel_redis: SentinelRedis,
    log_dir: Path,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """20 sockets in 2 rooms, sendMessage at 20/s for 8 s; the master is killed 2 s in and
    Sentinel promotes its replica: every mutation succeeds, and every socket receives every
    message of its room once, in order."""
    per_room, rate, seconds = 10, 20, 8
    writer, reader = await to_thread(lambda: (make_user("w"), make_user("r")))
    rooms = [await to_thread(make_correspondence, writer, reader) for _ in range(2)]
    writer_token, reader_token = await to_thread(lambda: (token_for(writer), token_for(reader)))
    first_master = sentinel_redis.master.port
    with live_server({"REDIS_URL": sentinel_redis.url}, log_dir=log_dir) as server:
        sockets = await sockets_in_rooms(server, writer_token, reader_token, rooms, per_room)
        try:
            kill = {2 * rate: sentinel_redis.master.stop}  # SIGKILL: the replica takes over
            bodies = await paced_writes(
                server, writer_token, rooms, rate=rate, seconds=seconds, at=kill
            )
            assert await to_thread(sentinel_redis.master_port) != first_master
            await each_gets_its_room(server, sockets, bodies, timeout=scaled(30))
            await sockets[0].expect_silence(0.5)
        finally:
            await asyncio.gather(*(client.close() for client in sockets))
        log = server.log.read_text()
    assert "Traceback" not in log, log


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://sentinel-1:26379", "Incomplete Sentinel URL"),
        ("redis+sentinel://sentinel-1/mymaster", "needs host:port"),
        ("redis+cluster://node-1", "needs host:port"),
        ("redis+cluster://node-1:7000/1", "only database 0"),
        ("redis+cluster://node-1:7000?ssl_ca_certs=/ca.pem", "TLS options need rediss+cluster"),
        ("redis+cluster2://node-1:7000", "Unsupported broker URL scheme 'redis+cluster2'"),
    ],
)
def test_a_broker_url_that_cannot_work_is_a_system_check_error_that_says_why(
    url: str, says: str
) -> None:
    from django.conf import settings
    from django.core.checks import run_checks
    from django.test import override_settings

    with override_settings(GQL_PUBSUB={**settings.GQL_PUBSUB, "BROKER_URL": url}):
        errors = [m for m in run_checks() if m.id == "gql_pubsub.E006"]
    assert len(errors) == 1 and says in errors[0].msg, errors
    examples = (
        "redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0",
        "redis+cluster://redis-1:6379,redis-2:6379",
        "PREFIX",
        "redis://localhost:6379/0",
    )
    assert any(example in errors[0].msg for example in examples), errors[0].msg


async def test_a_process_broker_on_sentinel_publishes_receives_and_closes_every_connection(
    sentinel_redis: SentinelRedis,
) -> None:
    """In this process: subscribe, publish from a thread and from the loop, then stop and let
    the broker go; the master's and Sentinel's connections are all closed (an unclosed socket
    is an error in this suite)."""
    from gql_pubsub.broker.broker import Broker
    from gql_pubsub.core.events import Event, EventKind

    broker = Broker(sentinel_redis.url)
    await broker.start()
    try:
        async with broker.subscribe("room") as subscriber:
            await to_thread(broker.publish_sync, ["room"], Event(EventKind.CUSTOM, None, 1, {}))
            await broker.publish(["room"], Event(EventKind.CUSTOM, None, 2, {}))
            got = [await asyncio.wait_for(anext(subscriber), scaled(5)) for _ in range(2)]
        assert [event.pk for event in got] == [1, 2]  # type: ignore[union-attr]
        master = redis.Redis(port=sentinel_redis.master.port)
        names = [c.get("name", "") for c in await to_thread(master.client_list)]
        master.close()
        assert any(name.endswith("-subscribe") for name in names), names
    finally:
        await broker.stop()
        broker.backend.close_sync()
    del broker
    gc.collect()  # an unclosed connection warns now, in this test
