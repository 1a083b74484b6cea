"""On PostgreSQL, a publishable model's autocommit save is two round trips: its BEGIN goes with
its first statement and its outbox rows with its COMMIT; the guarantee is the outbox's own."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.test import override_settings

from example.chat.models import Correspondence, Message
from gql_pubsub import get_broker, publish
from gql_pubsub.broker.backends.redis import split_message
from gql_pubsub.models import OutboxEvent

from ..services import ROOT, scaled, wait_until

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the fused save is PostgreSQL's (CI runs the suite on PostgreSQL; DATABASE_URL=…)",
)


@contextlib.contextmanager
def protocol() -> Iterator[list[tuple[str, str]]]:
    """The messages between this connection and PostgreSQL, read from libpq's trace."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    messages: list[tuple[str, str]] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        try:
            yield messages
        finally:
            pgconn.untrace()
            trace.seek(0)
            for line in trace.read().splitlines():
                found = re.search(r"\b([FB])\t\d+\t(\w+)\t ?(.*)$", line)
                if found:
                    messages.append((found[2], found[3]))


def queries(messages: list[tuple[str, str]]) -> list[str]:
    return [text for kind, text in messages if kind in ("Query", "Parse")]


def round_trips(messages: list[tuple[str, str]]) -> int:
    return sum(kind == "ReadyForQuery" for kind, _ in messages)


@pytest.fixture
def chat(make_user: Callable[..., Any], make_correspondence: Callable[..., Any]) -> Any:
    alice = make_user("alice")
    return alice, make_correspondence(alice)


def test_a_create_and_an_update_are_two_round_trips_each_with_the_outbox_row_in_the_commit(
    chat: Any,
) -> None:
    """BEGIN rides with the INSERT (or UPDATE), the outbox INSERT with the COMMIT: 2, not 4."""
    alice, correspondence = chat
    before = OutboxEvent.objects.count()
    with protocol() as created:
        message = Message.objects.create(correspondence=correspondence, author=alice, body="a")
    message.body = "b"
    with protocol() as updated:
        message.save()
    for messages, statement in ((created, "INSERT INTO"), (updated, "UPDATE")):
        assert round_trips(messages) == 2, messages
        first, second = queries(messages)
        assert first.startswith(f'"BEGIN;{statement} "chat_message"')
        assert '"gql_pubsub_outboxevent"' in second and second.endswith('; COMMIT"')
    assert OutboxEvent.objects.count() in (before, before + 2)  # published: deleted by a relay
    assert connection.get_autocommit() and connection.connection.autocommit
    assert Message.objects.get(pk=message.pk).body == "b"


def test_events_published_from_inside_the_save_go_out_with_its_commit_in_order(
    chat: Any, redis_url: str
) -> None:
    """A receiver's publish() joins the save's COMMIT as a second outbox row; both arrive."""
    alice, correspondence = chat
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe(get_broker().prefix + correspondence.channel)

    def also(sender: Any, instance: Message, **kw: Any) -> None:
        publish(correspondence.channel, "custom", {"after": instance.body})

    post_save.connect(also, sender=Message, dispatch_uid="test_fused_also")
    try:
        with protocol() as messages:
            Message.objects.create(correspondence=correspondence, author=alice, body="x")
        assert round_trips(messages) == 2
        assert queries(messages)[1].count("), (") == 1  # two outbox rows, one statement
        received: list[Any] = []
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline and len(received) < 2:
            message = listener.get_message(timeout=0.2)  # bounded; ends on the deadline
            if message and message["type"] == "message":
                received.append(orjson.loads(split_message(message["data"])[2])["data"])
        assert [r.get("body", r.get("after")) for r in received] == ["x", "x"]
    finally:
        post_save.disconnect(dispatch_uid="test_fused_also", sender=Message)
        listener.close()


