#!/usr/bin/env python3
"""Churn soak: connect / subscribe / receive / disconnect for a while; is server memory flat?

    python benchmarks/soak.py [--seconds 180] [--workers 50]

Starts the benchmark server (one uvicorn worker, the Redis at $REDIS_URL), warms it up with one
round of churn, samples its RSS, churns for SECONDS with WORKERS concurrent clients (each:
connect, connection_init, subscribe to one of 100 rooms, receive one event, disconnect), then
samples the RSS again. Bounded in time and count; only loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QUERY = "subscription ($room: String!) { messageAdded(room: $room) { id sentAt } }"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def churn(url: str, seconds: float, workers: int, publish: object) -> int:
    deadline = time.monotonic() + seconds
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        room = f"room-{n % 100}"
        while time.monotonic() < deadline:
            async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
                await ws.send(json.dumps({"type": "connection_init", "payload": {"token": "soak"}}))
                await asyncio.wait_for(ws.recv(), 10)
                payload = {"query": QUERY, "variables": {"room": room}}
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                await asyncio.sleep(0.05)  # let the subscription reach Redis
                await asyncio.to_thread(
                    publish,  # type: ignore[arg-type]
                    f"room:{room}",
                    {"id": str(done), "room": room, "body": "soak", "sentAt": 0},
                )
                # Another worker's event may have come first; memory is what is measured here.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 2)
            done += 1

    await asyncio.gather(*(worker(n) for n in range(workers)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--port", type=int, default=4013)
    args = parser.parse_args()
    os.environ.update({"DJANGO_SETTINGS_MODULE": "benchmarks.settings"})
    from benchmarks.publisher import publish
    from benchmarks.server import bench_server

    with bench_server(args.port) as server:
        url = f"ws://127.0.0.1:{args.port}/graphql"
        warm = asyncio.run(churn(url, 15, args.workers, publish))
        before = rss_kb(server.pid)
        churned = asyncio.run(churn(url, args.seconds, args.workers, publish))
        time.sleep(2)
        after = rss_kb(server.pid)
        print(json.dumps({
            "warm_up_connections": warm, "connections": churned, "seconds": args.seconds,
            "rss_before_kb": before, "rss_after_kb": after, "rss_growth_kb": after - before,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
