#!/usr/bin/env python3
"""The project's commands: `serve` runs the example server, `test` runs the whole suite.

`serve` and `test` use .venv (or the active virtualenv), synced exactly to the committed
`uv.lock`: the linters, the type checker, the stubs and the test tools that decide whether
main is green are the lock's, byte for byte, on every machine. Needs only Python 3.11+; the
suite starts its own redis-server when REDIS_URL is not set, and uses SQLite when
DATABASE_URL is not set.

    python3 scripts/dev.py serve [uvicorn args…]     the example chat
    python3 scripts/dev.py test [pytest args…]       ruff, mypy, pytest on the locked versions
    python3 scripts/dev.py docs [serve]              build the docs site strictly (or serve it)
    python3 scripts/dev.py lock                      refresh uv.lock to the newest allowed releases
    python3 scripts/dev.py test-range newest|lowest [--python X] [pytest args…]
        pytest on a fresh resolution of the dependency ranges (no lock), in .venv-<newest|lowest>
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The runtime dependencies whose resolved versions a range pass names before it runs.
NAMED = [
    "django",
    "strawberry-graphql",
    "strawberry-graphql-django",
    "graphql-core",
    "redis",
    "hiredis",
    "uvicorn",
    "pyjwt",
    "orjson",
    "psycopg",
    "prometheus-client",
    "websockets",
    "pytest",
    "pytest-asyncio",
]


def locked_version(package: str) -> str:
    """The version of ``package`` that uv.lock pins."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for entry in lock["package"]:
        if entry["name"] == package:
            return str(entry["version"])
    sys.exit(f"uv.lock pins no {package}: run `python3 scripts/dev.py lock`")


def uv(env_dir: Path) -> Path:
    """The lock's uv, installed with pip into the virtualenv ``env_dir`` (created as needed)."""
    interpreter = env_dir / "bin" / "python"
    if not interpreter.exists():
        print(f"Creating virtualenv {env_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
    binary, wanted = env_dir / "bin" / "uv", locked_version("uv")
    found = subprocess.run(
        [binary, "--version"] if binary.exists() else ["true"], capture_output=True, text=True
    )
    if found.stdout.split()[1:2] != [wanted]:
        print(f"Installing uv {wanted}", flush=True)
        if binary.exists():  # a synced env has no pip (the lock has none): uv replaces itself
            install = [binary, "pip", "install", "--quiet", "--python", interpreter]
        else:
            install = [interpreter, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*install, f"uv=={wanted}"], check=True)
    return binary


def env_dir() -> Path:
    """The project's virtualenv: the active one, else .venv."""
    return Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv")


def python() -> Path:
    """The interpreter of the project's virtualenv, synced to uv.lock (dev extras)."""
    project = env_dir()
    tool = uv(project)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(project)}
    # --locked: fail, rather than re-resolve, when pyproject.toml and uv.lock disagree.
    run(tool, "sync", "--locked", "--extra", "dev", "--quiet", env=env)
    return project / "bin" / "python"


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


def docs(args: list[str]) -> None:
    """``mkdocs build --strict`` into site/ (``serve``: serve it with live reload)."""
    interpreter = python()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    if args[:1] == ["serve"]:
        run(interpreter, "-m", "mkdocs", "serve", "--strict", *args[1:], env=env)
    else:
        run(interpreter, "-m", "mkdocs", "build", "--strict", *args, env=env)
        print(f"The site is in {ROOT / 'site'}: open index.html")


def lock(args: list[str]) -> None:
    """Re-resolve uv.lock to the newest releases pyproject.toml allows (commit it on its own)."""
    tool = uv(env_dir())
    run(tool, "lock", "--upgrade", *args)


def test_range(args: list[str]) -> None:
    """pytest on a fresh resolution of pyproject.toml's ranges: their newest or lowest end."""
    if not args or args[0] not in {"newest", "lowest"}:
        sys.exit("usage: python3 scripts/dev.py test-range newest|lowest [--python X] [pytest…]")
    end, args = args[0], args[1:]
    interpreter_wanted = sys.executable
    if args[:1] == ["--python"]:
        interpreter_wanted, args = args[1], args[2:]
    tool = uv(env_dir())
    target = ROOT / f".venv-{end}"
    env = {**os.environ, "VIRTUAL_ENV": str(target)}
    run(tool, "venv", "--quiet", "--clear", "--python", interpreter_wanted, target, env=env)
    # newest: what `pip install gql_pubsub` gives a user today; lowest: every direct
    # dependency at the lower bound of its range (transitive ones newest).
    resolution = {"newest": "highest", "lowest": "lowest-direct"}[end]
    install = [tool, "pip", "install", "--quiet", "--refresh", "--resolution", resolution]
    run(*install, "-e", f"{ROOT}[test]", env=env)
    frozen = subprocess.run(
        [tool, "pip", "freeze"], env=env, capture_output=True, text=True, check=True
    ).stdout
    pins = dict(line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    version = subprocess.run(
        [target / "bin/python", "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    named = ", ".join(f"{name} {pins[name]}" for name in NAMED if name in pins)
    label = f"{end} resolution on Python {version}: {named}"
    print(f"== {label}", flush=True)
    result = subprocess.run([target / "bin/python", "-m", "pytest", *args], cwd=ROOT, env=env)
    if result.returncode:
        print(f"FAILED: the suite on the {label}", flush=True)
        sys.exit(result.returncode)


def main() -> None:
    commands = {"serve": serve, "test": test, "docs": docs, "lock": lock, "test-range": test_range}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3 scripts/dev.py {{{','.join(commands)}}} [args…]")
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
