#!/usr/bin/env python3
"""Run the fan-out harness with gql_pubsub beside its peers, in one run, and summarise it.

    python benchmarks/run.py --harness PATH/TO/bench [--reps 3] [--scenarios broadcast,rooms,idle]
        [--variant shared|distinct|viewer|viewer-field|permission|request] [--ws IMPLEMENTATION]
        [--connections N] [--rooms N] [--events N] [--rate EVENTS_PER_S]

PATH/TO/bench is a writable copy of the team's graphql-transport-ws fan-out harness (its
run.py, publish.py, loadgen and peers). The harness's setup.sh is run once if its peers are
not installed yet. A Redis must listen on 127.0.0.1:6379, as the harness expects.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UVICORN_ARGS = [
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--workers",
    "1",
    "--log-level",
    "warning",
]
PEERS = ["gql_pubsub", "node-graphql-ws", "strawberry-naive", "raw-asgi-limit"]
QUERY = "subscription($room: String!) {{ messageAdded(room: $room) {{ id room body sentAt{} }} }}"
"""The harness's operation; the variants with a field of their own select it too."""
EXTRA_FIELD = {"viewer-field": "viewer", "permission": "guarded", "request": "path"}
"""The field each variant adds (benchmarks/app.py)."""
VARIANTS = ("shared", "distinct", "viewer", *EXTRA_FIELD)
WS = ("auto", "websockets-sansio", "websockets", "wsproto")


def gql_pubsub_peer(
    harness: Path, *, metrics: bool = False, variant: str = "shared", ws: str = "auto"
) -> dict[str, object]:
    """The harness's description of our server: one uvicorn worker, our publisher."""
    python = sys.executable
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0", "GQL_PUBSUB_BENCH_VARIANT": variant}
    if metrics:
        env["GQL_PUBSUB_BENCH_METRICS"] = "1"
    extra = EXTRA_FIELD.get(variant)
    return {
        "cwd": os.path.relpath(ROOT, harness),
        "cmd": [python, "-m", "uvicorn", "benchmarks.app:application", *UVICORN_ARGS, "--ws", ws],
        "query": QUERY.format(f" {extra}" if extra else ""),
        "env": env,
        "port": 4010,
        "url": "ws://127.0.0.1:{port}/graphql",
        "publish": {
            "python": python,
            "mode": "import",
            "channel_template": "room:{room}",
            "args": ["--publisher", "benchmarks.publisher:publish"],
        },
        "ready_probe": {"kind": "numsub_channels"},
        "redis_cleanup": [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--harness", required=True, type=Path, help="a writable copy of the harness"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scenarios", default="broadcast,rooms,idle")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--metrics", action="store_true", help="gql_pubsub with its Prometheus metrics on"
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="shared",
        help="shared: declared shared, one user; distinct: a user per socket, not declared "
        "shared; viewer: distinct, and body reads the viewer; viewer-field, permission, "
        "request: distinct, and one more field (a method reading the user, a permission "
        "class, a method reading the request) (benchmarks/app.py)",
    )
    parser.add_argument(
        "--ws",
        choices=WS,
        default="auto",
        help="uvicorn's WebSocket implementation for gql_pubsub and the raw-ASGI peer "
        "(auto: what uvicorn picks, websockets-sansio where it has it)",
    )
    for name, kind in (("connections", int), ("rooms", int), ("events", int), ("rate", float)):
        parser.add_argument(
            f"--{name}", type=kind, help=f"the scenarios' {name}, instead of the harness's"
        )
    args = parser.parse_args()
    harness = args.harness.resolve()
    if not (harness / "run.py").exists():
        sys.exit(f"{harness} is not the fan-out harness (no run.py there)")
    if not (harness / "loadgen" / "node_modules").exists():
        subprocess.run(["bash", "setup.sh"], cwd=harness, check=True)

    peers = {k: v for k, v in json.loads((harness / "peers.json").read_text()).items()}
    peers["gql_pubsub"] = gql_pubsub_peer(
        harness, metrics=args.metrics, variant=args.variant, ws=args.ws
    )
    if args.ws != "auto" and "raw-asgi-limit" in peers:  # the ceiling, on the same implementation
        ceiling = peers["raw-asgi-limit"]
        ceiling["cmd"] = [*ceiling["cmd"], "--ws", args.ws]
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M")
    peers_file = results / f"peers-{stamp}.json"
    peers_file.write_text(json.dumps(peers, indent=2))
    out = results / f"fanout-{stamp}.jsonl"

    # The publisher runs in the harness's folder: it must find the benchmarks package.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
    command = [
        sys.executable,
        str(harness / "run.py"),
        "matrix",
        "--peers-file",
        str(peers_file),
        "--peers",
        args.peers,
        "--reps",
        str(args.reps),
        "--scenarios",
        args.scenarios,
        "--out",
        str(out),
    ]
    if args.label:
        command += ["--label", args.label]
    for name in ("connections", "rooms", "events", "rate"):
        if getattr(args, name) is not None:
            command += [f"--{name}", str(getattr(args, name))]
    subprocess.run(command, cwd=harness, env=env, check=True)
    summary = subprocess.run(
        [sys.executable, str(harness / "summarize.py"), str(out)],
        cwd=harness, check=True, capture_output=True, text=True,
    )  # fmt: skip
    (results / f"fanout-{stamp}.md").write_text(summary.stdout)
    print(summary.stdout)
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
