"""Publishable models publish after commit, with a snapshot subscribers can use as is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from example.chat.models import Correspondence, Message
from gql_pubsub import (
    SKIP,
    Broker,
    Event,
    EventKind,
    Skip,
    get_broker,
    instances,
    model_events,
    publish,
)

from ..services import scaled, to_thread, wait_until


@pytest.fixture
def chat(make_user: Callable[..., Any], make_correspondence: Callable[..., Any]) -> Any:
    alice = make_user("alice")
    return alice, make_correspondence(alice)


async def next_event(stream: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(stream), scaled(5))


async def test_create_update_and_delete_each_publish_their_kind_with_a_snapshot(
    broker: Broker, chat: Any
) -> None:
    """A subscriber to the correspondence's channel sees created, updated, deleted in order."""
    alice, correspondence = chat
    async with broker.subscribe(correspondence.channel) as subscriber:

        @sync_to_async
        def write() -> int:
            message = Message.objects.create(
                correspondence=correspondence, author=alice, body="one"
            )
            message.body = "two"
            message.save()
            pk = message.pk
            message.delete()
            return int(pk)

        pk = await write()
        events = [await next_event(subscriber) for _ in range(3)]
    assert [e.kind for e in events] == [EventKind.CREATED, EventKind.UPDATED, EventKind.DELETED]
    assert {(e.model, e.pk) for e in events} == {("chat.message", pk)}
    created, updated, deleted = (Message.from_event(e) for e in events)
    assert (created.pk, created.body, created.author_id) == (pk, "one", alice.pk)
    assert created.created_at.tzinfo is not None  # rebuilt as a real datetime, not a string
    assert updated.body == "two"
    assert (deleted.pk, deleted.body) == (pk, "two")


async def test_model_events_yields_kinds_and_instances(broker: Broker, chat: Any) -> None:
    """The resolver helper turns a channel's events into (kind, instance) pairs."""
    alice, correspondence = chat
    stream = model_events(Message, correspondence.channel, kinds={EventKind.UPDATED})
    first = asyncio.ensure_future(anext(stream))
    await to_thread(
        wait_until, lambda: broker.subscriber_count(correspondence.channel), 5, "subscribed"
    )

    @sync_to_async
    def write() -> None:
        message = Message.objects.create(correspondence=correspondence, author=alice, body="a")
        message.body = "b"
        message.save()

    await write()
    kind, message = await asyncio.wait_for(first, scaled(5))
    assert (kind, message.body) == (EventKind.UPDATED, "b")  # the CREATED one was filtered out
    assert isinstance(message, Message)
    await stream.aclose()


async def test_a_rolled_back_write_publishes_nothing(broker: Broker, chat: Any) -> None:
    """Only committed writes are announced: the rolled-back message never arrives."""
    alice, correspondence = chat
    async with broker.subscribe(correspondence.channel) as subscriber:

        @sync_to_async
        def write() -> None:
            try:
                with transaction.atomic():
                    Message.objects.create(correspondence=correspondence, author=alice, body="lost")
                    raise LookupError("roll back")
            except LookupError:
                pass
            with transaction.atomic():
                Message.objects.create(correspondence=correspondence, author=alice, body="kept")

        await write()
        first = await next_event(subscriber)
    assert first.data["body"] == "kept"


async def test_publishing_waits_for_the_outer_transaction(broker: Broker, chat: Any) -> None:
    """Inside a transaction nothing is published until it commits, publish() included."""
    alice, correspondence = chat
    async with broker.subscribe(correspondence.channel) as subscriber:

        @sync_to_async
        def write() -> None:
            with transaction.atomic():
                Message.objects.create(correspondence=correspondence, author=alice, body="later")
                publish(correspondence.channel, "custom", {"marker": "in the transaction"})
                # Published right away by the broker itself: it must arrive before both.
                get_broker().publish_sync(
                    [correspondence.channel],
                    Event(kind=EventKind.CUSTOM, model=None, pk=None, data={"now": True}),
                )

        await write()
        events = [await next_event(subscriber) for _ in range(3)]
    assert events[0].data == {"now": True}
    assert events[1].data["body"] == "later"
    assert events[2].data == {"marker": "in the transaction"}


