#!/usr/bin/env python3
"""What one Redis costs per event: publish rate and Redis CPU per event, by subscribed processes.

    python benchmarks/redis_capacity.py [--events 20000] [--subscribers 0,1,4,16,64]

Publishes ``--events`` events through gql_pubsub's Redis backend (the publish script: history
append and PUBLISH with its place) from 16 concurrent tasks, while ``S`` subscription
connections (each standing for one server process subscribed to the channel) read them all;
and the same with a bare PUBLISH, for comparison. Redis's own CPU is read from INFO before and
after, so the per-event figures do not depend on this client's speed. Redis at $REDIS_URL
(default 127.0.0.1:6379; its keys are prefixed and removed). Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio  # noqa: E402

from gql_pubsub.broker.backends.redis import RedisBackend  # noqa: E402

PAYLOAD = (
    b'{"kind":"created","model":"chat.message","pk":12345,"data":{"id":12345,'
    b'"body":"a message of some eighty bytes, as a chat would send","author_id":7}}'
)
TASKS = 16  # the backend keeps at most 16 connections for publishing


async def redis_cpu(client: redis.asyncio.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(url: str, events: int, subscribers: int, bare: bool) -> dict[str, Any]:
    prefix = f"bench-capacity-{uuid.uuid4().hex[:8]}:"
    channel = "room"
    backend = RedisBackend(url, prefix=prefix, history_length=1000)
    await backend.connect(lambda *a: None, lambda *a: None)
    admin = redis.asyncio.Redis.from_url(url)
    readers = [redis.asyncio.Redis.from_url(url).pubsub() for _ in range(subscribers)]
    received = [0] * subscribers
    for reader in readers:
        await reader.subscribe(prefix + channel)
        await reader.get_message(timeout=1)  # the confirmation

    async def read(n: int) -> None:
        while received[n] < events:
            message = await readers[n].get_message(timeout=10)
            if message is None:
                return
            received[n] += 1

    async def publish(share: int) -> None:
        for _ in range(share):
            if bare:
                await admin.publish(prefix + channel, PAYLOAD)
            else:
                await backend.publish([channel], PAYLOAD)

    cpu_before = await redis_cpu(admin)
    start = time.perf_counter()
    reading = [asyncio.create_task(read(n)) for n in range(subscribers)]
    await asyncio.gather(*(publish(events // TASKS) for _ in range(TASKS)))
    published = time.perf_counter() - start
    await asyncio.gather(*reading)
    delivered = time.perf_counter() - start
    cpu = await redis_cpu(admin) - cpu_before
    total = events // TASKS * TASKS
    for reader in readers:
        await reader.aclose()
    keys = [key async for key in admin.scan_iter(match=prefix + "*")]
    if keys:
        await admin.delete(*keys)
    await admin.aclose()
    await backend.disconnect()
    return {
        "publish": "PUBLISH" if bare else "gql_pubsub script",
        "subscribers": subscribers,
        "events": total,
        "events_per_s": round(total / published),
        "all_delivered_s": round(delivered, 2),
        "lost": sum(total - r for r in received),
        "redis_cpu_us_per_event": round(cpu / total * 1e6, 1),
        "redis_cpu_us_per_delivery": round(cpu / (total * subscribers) * 1e6, 2)
        if subscribers
        else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--subscribers", default="0,1,4,16,64")
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    rows = []
    for subscribers in (int(s) for s in args.subscribers.split(",")):
        for bare in (False, True):
            rows.append(await run(url, args.events, subscribers, bare))
    print("| publish | subscribed processes | events/s | Redis CPU µs/event | µs/delivery | lost |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['publish']} | {row['subscribers']} | {row['events_per_s']:,} | "
            f"{row['redis_cpu_us_per_event']} | {row['redis_cpu_us_per_delivery'] or '-'} | "
            f"{row['lost']} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    asyncio.run(main())
