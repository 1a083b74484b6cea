"""On PostgreSQL, a publishable model's autocommit save is two round trips: its BEGIN goes with
its first statement and its outbox rows with its COMMIT. A save whose event only the library
writes is one: the INSERT (or UPDATE) and its outbox row in one statement. The guarantee is the
outbox's own."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save, pre_save
from django.test import override_settings

from example.chat.models import Correspondence, Message
from gql_pubsub import get_broker, publish
from gql_pubsub.models import OutboxEvent

from ..helpers import published_data
from ..services import ROOT, captured_log, scaled, wait_until

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


@pytest.fixture(params=["one statement", "two round trips"])
def way(request: pytest.FixtureRequest) -> Iterator[str]:
    """How a create is saved: alone, or with another post_save receiver (which may write)."""
    if request.param == "one statement":
        yield request.param
        return

    def another(sender: Any, **kw: Any) -> None:
        """Another app's receiver: its writes belong to the save's transaction."""

    post_save.connect(another, sender=Message, dispatch_uid="test_fused_another")
    try:
        yield request.param
    finally:
        post_save.disconnect(dispatch_uid="test_fused_another", sender=Message)


@pytest.fixture
def listener(redis_url: str) -> Iterator[redis.client.PubSub]:
    """A Redis subscriber to the broker's channels (subscribe with the names, unprefixed)."""
    pubsub = redis.Redis.from_url(redis_url).pubsub()
    try:
        yield pubsub
    finally:
        pubsub.close()


def subscribe(listener: redis.client.PubSub, *channels: str) -> None:
    listener.subscribe(*(get_broker().prefix + channel for channel in channels))
    for _ in channels:
        assert listener.get_message(timeout=scaled(5))["type"] == "subscribe"  # type: ignore[index]


def test_a_create_is_one_statement_with_its_outbox_row_and_its_event_has_the_real_pk(
    chat: Any, listener: redis.client.PubSub
) -> None:
    """INSERT … RETURNING, and the outbox row made from what it returns: one round trip, no
    BEGIN; the event (pk, snapshot, instance channel) has the pk PostgreSQL gave the row."""
    alice, correspondence = chat
    subscribe(listener, correspondence.channel)
    with protocol() as messages:
        message = Message.objects.create(correspondence=correspondence, author=alice, body="a")
    assert round_trips(messages) == 1, messages
    (statement,) = queries(messages)
    assert statement.startswith('"WITH m AS (INSERT INTO "chat_message"')
    assert '"gql_pubsub_outboxevent"' in statement and "BEGIN" not in statement
    (data,) = published_data(listener, until=2)
    assert data == {**data, "id": message.pk, "body": "a"}
    mine = f'"model":"chat.message","pk":{message.pk},'
    row = OutboxEvent.objects.filter(payload__contains=mine).first()
    assert row is None or row.channels == message.get_publish_channels()  # unless relayed
    assert connection.get_autocommit() and connection.connection.autocommit


def test_another_pre_save_receiver_runs_inside_the_saves_transaction_of_one_statement(
    chat: Any,
) -> None:
    """Without other receivers the save opens no atomic() block (the one statement is the
    whole transaction); with a pre_save receiver, that receiver runs inside one, as always,
    and the create is still one statement."""
    alice, correspondence = chat
    seen: list[bool] = []

    def inside(sender: Any, **kw: Any) -> None:
        seen.append(connection.in_atomic_block)

    pre_save.connect(inside, sender=Message, dispatch_uid="test_fused_inside")
    try:
        with protocol() as messages:
            Message.objects.create(correspondence=correspondence, author=alice, body="in")
    finally:
        pre_save.disconnect(dispatch_uid="test_fused_inside", sender=Message)
    assert seen == [True]
    assert round_trips(messages) == 1 and queries(messages)[0].startswith('"WITH m AS (INSERT')
    assert connection.get_autocommit() and connection.connection.autocommit


def test_an_update_is_one_statement_with_its_outbox_row(
    chat: Any, listener: redis.client.PubSub
) -> None:
    """UPDATE … RETURNING, and the outbox row if it found its row: one round trip, no BEGIN."""
    alice, correspondence = chat
    message = Message.objects.create(correspondence=correspondence, author=alice, body="a")
    subscribe(listener, message.instance_channel())
    message.body = "b"
    with protocol() as messages:
        message.save()
    assert round_trips(messages) == 1, messages
    (statement,) = queries(messages)
    assert statement.startswith('"WITH m AS (UPDATE "chat_message" SET')
    assert [data["body"] for data in published_data(listener, until=2)] == ["b"]
    assert Message.objects.get(pk=message.pk).body == "b"
    assert connection.get_autocommit() and connection.connection.autocommit


def test_an_update_that_finds_no_row_inserts_it_with_its_event_in_one_transaction(
    chat: Any, listener: redis.client.PubSub
) -> None:
    """The one statement updates nothing and writes no outbox row; Django then INSERTs the row,
    in a transaction of its own with its outbox row, and its event is published."""
    alice, correspondence = chat
    message = Message.objects.create(correspondence=correspondence, author=alice, body="a")
    Message.objects.filter(pk=message.pk).delete()  # behind the instance's back
    subscribe(listener, message.instance_channel())
    message.body = "again"
    with protocol() as messages:
        message.save()
    assert queries(messages)[0].startswith('"WITH m AS (UPDATE')
    assert any(text.startswith('"INSERT INTO "chat_message"') for text in queries(messages))
    assert [data["body"] for data in published_data(listener, until=2)] == ["again"]
    assert Message.objects.get(pk=message.pk).body == "again"
    assert connection.get_autocommit() and connection.connection.autocommit


