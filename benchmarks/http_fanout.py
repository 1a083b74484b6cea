#!/usr/bin/env python3
"""Fan-out over HTTP beside WebSocket: N subscribers of one room receive E events, over
graphql-transport-ws and over graphql-sse's event stream, from the benchmark server.

    python benchmarks/http_fanout.py [--subscribers 1000] [--events 300] [--reps 3]

One uvicorn worker serves benchmarks.app (the harness's schema; every subscriber shares one
group). The load generator (benchmarks/node/http_loadgen.mjs, ``npm ci`` there once) opens the
subscribers; events go out through ``gql_pubsub.publish`` once Redis reports the room's
subscription. Each repetition runs both kinds, alternating which goes first; deliveries/s is
counted by the load generator from the first delivery to the last. Needs Redis on
127.0.0.1:6379 and Node 20+.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "benchmarks" / "node"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run(kind: str, subscribers: int, events: int) -> dict[str, object]:
    """One repetition of one kind, on a fresh server."""
    import redis

    port = free_port()
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/0", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.app:application", "--port", str(port),
         "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    room = uuid.uuid4().hex[:8]
    client = redis.Redis()
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        loadgen = subprocess.Popen(
            ["node", "http_loadgen.mjs", kind, f"http://127.0.0.1:{port}", str(subscribers),
             room, str(subscribers * events), "120"],
            cwd=NODE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert loadgen.stdout is not None
        assert "ready" in json.loads(loadgen.stdout.readline())
        deadline = time.monotonic() + 30
        while dict(client.pubsub_numsub(f"room:{room}")).get(f"room:{room}".encode(), 0) < 1:
            assert time.monotonic() < deadline, "the server never subscribed to the room"
            time.sleep(0.05)
        time.sleep(1)  # every subscriber joined (they join the live group in turn)
        env["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
        subprocess.run(
            [sys.executable, "-c", PUBLISH, room, str(events)], cwd=ROOT, env=env, check=True
        )
        result: dict[str, object] = json.loads(loadgen.stdout.readline())
        loadgen.wait(30)
        loadgen.stdout.close()
        return result
    finally:
        server.terminate()
        server.wait(30)
        client.close()


PUBLISH = """
import sys, time
from benchmarks.publisher import publish
room, events = sys.argv[1], int(sys.argv[2])
for n in range(events):
    publish(f"room:{room}", {"id": str(n), "room": room, "body": "x", "sentAt": time.time()})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"ws": [], "sse": []}
    for rep in range(args.reps):
        for kind in ("ws", "sse") if rep % 2 == 0 else ("sse", "ws"):
            result = run(kind, args.subscribers, args.events)
            print(json.dumps({"kind": kind, "rep": rep + 1, **result}), flush=True)
            if result["done"] == "expected":
                figures[kind].append(float(result["per_second"]))  # type: ignore[arg-type]
    for kind, values in figures.items():
        shown = ", ".join(f"{v:,.0f}" for v in values)
        median = statistics.median(values) if values else float("nan")
        print(f"{kind}: median {median:,.0f} deliveries/s ({shown})")


if __name__ == "__main__":
    main()
