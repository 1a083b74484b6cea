#!/usr/bin/env python3
"""Subscribe cost: connection_init → ack → subscribe → live, for N subscriptions at once.

    python benchmarks/subscribe_cost.py --harness PATH/TO/bench [--connections 5000]

Starts the benchmark server (one uvicorn worker), lets the harness's Node load generator open
N sockets (100 handshakes in flight), each `connection_init` → `connection_ack` → `subscribe`,
waits until Redis shows every room's subscription, and reports the wall time per subscription
and the server's CPU time per subscription (from /proc), plus its Redis connections.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.server import bench_server  # noqa: E402

QUERY = "subscription($room: String!) { messageAdded(room: $room) { id room body sentAt } }"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--harness", required=True, type=Path)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--port", type=int, default=4011)
    args = parser.parse_args()
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    with bench_server(args.port) as server:
        cpu_before = cpu_seconds(server.pid)
        started = time.monotonic()
        loadgen = subprocess.Popen(
            ["node", str(args.harness / "loadgen" / "loadgen.mjs"),
             "--url", f"ws://127.0.0.1:{args.port}/graphql", "--connections", str(args.connections),
             "--query", QUERY, "--vars-template", '{"room":"room-{i%R}"}',
             "--param", f"R={args.rooms}", "--init-payload", '{"token":"bench"}',
             "--expect", "1", "--timeout", "120", "--hold"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert loadgen.stdout is not None
        ready_line = ""
        for line in loadgen.stdout:
            if line.startswith("READY"):
                ready_line = line
                break
        channels = [f"room:room-{n}" for n in range(args.rooms)]
        while sum(1 for _, n in client.pubsub_numsub(*channels) if n) < args.rooms:
            time.sleep(0.01)
        wall = time.monotonic() - started
        cpu = cpu_seconds(server.pid) - cpu_before
        names = [c.get("name", "") for c in client.client_list()]
        ours = sum(1 for name in names if str(name).startswith(f"gql_pubsub-{server.pid}-"))
        ready = json.loads(ready_line.split(" ", 1)[1]) if " " in ready_line else {}
        assert loadgen.stdin is not None
        loadgen.stdin.close()
        loadgen.kill()
        result = {
            "connections": args.connections,
            "subscribed": ready.get("subscribed"),
            "wall_s": round(wall, 3),
            "wall_ms_per_subscription": round(wall * 1000 / args.connections, 3),
            "server_cpu_s": round(cpu, 3),
            "server_cpu_ms_per_subscription": round(cpu * 1000 / args.connections, 3),
            "server_redis_connections": ours,
        }
        print(json.dumps(result))
    client.close()


if __name__ == "__main__":
    main()