def test_with_another_receiver_a_create_and_an_update_are_two_round_trips_each(
    chat: Any,
) -> None:
    """Another app's receiver may write: BEGIN rides with the INSERT (or UPDATE), the outbox
    INSERT with the COMMIT, so that its writes are in the transaction: 2 round trips, not 4."""
    alice, correspondence = chat

    def another(sender: Any, **kw: Any) -> None:
        """Another app's receiver."""

    post_save.connect(another, sender=Message, dispatch_uid="test_fused_another")
    try:
        with protocol() as created:
            message = Message.objects.create(correspondence=correspondence, author=alice, body="a")
        message.body = "b"
        with protocol() as updated:
            message.save()
    finally:
        post_save.disconnect(dispatch_uid="test_fused_another", sender=Message)
    for messages, statement in ((created, "INSERT INTO"), (updated, "UPDATE")):
        assert round_trips(messages) == 2, messages
        first, second = queries(messages)
        assert first.startswith(f'"BEGIN;{statement} "chat_message"')
        assert '"gql_pubsub_outboxevent"' in second and second.endswith('; COMMIT"')
    assert connection.get_autocommit() and connection.connection.autocommit
    assert Message.objects.get(pk=message.pk).body == "b"


def test_a_create_whose_channels_compute_with_the_pk_takes_two_round_trips_and_the_real_pk(
    chat: Any, listener: redis.client.PubSub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel computed from the pk (not its digits) cannot be built before the pk exists:
    the stand-in pk notices, and the event goes the two-trip way, to the right channel."""
    alice, correspondence = chat
    own = Message.get_publish_channels
    monkeypatch.setattr(
        Message, "get_publish_channels", lambda self: [*own(self), f"shard-{self.pk % 3}"]
    )
    subscribe(listener, *(f"shard-{n}" for n in range(3)))
    with protocol() as messages:
        message = Message.objects.create(correspondence=correspondence, author=alice, body="s")
    assert round_trips(messages) == 2 and queries(messages)[0].startswith('"BEGIN;INSERT')
    (data,) = published_data(listener, until=2)
    assert data["id"] == message.pk


def test_a_pk_computed_with_unnoticed_is_corrected_before_its_event_is_published(
    chat: Any,
    listener: redis.client.PubSub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Code that computes with the pk behind the stand-in's back (int's own method, called on
    it) gets a wrong channel in the committed row: the event built from the real pk corrects
    it before anything is published, and no other shard's subscriber receives it."""
    alice, correspondence = chat
    own = Message.get_publish_channels
    monkeypatch.setattr(
        Message,
        "get_publish_channels",
        lambda self: [*own(self), f"shard-{int.__mod__(self.pk, 3)}"],
    )
    subscribe(listener, *(f"shard-{n}" for n in range(3)))
    with captured_log("gql_pubsub.publishing", logging.WARNING) as log:
        for n in range(6):  # two of three stand-ins fall on another shard than the real pk
            publish_sharded(correspondence, alice, n, listener)
    assert any("stand-in" in message for message in log.messages)


def publish_sharded(correspondence: Any, alice: Any, n: int, listener: Any) -> None:
    """One create, in one statement; only its real pk's shard receives its event."""
    with protocol() as messages:
        message = Message.objects.create(correspondence=correspondence, author=alice, body=n)
    assert queries(messages)[0].startswith('"WITH m AS (INSERT')  # then the correction
    received = []
    while (got := listener.get_message(timeout=scaled(5))) is not None:
        received.append(got)
        if got["type"] == "message":
            break
    assert [m["channel"].decode() for m in received] == [
        f"{get_broker().prefix}shard-{message.pk % 3}"
    ]


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
        received = published_data(listener, until=3)
        assert [r.get("body", r.get("after")) for r in received] == ["x", "x"]
    finally:
        post_save.disconnect(dispatch_uid="test_fused_also", sender=Message)
        listener.close()


def test_a_save_that_fails_at_its_commit_leaves_neither_row_and_the_connection_usable(
    chat: Any, way: str
) -> None:
    """A foreign key checked at COMMIT fails the fused COMMIT (or the one statement, which
    commits on its own): IntegrityError, nothing kept."""
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
from django.db.models.signals import post_save, pre_save
from example.chat.models import Message

def die_after_commit(sender, **kw):
    # Registered before the save's own hook, so it runs first: the process dies after the
    # (fused) COMMIT and before the publish.
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))

pre_save.connect(die_after_commit, sender=Message)
if sys.argv[3] == "two round trips":  # another receiver: the two-trip way
    post_save.connect(lambda sender, **kw: None, sender=Message, weak=False)
Message.objects.create(correspondence_id=int(sys.argv[1]), author_id=int(sys.argv[2]),
                       body="fused orphan, " + sys.argv[3])
"""


def test_an_autocommit_save_killed_after_its_commit_is_relayed_once(
    chat: Any, redis_url: str, way: str
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
            [sys.executable, "-c", KILLED_AFTER_COMMIT, str(correspondence.pk), str(alice.pk), way],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "example.settings", "REDIS_URL": own_url},
            capture_output=True,
            timeout=scaled(60),
        )
        assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()
        body = f"fused orphan, {way}"
        orphan = OutboxEvent.objects.filter(payload__contains=f'"{body}"')
        assert orphan.count() == 1 and Message.objects.filter(body=body).exists()
        config = {**settings.GQL_PUBSUB, "BROKER_URL": own_url, "RELAY_CLAIM_TIMEOUT": 1}
        with override_settings(GQL_PUBSUB=config):
            wait_until(lambda: relay_once() >= 1, 10, "the relay to publish the orphan")
            bodies = [data["body"] for data in published_data(listener, until=2)]
            assert bodies == [body]
    finally:
        listener.close()
