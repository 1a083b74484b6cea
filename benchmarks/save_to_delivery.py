#!/usr/bin/env python3
"""Save-to-delivery latency on the example app: Message.save() in one process → `next` on sockets.

    python benchmarks/save_to_delivery.py [--subscribers 1000] [--rooms 100] [--rate 100]

Starts the example server (one uvicorn worker, the Redis at $REDIS_URL, a fresh SQLite file, or
a new database on the PostgreSQL server $DATABASE_URL names, dropped at the end), connects
SUBSCRIBERS sockets spread over ROOMS correspondences (messageAdded, one subscription per
socket), then a separate process saves RATE messages per second through the ORM, each carrying
its save time. Prints latency percentiles and losses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUBSCRIPTION = "subscription ($c: ID!) { messageAdded(correspondenceId: $c) { id body } }"


def setup_database(env: dict[str, str], subscribers: int, rooms: int) -> list[tuple[str, int]]:
    """Migrate, create users and correspondences; return (token, correspondence id) per socket."""
    script = f"""
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from example.chat.models import Correspondence
from gql_pubsub.auth.tokens import create_jwt
User = get_user_model()
users = [User.objects.create_user(username=f"s{{n}}") for n in range({subscribers})]
rooms = Correspondence.objects.bulk_create(Correspondence(title=f"r{{n}}") for n in range({rooms}))
through = Correspondence.participants.through
through.objects.bulk_create(
    through(correspondence_id=rooms[n % {rooms}].pk, user_id=u.pk) for n, u in enumerate(users))
print(json.dumps([(create_jwt(u), rooms[n % {rooms}].pk) for n, u in enumerate(users)]))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [tuple(pair) for pair in json.loads(out.stdout.strip().splitlines()[-1])]


SAVER = """
import django, sys, time
django.setup()
from django.contrib.auth import get_user_model
from example.chat.models import Correspondence, Message
rate, seconds, prefix = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rooms = list(Correspondence.objects.filter(title__startswith="r").values_list("pk", flat=True))
author = get_user_model().objects.filter(username="s0").first()
start = time.monotonic()
count = int(rate * seconds)
for k in range(count):
    delay = start + k / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    Message.objects.create(correspondence_id=rooms[k % len(rooms)], author=author,
                           body=f"{prefix}{k}:{time.time() * 1000:.3f}")
print(count)
"""


async def run(args: argparse.Namespace) -> dict[str, object]:
    from tests.services import database_service

    workdir = Path(tempfile.mkdtemp(prefix="gql_pubsub-s2d-"))
    with database_service() as database_url:  # a new database on $DATABASE_URL's server
        return await measure(args, workdir, database_url)


async def measure(args: argparse.Namespace, workdir: Path, database_url: str) -> dict[str, object]:
    import websockets

    from tests.services import live_server

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "DEBUG": "0",
        # production refuses the example's public development secrets
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SECRET": secrets.token_urlsafe(40),
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL")})
    sockets = setup_database(env, args.subscribers, args.rooms)
    with live_server(env, log_dir=workdir) as server:
        received: dict[int, list[float]] = {}
        rooms = {room for _, room in sockets}
        warm: set[int] = set()
        all_warm, all_in = asyncio.Event(), asyncio.Event()
        target = [0]
        count = [0]

        async def client(token: str, room: int, ready: asyncio.Event) -> None:
            async with websockets.connect(
                server.ws_url,
                subprotocols=["graphql-transport-ws"],
                max_queue=None,  # type: ignore[list-item]
            ) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
                await ws.recv()
                await ws.send(
                    json.dumps(
                        {
                            "id": "1",
                            "type": "subscribe",
                            "payload": {"query": SUBSCRIPTION, "variables": {"c": str(room)}},
                        }
                    )
                )
                ready.set()
                async for raw in ws:
                    now = time.time() * 1000
                    message = json.loads(raw)
                    if message["type"] == "ping":  # the server's keepalive, every 20 s
                        await ws.send('{"type":"pong"}')
                        continue
                    body = message["payload"]["data"]["messageAdded"]["body"]
                    if body.startswith("warm"):
                        warm.add(room)
                        if warm >= rooms:
                            all_warm.set()
                        continue
                    k, sent = body.split(":")
                    received.setdefault(int(k), []).append(now - float(sent))
                    count[0] += 1
                    if target[0] and count[0] >= target[0]:
                        all_in.set()

        readies = [asyncio.Event() for _ in sockets]
        tasks = [
            asyncio.create_task(client(token, room, ready))
            for (token, room), ready in zip(sockets, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)

        async def save(rate: float, seconds: float, prefix: str) -> int:
            command = [sys.executable, "-c", SAVER, str(rate), str(seconds), prefix]
            done = await asyncio.to_thread(
                subprocess.run,
                command,
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            return int(done.stdout.strip().splitlines()[-1])

        for _ in range(30):  # warm up until every room has delivered end to end
            await save(1000, len(rooms) / 1000, "warm")
            try:
                await asyncio.wait_for(all_warm.wait(), 1)
                break
            except TimeoutError:
                continue
        target[0] = int(args.rate * args.seconds) * (args.subscribers // args.rooms)
        saved = await save(args.rate, args.seconds, "")
        expected = saved * (args.subscribers // args.rooms)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 30)
        for task in tasks:
            task.cancel()
        latencies = sorted(x for xs in received.values() for x in xs)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "subscribers": args.subscribers,
        "rooms": args.rooms,
        "saves_per_s": args.rate,
        "saves": saved,
        "expected_deliveries": expected,
        "delivered": len(latencies),
        "lost": expected - len(latencies),
        "latency_ms": {
            "p50": round(q[49], 2),
            "p90": round(q[89], 2),
            "p99": round(q[98], 2),
            "max": round(latencies[-1], 2) if latencies else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
