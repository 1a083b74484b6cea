"""Redis Cluster: sharded pub/sub through the shard that owns each channel, one subscription
connection per shard and process, and nothing lost or repeated when a slot moves or a master
fails over under steady writes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gql_pubsub.broker.backends.redis.clients import ClusterURL

from ..helpers import (
    each_gets_its_room,
    paced_writes,
    send_message,
    sockets_in_rooms,
)
from ..services import (
    RedisClusterNodes,
    cluster_unavailable,
    live_server,
    scaled,
    to_thread,
    wait_until,
)

PREFIX = "gql_pubsub:0:"


def test_a_cluster_url_names_its_nodes_and_credentials() -> None:
    named = ClusterURL.parse("redis+cluster://app:s3cret@10.0.0.1:7000,node-2:7001")
    assert named.nodes == [("10.0.0.1", 7000), ("node-2", 7001)]
    assert (named.username, named.password, named.tls) == ("app", "s3cret", None)
    tls = ClusterURL.parse("rediss+cluster://n-1:7000?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required")
    assert tls.credentials() == {
        "ssl": True,
        "ssl_ca_certs": "/ca.pem",
        "ssl_cert_reqs": "required",
    }
    for wrong, says in (
        ("redis+cluster://node-1", "needs host:port"),
        ("redis+cluster://", "No cluster node"),
        ("redis+cluster://node-1:7000/2", "only database 0"),
        ("redis+cluster://node-1:7000?ssl_ca_certs=/ca.pem", r"TLS options need rediss\+cluster"),
        ("rediss+cluster://node-1:7000?ca=/ca.pem", r"Unknown option\(s\) \['ca'\]"),
    ):
        with pytest.raises(ValueError, match=says):
            ClusterURL.parse(wrong)


def _shard_channel(room: Any) -> str:
    return f"{PREFIX}{{{room.channel}}}"


async def _rooms_on_every_master(
    cluster: RedisClusterNodes, make_correspondence: Callable[..., Any], *users: Any
) -> list[Any]:
    """Rooms whose channels are owned by each of the cluster's masters (one per master)."""
    by_master: dict[int, Any] = {}
    for _ in range(60):
        room = await to_thread(make_correspondence, *users)
        master = await to_thread(cluster.master_of, _shard_channel(room))
        by_master.setdefault(master.port, room)
        if len(by_master) == len(cluster.masters()):
            return list(by_master.values())
    raise AssertionError("60 rooms' channels did not cover every master")


def _subscribe_connections(port: int, pids: list[int]) -> dict[int, int]:
    """How many subscription connections each server process holds to the node on ``port``."""
    client = redis.Redis(port=port)
    try:
        names = [c.get("name", "") for c in client.client_list()]
    finally:
        client.close()
    return {pid: names.count(f"gql_pubsub-{pid}-subscribe") for pid in pids}


def _shard_subscribers(port: int, channels: list[str]) -> int:
    client = redis.Redis(port=port)
    try:
        counts = client.execute_command("PUBSUB", "SHARDNUMSUB", *channels)
    finally:
        client.close()
    return sum(int(n) for n in counts[1::2])