async def test_publish_in_a_rolled_back_transaction_publishes_nothing(
    broker: Broker, chat: Any
) -> None:
    """publish() inside a transaction that rolls back is dropped with it."""
    _alice, correspondence = chat
    async with broker.subscribe(correspondence.channel) as subscriber:

        @sync_to_async
        def write() -> None:
            with contextlib.suppress(RuntimeError), transaction.atomic():
                publish(correspondence.channel, "custom", {"marker": "rolled back"})
                raise RuntimeError("roll back")
            publish(correspondence.channel, "custom", {"marker": "after"})

        await write()
        assert (await next_event(subscriber)).data == {"marker": "after"}


async def test_the_model_decides_its_channels(broker: Broker, chat: Any) -> None:
    """Messages publish to the model, instance and correspondence channels."""
    alice, correspondence = chat
    message = await Message.objects.acreate(correspondence=correspondence, author=alice, body="x")
    assert message.get_publish_channels() == [
        "chat.message",
        f"chat.message:{message.pk}",
        f"correspondence:{correspondence.pk}",
    ]
    assert Correspondence.model_channel() == "chat.correspondence"


def test_an_event_rebuilds_the_instance_without_a_query(chat: Any) -> None:
    """from_event gives a model instance equal to the saved one, with no database access."""
    alice, correspondence = chat
    message = Message.objects.create(correspondence=correspondence, author=alice, body="snap")
    event = message.publish_event(EventKind.UPDATED)
    with CaptureQueriesContext(connection) as queries:
        rebuilt = Message.from_event(event)
    assert len(queries) == 0
    assert (rebuilt.pk, rebuilt.body, rebuilt.correspondence_id) == (
        message.pk,
        "snap",
        correspondence.pk,
    )
    assert rebuilt.created_at == message.created_at
    assert not rebuilt._state.adding


async def test_publish_and_apublish_take_an_event_or_a_custom_kind_with_its_data(
    broker: Broker, chat: Any
) -> None:
    """publish()/apublish() send an Event as is, or build a custom one from a kind and data."""
    from gql_pubsub import apublish

    _alice, correspondence = chat
    built = Event(kind=EventKind.UPDATED, model="chat.message", pk=7, data={"body": "as is"})
    async with broker.subscribe(correspondence.channel) as subscriber:
        await sync_to_async(publish)(correspondence.channel, built)
        await apublish([correspondence.channel], "custom", {"n": 2})
        await apublish(correspondence.channel, "custom")
        got = [await next_event(subscriber) for _ in range(3)]
    assert [(e.kind, e.model, e.pk, e.data) for e in got] == [
        (EventKind.UPDATED, "chat.message", 7, {"body": "as is"}),
        (EventKind.CUSTOM, None, None, {"n": 2}),
        (EventKind.CUSTOM, None, None, {}),
    ]
    with pytest.raises(TypeError, match="An Event carries its data"):
        await apublish(correspondence.channel, built, {"n": 3})
    with pytest.raises(ValueError, match=r"^Publish to at least one channel\.$"):
        await apublish([], "custom", {"n": 4})


def test_instances_as_type_names_a_strawberry_django_type_of_that_model() -> None:
    """``as_type`` types the stream for the resolver; a type of another model is refused."""
    from example.chat.schema import CorrespondenceType, MessageType

    assert instances(Message, "room", as_type=MessageType).channels == {"room"}
    fix = r"declare it with @strawberry_django\.type\(Message\)\."
    refused = rf"^as_type=CorrespondenceType is not a strawberry_django type of Message: {fix}"
    with pytest.raises(TypeError, match=refused):
        instances(Message, "room", as_type=CorrespondenceType)
    with pytest.raises(TypeError, match=r"^as_type=str is not a strawberry_django type"):
        instances(Message, "room", as_type=str)


def test_skip_is_one_value_of_its_own_type() -> None:
    """``SKIP`` is ``Skip.SKIP`` (a ``map`` is typed ``-> T | Skip``) and reads as SKIP."""
    assert SKIP is Skip.SKIP
    assert list(Skip) == [SKIP]
    assert repr(SKIP) == "SKIP"
