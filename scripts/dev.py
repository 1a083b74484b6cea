#!/usr/bin/env python3
"""The project's two commands: `serve` runs the example server, `test` runs the whole suite.

Each creates .venv (or uses the active virtualenv), installs the project when pyproject.toml
changed, and runs. Needs only Python 3.11+; the suite starts its own redis-server when
REDIS_URL is not set, and uses SQLite when DATABASE_URL is not set.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python() -> Path:
    """The interpreter of the project's virtualenv, created and installed as needed."""
    env_dir = Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv")
    interpreter = env_dir / "bin" / "python"
    if not interpreter.exists():
        print(f"Creating virtualenv {env_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
    stamp = env_dir / ".gql_pubsub-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        print("Installing gql_pubsub with its dev extras", flush=True)
        pip = [str(interpreter), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
        stamp.write_text(digest)
    return interpreter


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([str(c) for c in command], cwd=ROOT, env=env)
    if result.returncode:
        sys.exit(result.returncode)


def serve(args: list[str]) -> None:
    interpreter = python()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "example.settings", "PYTHONPATH": str(ROOT)}
    run(interpreter, "-m", "django", "migrate", "--verbosity", "0", env=env)
    run(interpreter, "-m", "django", "demo_data", env=env)
    port = os.environ.get("PORT", "8000")
    print(
        f"GraphiQL: http://127.0.0.1:{port}/graphql/  (WebSocket: ws://127.0.0.1:{port}/graphql/)"
    )
    command = [str(interpreter), "-m", "uvicorn", "example.asgi:application", "--port", port, *args]
    os.chdir(ROOT)
    os.execve(str(interpreter), command, env)


def test(args: list[str]) -> None:
    interpreter = python()
    run(interpreter, "-m", "ruff", "check", ".")
    run(interpreter, "-m", "ruff", "format", "--check", ".")
    run(interpreter, "-m", "mypy")
    run(interpreter, "-m", "pytest", *args)


def main() -> None:
    commands = {"serve": serve, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3 scripts/dev.py {{{','.join(commands)}}} [args…]")
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