async def test_events_on_every_shard_reach_two_servers_over_one_connection_per_shard(
    redis_cluster: RedisClusterNodes,
    log_dir: Path,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """Rooms on each of 3 masters, a socket in each on each of 2 server processes: every
    message reaches its room's sockets; each process holds one subscription connection per
    master; when the sockets close, no shard subscription or connection is left."""
    writer, reader = await to_thread(lambda: (make_user("w"), make_user("r")))
    rooms = await _rooms_on_every_master(redis_cluster, make_correspondence, writer, reader)
    writer_token, reader_token = await to_thread(lambda: (token_for(writer), token_for(reader)))
    env = {"REDIS_URL": redis_cluster.url}
    with (
        live_server(env, log_dir=log_dir) as first,
        live_server(env, log_dir=log_dir) as second,
    ):
        pids = [first.pid, second.pid]
        sockets = [
            (server, await sockets_in_rooms(server, writer_token, reader_token, rooms, 1))
            for server in (first, second)
        ]
        try:
            # The second server's "ready" messages reached the first one's sockets too.
            for client in sockets[0][1]:
                payload = await client.next_payload("m", timeout=10)
                assert payload["data"]["messageAdded"]["body"] == "ready"
            for n, room in enumerate(rooms):
                await send_message(first, writer_token, room.pk, f"to room {n}")
            for server, clients in sockets:
                await each_gets_its_room(
                    server, clients, [[f"to room {n}"] for n in range(len(rooms))], timeout=10
                )
            masters = [s.port for s in redis_cluster.masters()]
            for port in masters:
                held = await to_thread(_subscribe_connections, port, pids)
                assert held == {pid: 1 for pid in pids}, (port, held)
        finally:
            for _, clients in sockets:
                await asyncio.gather(*(client.close() for client in clients))
        channels = [_shard_channel(room) for room in rooms]
        for port in masters:
            await to_thread(
                wait_until,
                lambda port=port: (
                    _shard_subscribers(port, channels) == 0
                    and _subscribe_connections(port, pids) == {pid: 0 for pid in pids}
                ),
                10,
                f"the servers to leave node {port}",
            )
        logs = first.log.read_text() + second.log.read_text()
    assert "Traceback" not in logs, logs


@pytest.fixture
def own_cluster(request: pytest.FixtureRequest) -> Iterator[RedisClusterNodes]:
    """A cluster of this test's own (it moves slots or kills nodes): 3 masters, with
    ``replicas`` each (the test's parameter)."""
    reason = cluster_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with RedisClusterNodes(replicas=getattr(request, "param", 0)) as cluster:
        yield cluster


def _move_slot(cluster: RedisClusterNodes, key: str) -> tuple[int, int]:
    """Move ``key``'s slot, with its keys, to another master (as ``redis-cli --cluster reshard``
    does, one slot). Returns the ports it moved from and to."""
    source = cluster.master_of(key)
    target = next(s for s in cluster.masters() if s is not source)
    src, dst = redis.Redis(port=source.port), redis.Redis(port=target.port)
    try:
        slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
        src_id = src.execute_command("CLUSTER", "MYID").decode()
        dst_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in (target, source, *(s for s in cluster.masters() if s not in (source, target))):
            client = redis.Redis(port=node.port)
            try:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            finally:
                client.close()
    finally:
        src.close()
        dst.close()
    return source.port, target.port


async def test_a_slot_moving_under_steady_writes_loses_and_repeats_nothing(
    own_cluster: RedisClusterNodes,
    log_dir: Path,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """10 sockets in 2 rooms, sendMessage at 20/s for 4 s; 1 s in, the slot of the first
    room's channel (its history, epoch and marks with it) moves to another master: every
    mutation succeeds, and every socket gets every message of its room once, in order."""
    per_room, rate, seconds = 5, 20, 4
    writer, reader = await to_thread(lambda: (make_user("w"), make_user("r")))
    rooms = [await to_thread(make_correspondence, writer, reader) for _ in range(2)]
    writer_token, reader_token = await to_thread(lambda: (token_for(writer), token_for(reader)))
    moved: list[tuple[int, int]] = []
    with live_server({"REDIS_URL": own_cluster.url}, log_dir=log_dir) as server:
        sockets = await sockets_in_rooms(server, writer_token, reader_token, rooms, per_room)
        try:
            move = {
                2 * rate: lambda: moved.append(_move_slot(own_cluster, _shard_channel(rooms[0])))
            }
            bodies = await paced_writes(
                server, writer_token, rooms, rate=rate, seconds=seconds, at=move
            )
            await each_gets_its_room(server, sockets, bodies, timeout=scaled(30))
            await sockets[0].expect_silence(0.5)
        finally:
            await asyncio.gather(*(client.close() for client in sockets))
        log = server.log.read_text()
    ((_, target),) = moved
    assert (await to_thread(own_cluster.master_of, _shard_channel(rooms[0]))).port == target
    assert "Traceback" not in log, log


@pytest.mark.parametrize("own_cluster", [1], indirect=True)
async def test_a_master_failover_under_steady_writes_loses_and_repeats_nothing(
    own_cluster: RedisClusterNodes,
    log_dir: Path,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """3 masters with a replica each; 10 sockets in 2 rooms, sendMessage at 20/s for 6 s; the
    master of the first room's channel is killed 1 s in and its replica takes over: every
    mutation succeeds, and every socket gets every message of its room once, in order."""
    per_room, rate, seconds = 5, 20, 6
    writer, reader = await to_thread(lambda: (make_user("w"), make_user("r")))
    rooms = [await to_thread(make_correspondence, writer, reader) for _ in range(2)]
    writer_token, reader_token = await to_thread(lambda: (token_for(writer), token_for(reader)))
    doomed = await to_thread(own_cluster.master_of, _shard_channel(rooms[0]))
    with live_server({"REDIS_URL": own_cluster.url}, log_dir=log_dir) as server:
        sockets = await sockets_in_rooms(server, writer_token, reader_token, rooms, per_room)
        try:
            bodies = await paced_writes(
                server, writer_token, rooms, rate=rate, seconds=seconds, at={rate: doomed.stop}
            )
            await each_gets_its_room(server, sockets, bodies, timeout=scaled(30))
            await sockets[0].expect_silence(0.5)
        finally:
            await asyncio.gather(*(client.close() for client in sockets))
        log = server.log.read_text()
    assert (await to_thread(own_cluster.master_of, _shard_channel(rooms[0]))).port != doomed.port
    assert "Traceback" not in log, log


async def test_a_channel_whose_slot_moves_gets_what_its_new_node_had_before_it_arrived(
    own_cluster: RedisClusterNodes,
) -> None:
    """The slot of a subscribed channel moves, and 5 events are published on its new node
    before this process has subscribed there (the loop is held): they arrive from the
    channel's history, once and in order, and the next ones live from the new node."""
    from gql_pubsub.broker.broker import Broker
    from gql_pubsub.core.events import Event, EventKind

    def event(n: int) -> Event:
        return Event(EventKind.CUSTOM, None, n, {})

    broker = Broker(own_cluster.url, prefix="moving:")
    await broker.start()
    try:
        async with broker.subscribe("room") as subscriber:

            async def next_pks(count: int) -> list[Any]:
                return [
                    (await asyncio.wait_for(anext(subscriber), scaled(10))).pk for _ in range(count)
                ]

            broker.publish_sync(["room"], event(1))
            assert await next_pks(1) == [1]
            # All in one turn of the loop: the old node's notice waits until they are done.
            _, target = _move_slot(own_cluster, "moving:{room}")
            for n in range(2, 7):
                broker.publish_sync(["room"], event(n))
            assert await next_pks(5) == [2, 3, 4, 5, 6]
            await broker.publish(["room"], event(7))
            assert await next_pks(1) == [7]
            backend: Any = broker.backend
            assert backend.shard_connections() == {f"127.0.0.1:{target}": {"room"}}
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(subscriber), 0.3)  # nothing twice
    finally:
        await broker.stop()
        broker.backend.close_sync()


def test_the_outbox_records_each_row_per_channel_in_the_channels_slot_and_publishes_it_once(
    redis_cluster: RedisClusterNodes,
) -> None:
    """The outbox's steps on a cluster: a row is published once per channel (a repeat is a
    duplicate, a row published on one of its channels goes out on the others only), counts as
    published only when every channel has it, and is forgotten, pruned and held back by the
    backlog flag as on one Redis; its marks live in each channel's slot."""
    from gql_pubsub.broker.backends.base import DEFERRED, DUPLICATE, PUBLISHED
    from gql_pubsub.broker.backends.redis.cluster import RedisClusterBackend

    prefix = f"outbox-{uuid.uuid4().hex[:8]}:"
    backend = RedisClusterBackend(redis_cluster.url, prefix=prefix)
    marks, backlog = "outbox:{dest}:published", "outbox:{dest}:backlog"
    both, one = ["room:a", "room:b"], ["room:c"]
    cluster = redis_cluster.client()
    try:

        def history(channel: str) -> list[bytes]:
            entries = cluster.xrange(backend.history_key(channel))
            return [fields[b"p"] for _, fields in entries]

        events = [(both, b'{"n":1}'), (one, b'{"n":2}')]
        rows = [("db:1:100", both), ("db:2:101", one)]
        assert backend.publish_many_sync(events, mark=(marks, ["db:1:100", "db:2:101"])) == [
            PUBLISHED,
            PUBLISHED,
        ]
        assert backend.marked_sync(marks, rows) == {"db:1:100", "db:2:101"}
        again = backend.publish_many_sync(events, mark=(marks, ["db:1:100", "db:2:101"]))
        assert again == [DUPLICATE, DUPLICATE]
        assert history("room:a") == history("room:b") == [b'{"n":1}']
        for channel in both:  # the mark is in the channel's slot, beside its history
            key = f"{prefix}outbox:dest:published:{{{channel}}}"
            assert cluster.keyslot(key) == cluster.keyslot(backend.history_key(channel))
            assert cluster.zscore(key, "db:1:100") is not None

        # Published on one of its channels only (say, a relay died halfway): not marked; the
        # next publish sends it on the other channel only.
        backend.publish_many_sync([(["room:a"], b'{"n":3}')], mark=(marks, ["db:3:102"]))
        assert backend.marked_sync(marks, [("db:3:102", both)]) == set()
        done = backend.publish_many_sync([(both, b'{"n":3}')], mark=(marks, ["db:3:102"]))
        assert done == [PUBLISHED]
        assert history("room:a") == history("room:b") == [b'{"n":1}', b'{"n":3}']
        assert backend.marked_sync(marks, [("db:3:102", both)]) == {"db:3:102"}

        backend.unmark_sync(marks, [rows[0]])
        assert backend.marked_sync(marks, rows) == {"db:2:101"}
        backend.prune_marks_sync(marks, time.time() + 1, ["room:c"])
        assert backend.marked_sync(marks, rows) == set()
        assert backend.marked_sync(marks, [("db:3:102", both)]) == {"db:3:102"}  # not pruned

        backend.raise_flag_sync(backlog, 5)
        seen = backend.flag_sync(backlog)
        assert seen is not None and 4000 < cluster.pttl(prefix + backlog) <= 5000
        assert backend.publish_many_sync([(one, b'{"n":4}')], backlog=backlog) == [DEFERRED]
        backend.lower_flag_sync(backlog, seen)
        assert backend.flag_sync(backlog) is None
        assert backend.publish_many_sync([(one, b'{"n":4}')], backlog=backlog) == [PUBLISHED]
        backend.ping_sync()
    finally:
        cluster.close()
        backend.close_sync()


async def test_a_subscribe_sent_to_a_node_that_no_longer_owns_the_slot_follows_the_redirect(
    own_cluster: RedisClusterNodes,
) -> None:
    """A channel whose slot moved after this process learnt the cluster's map: its subscription
    is made on the new owner, and its events arrive."""
    from gql_pubsub.broker.broker import Broker
    from gql_pubsub.core.events import Event, EventKind

    broker = Broker(own_cluster.url, prefix="stale:")
    await broker.start()
    try:
        async with broker.subscribe("first"):  # the map is learnt, and a connection opened
            _, target = await to_thread(_move_slot, own_cluster, "stale:{later}")
            async with broker.subscribe("later") as subscriber:
                await broker.publish(["later"], Event(EventKind.CUSTOM, None, 1, {}))
                got = await asyncio.wait_for(anext(subscriber), scaled(10))
                backend: Any = broker.backend
                nodes = backend.shard_connections()
        assert got.pk == 1  # type: ignore[union-attr]
        assert "later" in nodes[f"127.0.0.1:{target}"], nodes
    finally:
        await broker.stop()
        broker.backend.close_sync()


async def test_the_shard_connections_follow_a_moved_answer_to_ssubscribe(
    own_cluster: RedisClusterNodes,
) -> None:
    """Below the broker: SSUBSCRIBE sent on a map of the cluster that is stale (nothing else
    has learnt of the move) gets MOVED from the old node; it is sent to the new owner."""
    from gql_pubsub.broker.backends.redis.cluster import RedisClusterBackend

    received: list[bytes] = []
    backend = RedisClusterBackend(own_cluster.url, prefix="moved:")
    await backend.connect(lambda channel, payload, *_: received.append(payload), print)
    try:
        await backend.subscribe("first")
        _, target = await to_thread(_move_slot, own_cluster, "moved:{later}")
        shards: Any = backend._shards  # the map is still the one learnt at connect
        await shards.subscribe("later")
        assert "later" in backend.shard_connections()[f"127.0.0.1:{target}"]
        await backend.publish(["later"], b'{"n":1}')
        await to_thread(wait_until, lambda: received == [b'{"n":1}'], 10, "the event")
    finally:
        await backend.disconnect()
        backend.close_sync()


async def test_a_channel_unsubscribed_while_its_subscribe_is_in_flight_leaves_nothing_behind(
    redis_cluster: RedisClusterNodes,
) -> None:
    """A subscribe cancelled after its SSUBSCRIBE went out (its subscriber left, or the
    channel was moving), then the unsubscribe: no shard subscription or connection stays."""
    from gql_pubsub.broker.backends.redis.cluster import RedisClusterBackend

    prefix = f"inflight-{uuid.uuid4().hex[:8]}:"
    backend = RedisClusterBackend(redis_cluster.url, prefix=prefix)
    await backend.connect(lambda *_: None, print)
    try:
        shards: Any = backend._shards
        subscribing = asyncio.ensure_future(shards.subscribe("room"))
        for _ in range(200):  # until the SSUBSCRIBE is sent (bounded)
            if any(c.has("room") for c in shards._nodes.values()):
                break
            await asyncio.sleep(0.005)
        subscribing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await subscribing
        await backend.unsubscribe("room")
        node = await to_thread(redis_cluster.master_of, f"{prefix}{{room}}")
        await to_thread(
            wait_until,
            lambda: _shard_subscribers(node.port, [f"{prefix}{{room}}"]) == 0,
            10,
            "no shard subscriber of the channel",
        )
        assert backend.shard_connections() == {}
    finally:
        await backend.disconnect()
        backend.close_sync()


async def test_a_cluster_over_tls_publishes_and_delivers_on_every_shard() -> None:
    """rediss+cluster:// to a cluster that speaks TLS only (its bus too), its certificate
    checked against the URL's CA: events on channels of all three shards arrive, published
    from a thread and from the loop, over one TLS subscription connection per master."""
    from gql_pubsub.broker.broker import Broker
    from gql_pubsub.core.events import Event, EventKind

    reason = cluster_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with RedisClusterNodes(tls=True) as cluster:
        masters = {s.port for s in cluster.masters()}
        channels: dict[int, str] = {}
        for n in range(200):  # one channel owned by each master
            owner = await to_thread(cluster.master_of, f"tls:{{room:{n}}}")
            channels.setdefault(owner.port, f"room:{n}")
            if len(channels) == len(masters):
                break
        broker = Broker(cluster.url, prefix="tls:")
        await broker.start()
        try:
            async with broker.subscribe(*channels.values()) as subscriber:
                for n, channel in enumerate(channels.values()):
                    await to_thread(
                        broker.publish_sync, [channel], Event(EventKind.CUSTOM, None, n, {})
                    )
                await broker.publish(["room:0"], Event(EventKind.CUSTOM, None, 99, {}))
                got = [
                    await asyncio.wait_for(anext(subscriber), scaled(10))
                    for _ in range(len(channels) + (1 if "room:0" in channels.values() else 0))
                ]
                backend: Any = broker.backend
                held = backend.shard_connections()
            assert {e.pk for e in got} >= set(range(len(channels)))  # type: ignore[union-attr]
            assert {int(node.rsplit(":", 1)[1]) for node in held} == masters
        finally:
            await broker.stop()
            broker.backend.close_sync()
