#!/usr/bin/env python3
"""Redis Cluster with 1 and 3 shards, side by side: publish rate, deliveries and each node's CPU
per event, with the same load.

    python benchmarks/cluster_shards.py [--events 20000] [--processes 8] [--channels 64]

Starts its own redis-servers (cluster mode, loopback) for each layout in turn:
- ``1 shard``: one master that owns every slot;
- ``3 shards``: three masters, the slots spread over them;
- and both again with classic PUBLISH/SUBSCRIBE (bare, no history), which a cluster broadcasts
  to every node (what sharded pub/sub avoids), for comparison: its cost per node does not fall.
In each, ``--processes`` gql_pubsub cluster backends (each standing for one server process,
with its one subscription connection per shard) subscribe to ``--channels`` channels; 16 tasks
publish ``--events`` events through the backend's publish script, spread over the channels.
Each node's CPU is read from INFO before and after, so the per-event figures do not depend on
this client's speed. Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio  # noqa: E402

from gql_pubsub.broker.backends.redis.cluster import RedisClusterBackend  # noqa: E402
from tests.services import RedisClusterNodes, RedisServer, free_cluster_port, wait_until  # noqa: E402

PAYLOAD = (
    b'{"kind":"created","model":"chat.message","pk":12345,"data":{"id":12345,'
    b'"body":"a message of some eighty bytes, as a chat would send","author_id":7}}'
)
TASKS = 16  # publishing tasks (--tasks)
CLUSTER_ARGS = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]


@contextlib.contextmanager
def one_shard() -> Iterator[tuple[str, list[int]]]:
    """A cluster of one master that owns every slot."""
    server = RedisServer(free_cluster_port(), persistent=False, args=CLUSTER_ARGS)
    with server:
        client = redis.Redis(port=server.port)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(lambda: client.cluster("INFO")["cluster_state"] == "ok", 20, "one shard")
        client.close()
        yield f"redis+cluster://127.0.0.1:{server.port}", [server.port]


@contextlib.contextmanager
def three_shards() -> Iterator[tuple[str, list[int]]]:
    with RedisClusterNodes(3) as cluster:
        yield cluster.url, [s.port for s in cluster.servers]


def cpu(port: int) -> float:
    client = redis.Redis(port=port)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def sharded(url: str, events: int, processes: int, channels: list[str]) -> float:
    """gql_pubsub's cluster backend: SPUBLISH with history; returns the publishing seconds."""
    received = [0] * processes
    all_in = asyncio.Event()

    def count(n: int) -> None:
        received[n] += 1
        if sum(received) >= events * processes:
            all_in.set()

    backends = []
    for n in range(processes):
        backend = RedisClusterBackend(url, prefix="bench:")
        await backend.connect(lambda *a, n=n: count(n), print)
        for channel in channels:
            await backend.subscribe(channel)
        backends.append(backend)
    publisher = backends[0]

    async def publish(task: int) -> None:
        for k in range(task, events, TASKS):
            await publisher.publish([channels[k % len(channels)]], PAYLOAD)

    start = time.perf_counter()
    await asyncio.gather(*(publish(t) for t in range(TASKS)))
    published = time.perf_counter() - start
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), 120)
    for backend in backends:
        await backend.disconnect()
    lost = events * processes - sum(received)
    if lost:
        print(f"warning: {lost} deliveries missing", file=sys.stderr)
    return published


async def classic(ports: list[int], events: int, processes: int, channels: list[str]) -> float:
    """Classic PUBLISH/SUBSCRIBE on a cluster: every node forwards every message."""
    received = [0] * processes
    readers = []
    for n in range(processes):
        pubsub = redis.asyncio.Redis(port=ports[n % len(ports)]).pubsub()
        await pubsub.subscribe(*("bench:" + c for c in channels))
        readers.append(pubsub)

    async def read(n: int) -> None:
        while received[n] < events:
            message = await readers[n].get_message(timeout=10)
            if message is None:
                return
            if message["type"] == "message":
                received[n] += 1

    publishers = [redis.asyncio.Redis(port=ports[t % len(ports)]) for t in range(TASKS)]

    async def publish(task: int) -> None:
        for k in range(task, events, TASKS):
            await publishers[task].publish("bench:" + channels[k % len(channels)], PAYLOAD)

    reading = [asyncio.create_task(read(n)) for n in range(processes)]
    start = time.perf_counter()
    await asyncio.gather(*(publish(t) for t in range(TASKS)))
    published = time.perf_counter() - start
    await asyncio.gather(*reading)
    for client in publishers:
        await client.aclose()
    for reader in readers:
        await reader.aclose()
    return published


def measure(layout: str, events: int, processes: int, channels: list[str]) -> dict[str, Any]:
    with one_shard() if layout.startswith("1 ") else three_shards() as (url, ports):
        before = [cpu(p) for p in ports]
        start = time.perf_counter()
        if "PUBLISH" in layout:
            published = asyncio.run(classic(ports, events, processes, channels))
        else:
            published = asyncio.run(sharded(url, events, processes, channels))
        delivered = time.perf_counter() - start
        used = [cpu(p) - b for p, b in zip(ports, before, strict=True)]
    return {
        "layout": layout,
        "events": events,
        "processes": processes,
        "events_per_s": round(events / published),
        "deliveries_per_s": round(events * processes / delivered),
        "node_cpu_us_per_event": [round(u / events * 1e6, 1) for u in used],
        "busiest_node_cpu_us_per_event": round(max(used) / events * 1e6, 1),
        "all_nodes_cpu_us_per_event": round(sum(used) / events * 1e6, 1),
    }


def main() -> None:
    global TASKS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=TASKS, help="concurrent publishers")
    args = parser.parse_args()
    TASKS = args.tasks
    channels = [f"room:{n}" for n in range(args.channels)]
    rows = [
        measure(layout, args.events, args.processes, channels)
        for layout in ("1 shard", "3 shards", "1 node, PUBLISH", "3 nodes, PUBLISH")
    ]
    print(
        "| layout | events/s published | deliveries/s | busiest node, CPU µs/event | "
        "all nodes, CPU µs/event | per node |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['layout']} | {row['events_per_s']:,} | {row['deliveries_per_s']:,} | "
            f"{row['busiest_node_cpu_us_per_event']} | {row['all_nodes_cpu_us_per_event']} | "
            f"{' / '.join(map(str, row['node_cpu_us_per_event']))} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
