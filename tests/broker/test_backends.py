"""Backends are plugged in by settings, as Django's cache backends are: a class named by
``GQL_PUBSUB["BACKEND"]`` (here, classes defined in this module) is what the broker and the
transactional outbox use, with no change to the package."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from example.chat.models import Message
from gql_pubsub import EventKind, apublish
from gql_pubsub.broker.backends.memory import MemoryBackend
from gql_pubsub.broker.backends.redis import RedisBackend
from gql_pubsub.broker.process import get_broker
from gql_pubsub.models import OutboxEvent

from ..services import scaled


class RecordingBackend(MemoryBackend):
    """An in-process backend of the project's own: it also keeps what it is asked to publish."""

    published: ClassVar[list[tuple[list[str], bytes]]] = []

    async def publish(self, channels: list[str], payload: bytes) -> None:
        type(self).published.append((channels, payload))
        await super().publish(channels, payload)


class CountingRedisBackend(RedisBackend):
    """A durable backend of the project's own: Redis, counting the outbox's publishing steps."""

    steps: ClassVar[int] = 0

    def publish_many_sync(self, events: Any, **kwargs: Any) -> list[int]:
        type(self).steps += 1
        return super().publish_many_sync(events, **kwargs)


def not_a_backend() -> None:
    """A function, where a backend class belongs."""


@contextlib.contextmanager
def configured(**changes: Any) -> Iterator[None]:
    with override_settings(GQL_PUBSUB={**settings.GQL_PUBSUB, **changes}):
        yield


async def test_a_backend_class_named_in_settings_carries_the_events() -> None:
    """``BACKEND`` names the class; it is built with ``BROKER_URL`` and publishes and delivers."""
    with configured(BACKEND=f"{__name__}.RecordingBackend", BROKER_URL="recording://here"):
        broker = get_broker()
        assert type(broker.backend) is RecordingBackend
        assert broker.backend.safe_url == "recording://here"
        try:
            async with broker.subscribe("room") as subscriber:
                await apublish("room", "custom", {"n": 1})
                event = await asyncio.wait_for(anext(subscriber), scaled(5))
        finally:
            await broker.stop()
    assert (event.kind, event.data) == (EventKind.CUSTOM, {"n": 1})
    assert RecordingBackend.published[-1][0] == ["room"]


async def test_the_outbox_uses_a_durable_backend_of_the_projects_own(
    redis_url: str, make_user: Any, make_correspondence: Any
) -> None:
    """A committed save writes its outbox row and is published through the plugged-in class."""
    alice = await sync_to_async(make_user)("alice")
    correspondence = await sync_to_async(make_correspondence)(alice)
    before = CountingRedisBackend.steps
    with configured(BACKEND=f"{__name__}.CountingRedisBackend", BROKER_URL=redis_url):
        broker = get_broker()
        assert type(broker.backend) is CountingRedisBackend
        try:
            async with broker.subscribe(correspondence.channel) as subscriber:
                message = await sync_to_async(Message.objects.create)(
                    correspondence=correspondence, author=alice, body="kept"
                )
                event = await asyncio.wait_for(anext(subscriber), scaled(5))
        finally:
            await broker.stop()
    assert (event.kind, event.pk) == (EventKind.CREATED, message.pk)
    assert CountingRedisBackend.steps > before
    # It went through the outbox: its row was written in the transaction of the message.
    assert await OutboxEvent.objects.filter(payload__contains='"kept"').aexists()


def test_a_backend_that_cannot_be_imported_stops_the_checks_saying_so() -> None:
    """``manage.py check`` reports gql_pubsub.E006 with the reason, before any server starts."""
    with configured(BACKEND=f"{__name__}.Missing"):
        errors = [m for m in run_checks() if m.id == "gql_pubsub.E006"]
    assert len(errors) == 1
    assert f"GQL_PUBSUB['BACKEND'] = '{__name__}.Missing' cannot be imported" in errors[0].msg
    with configured(BACKEND=f"{__name__}.not_a_backend"):
        errors = [m for m in run_checks() if m.id == "gql_pubsub.E006"]
    assert [e.msg for e in errors] == [
        f"GQL_PUBSUB['BACKEND'] = '{__name__}.not_a_backend' is not a class: name the backend "
        "class."
    ]
