"""A change of access is announced on the user's control channel: a revocation before its
transaction commits (seen on the wire with a raw redis-py subscriber while the transaction is
still open) and again after it; a rolled-back one only before; in the wire form earlier
releases read."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.db import transaction

from gql_pubsub import Event, EventKind
from gql_pubsub.broker.backends.redis import split_message
from gql_pubsub.broker.process import configured_prefix
from gql_pubsub.core.control import Announcement, Change, control_channel
from gql_pubsub.models import revoke

from ..services import scaled


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
