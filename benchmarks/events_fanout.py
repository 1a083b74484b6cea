#!/usr/bin/env python3
"""Does `events` (each socket's own live channel set) keep the speed of a grouped subscription?

    python benchmarks/events_fanout.py --harness PATH/TO/bench [--connections 1000] [--events 100]

Starts the example server (one uvicorn worker, the Redis at $REDIS_URL, a fresh SQLite file),
makes one correspondence, and for each operation — `messageAdded(correspondenceId)` (one group)
and `events` (one live per-user stream per socket, executed once per event) — lets the harness's
Node load generator open CONNECTIONS sockets, then saves EVENTS messages from another process as
fast as it can. Prints deliveries/s and what was received for each, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OPERATIONS = {
    "messageAdded": "subscription ($c: ID!) { messageAdded(correspondenceId: $c) { id body } }",
    "events": "subscription { events { channel kind node { ... on Message { id body } } } }",
}
SETUP = """
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from example.chat.models import Correspondence
from gql_pubsub.auth.tokens import create_jwt
user = get_user_model().objects.create_user(username="bench")
room = Correspondence.objects.create(title="bench")
room.participants.set([user])
print(json.dumps([create_jwt(user), room.pk]))
"""
SAVE = """
import django, sys
django.setup()
from django.contrib.auth import get_user_model
from example.chat.models import Message
user = get_user_model().objects.get(username="bench")
for k in range(int(sys.argv[1])):
    Message.objects.create(correspondence_id=int(sys.argv[2]), author=user, body=f"m{k}")
"""


def python(script: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def measure(
    args: argparse.Namespace, url: str, env: dict[str, str], token: str, room: int, query: str
) -> dict[str, object]:
    expected = args.connections * args.events
    loadgen = subprocess.Popen(
        ["node", str(args.harness / "loadgen" / "loadgen.mjs"), "--url", url,
         "--connections", str(args.connections), "--query", query,
         "--vars-template", json.dumps({"c": str(room)}),
         "--init-payload", json.dumps({"token": token}),
         "--expect", str(expected), "--timeout", "120", "--idle-timeout", "15"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert loadgen.stdout is not None
    for line in loadgen.stdout:
        if line.startswith("READY"):
            break
    time.sleep(2)  # let every socket's subscription reach Redis (a benchmark, not a test)
    python(SAVE, str(args.events), str(room), env=env)
    result = json.loads(loadgen.stdout.read().strip().splitlines()[-1])
    loadgen.wait(30)
    return {
        "received": result["received"],
        "expected": expected,
        "deliveries_per_s": result["deliveries_per_s"],
        "errors": result["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--harness", required=True, type=Path)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()
    from tests.services import live_server

    workdir = Path(tempfile.mkdtemp(prefix="gql_pubsub-events-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{workdir}/db.sqlite3",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "DEBUG": "0",
        # production refuses the example's public development secrets
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SECRET": secrets.token_urlsafe(40),
    }
    token, room = json.loads(python(SETUP, env=env).strip().splitlines()[-1])
    results = {}
    with live_server(env, log_dir=workdir) as server:
        for name, query in OPERATIONS.items():
            results[name] = measure(args, server.ws_url, env, token, room, query)
    ratio = results["events"]["deliveries_per_s"] / results["messageAdded"]["deliveries_per_s"]  # type: ignore[operator]
    print(json.dumps({**results, "events_vs_messageAdded": round(ratio, 2)}))


if __name__ == "__main__":
    main()
