"""Start and stop the benchmark server (benchmarks/app.py) for the benchmark scripts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def bench_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """One uvicorn worker serving benchmarks.app on ``port``, until the block ends."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    command = [sys.executable, "-m", "uvicorn", "benchmarks.app:application", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the benchmark server did not start")
            time.sleep(0.1)
        time.sleep(1)  # let it connect to Redis
        yield server
    finally:
        server.terminate()
        server.wait(15)
