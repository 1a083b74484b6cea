#!/usr/bin/env python3
"""Presence at scale: 10,000 members in one channel, with join/leave churn.

    python benchmarks/presence.py [--members 10000] [--churn 200] [--seconds 10]

One process, two brokers on the Redis at $REDIS_URL (two servers of one site): the first
tracks the members (one connection each), the second watches the channel. Prints, as JSON:
- `join`: joins per second while all the members arrive at once, Redis commands per join
  (INFO commandstats, those a script runs included), this process's CPU per join (the
  watcher's included), and the diff events the watcher got for them (joins made together
  are coalesced, up to 500 an event);
- `churn`: for `--seconds`, a member leaves and another joins, `--churn` times a second (at
  most: each pair waits for Redis): the changes a second made, the latency from the call to
  the watcher's diff (p50, p99), and the diff events the watcher got;
- `exact`: whether the watcher's list (its state, then every diff) equals `members()` at the
  end, and the size of that list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def commands(client: Any) -> int:
    """Redis commands run so far (all kinds)."""
    return sum(int(stats["calls"]) for stats in client.info("commandstats").values())


async def measure(members: int, churn: float, seconds: float) -> dict[str, Any]:
    import redis

    from gql_pubsub import Broker
    from gql_pubsub.presence import PresenceDiff, PresenceState, track, watch
    from gql_pubsub.presence import members as members_now

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench-presence-{uuid.uuid4().hex[:8]}:"
    channel = "room:big"
    tracker_broker, watcher_broker = Broker(url, prefix=prefix), Broker(url, prefix=prefix)
    await tracker_broker.start()
    await watcher_broker.start()
    admin = redis.Redis.from_url(url)
    seen: set[str] = set()
    arrived: dict[str, float] = {}
    diffs = [0]
    ready = asyncio.Event()
    complete = asyncio.Event()  # the watcher has every member
    target = [members]

    async def watcher() -> None:
        async for change in watch(channel, broker=watcher_broker):
            now = time.perf_counter()
            if isinstance(change, PresenceState):
                seen.clear()
                seen.update(m.id for m in change.members)
                ready.set()
                continue
            assert isinstance(change, PresenceDiff)
            diffs[0] += 1
            for member in change.joins:
                seen.add(member.id)
                arrived[member.id] = now
            for gone in change.leaves:
                seen.discard(gone)
                arrived[gone] = now
            if len(seen) >= target[0]:
                complete.set()

    watching = asyncio.create_task(watcher())
    await ready.wait()
    async with contextlib.AsyncExitStack() as stack:
        ids = (str(n) for n in itertools.count(1))
        held: dict[str, contextlib.AsyncExitStack] = {}

        async def join(member: str) -> None:
            inner = contextlib.AsyncExitStack()
            await inner.enter_async_context(
                track(channel, member, {"n": member}, broker=tracker_broker)
            )
            held[member] = inner

        before, cpu = commands(admin), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(join(next(ids)) for _ in range(members)))
        joined = time.perf_counter() - started
        join_stats = {
            "members": members,
            "joins_per_s": round(members / joined),
            "redis_commands_per_join": round((commands(admin) - before) / members, 1),
            "cpu_us_per_join": round((time.process_time() - cpu) / members * 1e6, 1),
        }
        await complete.wait()
        join_stats["diff_events"] = diffs[0]  # joins coalesced: at most 500 an event
        arrived.clear()
        diffs[0] = 0
        issued: dict[str, float] = {}
        deadline = time.perf_counter() + seconds
        interval = 1 / churn
        while time.perf_counter() < deadline:
            gone = next(iter(held))
            issued[gone] = time.perf_counter()
            await held.pop(gone).aclose()
            member = next(ids)
            issued[member] = time.perf_counter()
            await join(member)
            await asyncio.sleep(interval)
        await asyncio.sleep(1)
        latencies = sorted((arrived[m] - t) * 1000 for m, t in issued.items() if m in arrived)
        churn_stats = {
            "changes_per_s": round(len(issued) / seconds),
            "changes": len(issued),
            "received": len(latencies),
            "diff_events": diffs[0],
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        }
        now = {m.id for m in await asyncio.to_thread(members_now, channel, broker=watcher_broker)}
        exact = {"members": len(now), "watcher_agrees": now == seen}
        for inner in held.values():
            stack.push_async_callback(inner.aclose)
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    await tracker_broker.stop()
    await watcher_broker.stop()
    admin.close()
    return {"join": join_stats, "churn": churn_stats, "exact": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--churn", type=float, default=200, help="changes a second")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    import django

    django.setup()
    print(json.dumps(asyncio.run(measure(args.members, args.churn, args.seconds))))


if __name__ == "__main__":
    main()
