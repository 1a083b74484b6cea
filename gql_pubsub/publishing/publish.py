"""Publishing: send an event to channels, from sync or async code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from gql_pubsub.broker.process import get_broker
from gql_pubsub.core.events import Event, EventKind


def _channel_list(channels: str | Iterable[str]) -> list[str]:
    names = [channels] if isinstance(channels, str) else list(channels)
    if not names:
        raise ValueError("Publish to at least one channel.")
    return names


def publish(
    channels: str | Iterable[str],
    event: Event | EventKind | str,
    data: dict[str, Any] | None = None,
) -> None:
    """Publish an event to ``channels`` from sync code: ``publish(ch, "custom", {"n": 1})``.

    ``event`` is an :class:`Event`, or the kind of a custom event whose payload is ``data``.
    Inside a transaction (of the default database) the event goes out when it commits, through
    the outbox, so it is never lost; outside one it is published now, and ``BrokerUnavailable``
    is raised if Redis cannot be reached.
    """
    names = _channel_list(channels)
    built = _event(event, data)
    if transaction.get_connection().in_atomic_block:
        from gql_pubsub.publishing.outbox.writer import (
            enqueue,  # needs Django's apps: imported late
        )

        enqueue(names, built, using=None)
        return
    get_broker().publish_sync(names, built)


async def apublish(
    channels: str | Iterable[str],
    event: Event | EventKind | str,
    data: dict[str, Any] | None = None,
) -> None:
    """Publish an event to ``channels`` from async code, now: ``await apublish(ch, event)``."""
    await get_broker().publish(_channel_list(channels), _event(event, data))


def _event(event: Event | EventKind | str, data: dict[str, Any] | None) -> Event:
    if isinstance(event, Event):
        if data is not None:
            raise TypeError("An Event carries its data: publish(channels, event), without data.")
        return event
    return Event(kind=EventKind(event), model=None, pk=None, data=data if data is not None else {})