def test_a_save_that_fails_at_its_commit_leaves_neither_row_and_the_connection_usable(
    chat: Any,
) -> None:
    """A foreign key checked at COMMIT fails the fused COMMIT: IntegrityError, nothing kept."""
    alice, correspondence = chat
    outbox, rows = OutboxEvent.objects.count(), Message.objects.count()
    with pytest.raises(IntegrityError):
        Message.objects.create(correspondence_id=10**9, author=alice, body="dangling")
    assert (OutboxEvent.objects.count(), Message.objects.count()) == (outbox, rows)
    assert connection.get_autocommit() and connection.connection.autocommit
    Message.objects.create(correspondence=correspondence, author=alice, body="after")
    assert Message.objects.filter(body="after").exists()


def test_a_receiver_that_raises_after_the_insert_rolls_the_row_back(chat: Any) -> None:
    """The row was sent with the BEGIN; an error before the COMMIT rolls it back, as atomic()."""
    alice, correspondence = chat

    def fail(sender: Any, **kw: Any) -> None:
        raise RuntimeError("receiver failed")

    post_save.connect(fail, sender=Message, dispatch_uid="test_fused_fail")
    try:
        with pytest.raises(RuntimeError, match="receiver failed"):
            Message.objects.create(correspondence=correspondence, author=alice, body="gone")
    finally:
        post_save.disconnect(dispatch_uid="test_fused_fail", sender=Message)
    assert not Message.objects.filter(body="gone").exists()
    assert not OutboxEvent.objects.filter(payload__contains='"gone"').exists()
    assert connection.get_autocommit() and connection.connection.autocommit


def test_a_save_inside_a_transaction_is_left_to_it(chat: Any) -> None:
    """Inside the caller's atomic() the save adds its statements and commits nothing itself."""
    alice, correspondence = chat
    with transaction.atomic(), protocol() as messages:
        Message.objects.create(correspondence=correspondence, author=alice, body="inner")
        Correspondence.objects.filter(pk=correspondence.pk).update(title="t")
    assert not any("COMMIT" in text for text in queries(messages))


KILLED_AFTER_COMMIT = """
import os, signal, sys
import django
django.setup()
from django.db import transaction
from django.db.models.signals import pre_save
from example.chat.models import Message

def die_after_commit(sender, **kw):
    # Registered before the save's own hook, so it runs first: the process dies after the
    # (fused) COMMIT and before the publish.
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))

pre_save.connect(die_after_commit, sender=Message)
Message.objects.create(correspondence_id=int(sys.argv[1]), author_id=int(sys.argv[2]),
                       body="fused orphan")
"""


def test_an_autocommit_save_killed_after_its_commit_is_relayed_once(
    chat: Any, redis_url: str
) -> None:
    """SIGKILL between the fused COMMIT and the publish: a relay publishes the event, once."""
    from django.conf import settings

    from gql_pubsub.publishing.outbox.forwarder import relay_once

    alice, correspondence = chat
    own_url = redis_url.rsplit("/", 1)[0] + "/12"  # a destination no other relay serves
    listener = redis.Redis.from_url(own_url).pubsub()
    listener.subscribe(f"gql_pubsub:12:{correspondence.channel}")
    try:
        writer = subprocess.run(
            [sys.executable, "-c", KILLED_AFTER_COMMIT, str(correspondence.pk), str(alice.pk)],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "example.settings", "REDIS_URL": own_url},
            capture_output=True,
            timeout=scaled(60),
        )
        assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()
        orphan = OutboxEvent.objects.filter(payload__contains='"fused orphan"')
        assert orphan.count() == 1 and Message.objects.filter(body="fused orphan").exists()
        config = {**settings.GQL_PUBSUB, "BROKER_URL": own_url, "RELAY_CLAIM_TIMEOUT": 1}
        with override_settings(GQL_PUBSUB=config):
            wait_until(lambda: relay_once() >= 1, 10, "the relay to publish the orphan")
            bodies = []
            deadline = time.monotonic() + scaled(5)
            while time.monotonic() < deadline and len(bodies) < 2:
                message = listener.get_message(timeout=0.2)  # bounded; ends on the deadline
                if message and message["type"] == "message":
                    bodies.append(orjson.loads(split_message(message["data"])[2])["data"]["body"])
            assert bodies == ["fused orphan"]
    finally:
        listener.close()
