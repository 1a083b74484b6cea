"""The example with nothing installed: the in-memory broker in one uvicorn process."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import MESSAGE_ADDED, connected, data_of, send_message
from ..services import LiveServer, example_process, live_server, to_thread, wait_until


@pytest.fixture(scope="module")
def memory_server(log_dir: Path) -> Iterator[LiveServer]:
    with live_server({"REDIS_URL": ""}, log_dir=log_dir) as live:
        yield live


async def test_without_redis_the_example_delivers_within_its_process(
    memory_server: LiveServer,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """No REDIS_URL: the server says it uses the in-memory broker, and subscriptions work."""
    from asgiref.sync import sync_to_async

    alice, bob = await sync_to_async(lambda: (make_user("alice"), make_user("bob")))()
    correspondence = await sync_to_async(make_correspondence)(alice, bob)
    async with await connected(memory_server, token_for(bob)) as client:
        await client.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
        # No Redis to ask whether the subscription is live: resend until the first one arrives.
        first = None
        for attempt in range(50):
            await send_message(memory_server, token_for(alice), correspondence.pk, f"try {attempt}")
            try:
                first = await client.next_payload("m", timeout=0.2)
                break
            except TimeoutError:
                continue
        assert first is not None, "no message reached the subscriber"
        marker = await send_message(memory_server, token_for(alice), correspondence.pk, "marker")
        # Before the marker come only the later tries (at most one per attempt made).
        for _ in range(attempt + 1):
            payload = await client.next_payload("m")
            if payload["data"]["messageAdded"]["id"] == marker["id"]:
                break
            assert payload["data"]["messageAdded"]["body"].startswith("try "), payload
        else:
            raise AssertionError(f"the marker did not follow the {attempt + 1} tries")
    assert (await data_of(memory_server, "{ me { id } }")) == {"me": None}
    await to_thread(
        wait_until, lambda: "in-memory broker" in memory_server.log.read_text(), 5, "the log line"
    )


async def test_without_redis_a_client_resumes_from_its_cursor_within_the_process(
    memory_server: LiveServer,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """The in-memory broker keeps the same history: the live marker is the subscription's ack,
    and a client back with its cursor gets what it missed, once, in order."""
    from asgiref.sync import sync_to_async

    from ..broker.test_resume import live_cursor, resumable

    alice, bob = await sync_to_async(lambda: (make_user("alice"), make_user("bob")))()
    correspondence = await sync_to_async(make_correspondence)(alice, bob)
    async with await connected(memory_server, token_for(bob)) as client:
        await resumable(client, correspondence, None)
        await live_cursor(client)  # live: nothing sent from now on can be missed
        await send_message(memory_server, token_for(alice), correspondence.pk, "one")
        cursor = (await client.next_payload("m"))["extensions"]["cursor"]
    for body in ("two", "three"):
        await send_message(memory_server, token_for(alice), correspondence.pk, body)
    async with await connected(memory_server, token_for(bob)) as client:
        await resumable(client, correspondence, cursor)
        assert await live_cursor(client) == cursor
        missed = [(await client.next_payload("m"))["data"]["messageAdded"]["body"] for _ in "ab"]
        assert missed == ["two", "three"]
        await client.expect_silence(0.3)


async def test_the_in_process_history_keeps_each_event_at_about_its_size() -> None:
    """1,000 events of ~100 bytes in a channel's history take under 0.5 KB each (orjson's
    bytes carry a 4 KB buffer each: kept as they come, 1,000 events took 4 MB)."""
    import tracemalloc

    from gql_pubsub.broker.broker import Broker
    from gql_pubsub.core.events import Event, EventKind

    broker = Broker("memory://", history_length=1000)
    await broker.start()
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1000):
            await broker.publish(["room"], Event(EventKind.CUSTOM, None, n, {"body": "x" * 60}))
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    finally:
        await broker.stop()
    assert kept < 1000 * 500, f"{kept / 1000:.0f} bytes an event"


UNSERVED = "the event reaches only subscribers in this same process"
"""Part of the WARNING of a process that publishes to the in-memory broker and serves nothing."""

SHELL_WRITES = """
import uuid
from django.contrib.auth import get_user_model
from example.chat.models import Correspondence, Message

author = get_user_model().objects.create_user(f"shell-{uuid.uuid4().hex}")
correspondence = Correspondence.objects.create(title="from the shell")
for body in ("one", "two"):
    Message.objects.create(correspondence=correspondence, author=author, body=body)
print("written")
"""


def test_a_shell_that_writes_to_the_in_memory_broker_warns_once_that_no_server_hears_it() -> None:
    """`manage.py shell` with no REDIS_URL: its writes reach no server's subscribers, and its
    stderr says so once, with the fix, however many writes it makes."""
    done = example_process("-m", "django", "shell", "-c", SHELL_WRITES, redis_url=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "written"
    assert done.stderr.count(UNSERVED) == 1, done.stderr
    [line] = [line for line in done.stderr.splitlines() if UNSERVED in line]
    assert line.startswith("WARNING gql_pubsub.broker: ")
    assert "set GQL_PUBSUB['BROKER_URL'] = 'redis://" in line


async def test_a_write_in_the_server_process_does_not_warn(
    memory_server: LiveServer, pair: Any
) -> None:
    """The server holds its broker: what it publishes reaches its own subscribers, no warning."""
    alice_token, _, correspondence = pair
    # The mutation answers after its commit, whose publish (and any warning) came first.
    await send_message(memory_server, alice_token, correspondence.pk, "served")
    assert UNSERVED not in memory_server.log.read_text()
    assert "in-memory broker" in memory_server.log.read_text()  # the server's own log, read


CHECKED_SECRETS = {"JWT_SECRET": "k" * 48}


@pytest.mark.parametrize(
    ("config", "debug", "expected"),
    [
        ({"BROKER_URL": None}, False, ["gql_pubsub.W002"]),
        ({"BROKER_URL": "memory://"}, False, ["gql_pubsub.W002"]),
        (
            {"BROKER_URL": None, "BACKEND": "gql_pubsub.broker.backends.memory.MemoryBackend"},
            False,
            ["gql_pubsub.W002"],
        ),
        ({"BROKER_URL": None}, True, []),
        ({}, False, []),  # the suite's Redis
    ],
    ids=["no-url", "memory-url", "memory-backend", "debug-on", "redis"],
)
def test_the_in_memory_broker_with_debug_off_is_a_check_warning(
    config: dict[str, Any], debug: bool, expected: list[str]
) -> None:
    """In production the in-memory broker is a warning saying what it cannot do, and the fix."""
    from django.conf import settings
    from django.core.checks import run_checks
    from django.test import override_settings

    with override_settings(DEBUG=debug, GQL_PUBSUB={**settings.GQL_PUBSUB, **config}):
        found = [message for message in run_checks() if message.id == "gql_pubsub.W002"]
    assert [message.id for message in found] == expected
    for message in found:
        assert "in-memory broker delivers only within one process" in message.msg
        assert "Celery" in message.msg
        assert "GQL_PUBSUB['BROKER_URL'] = 'redis://" in (message.hint or "")


def test_manage_py_check_shows_the_in_memory_broker_warning_unless_silenced() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    config = {**settings.GQL_PUBSUB, **CHECKED_SECRETS, "BROKER_URL": None}
    for silenced, shown in (([], True), (["gql_pubsub.W002"], False)):
        out, err = io.StringIO(), io.StringIO()
        with override_settings(
            DEBUG=False,
            SECRET_KEY="s" * 60,
            GQL_PUBSUB=config,
            SILENCED_SYSTEM_CHECKS=silenced,
        ):
            call_command("check", stdout=out, stderr=err)
        assert ("gql_pubsub.W002" in out.getvalue() + err.getvalue()) is shown, out.getvalue()


REPLACED_BROKER = """
import asyncio, gc, os, tempfile, warnings
from pathlib import Path
warnings.simplefilter("error")  # an unclosed lock file is a ResourceWarning: fail on it
import django
django.setup()
import gunicorn.workers.base  # noqa: F401  (what makes a process count as a server's worker)
from django.test import override_settings
from gql_pubsub import get_broker

lock = Path(tempfile.gettempdir()) / f"gql_pubsub-workers-{os.getppid()}" / f"{os.getpid()}.lock"

async def main():
    await get_broker().start()
    assert lock.exists(), "the worker holds its lock file while its broker runs"
    with override_settings(GQL_PUBSUB={"BROKER_URL": "memory://", "SUBSCRIBER_BUFFER": 7}):
        get_broker()  # other settings: the broker is built anew, the old one let go
    gc.collect()
    print("released" if not lock.exists() else "kept")

asyncio.run(main())
"""


def test_a_workers_in_memory_broker_replaced_by_new_settings_lets_its_lock_file_go() -> None:
    """A server worker's in-memory broker holds a lock file (to count its siblings); a broker
    built anew when the settings change closes and removes the old one's, leaking nothing."""
    done = example_process("-c", REPLACED_BROKER, redis_url=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "released", done.stdout + done.stderr
