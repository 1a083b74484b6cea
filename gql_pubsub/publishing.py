"""Publishing: send an event to channels, from sync or async code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from .broker import get_broker
from .events import Event, EventKind


def _channel_list(channels: str | Iterable[str]) -> list[str]:
    names = [channels] if isinstance(channels, str) else list(channels)
    if not names:
        raise ValueError("Publish to at least one channel.")
    return names


def publish_event_sync(channels: str | Iterable[str], event: Event) -> None:
    """Publish ``event`` to ``channels`` from sync code (views, shell, commands, threads).

    Inside a transaction (of the default database) the event goes out when it commits, through
    the outbox, so it is never lost; outside one it is published now, and ``BrokerUnavailable``
    is raised if Redis cannot be reached.
    """
    names = _channel_list(channels)
    if transaction.get_connection().in_atomic_block:
        from .relay import enqueue  # needs Django's apps: imported late

        enqueue(names, event, using=None)
        return
    get_broker().publish_sync(names, event)


async def publish_event(channels: str | Iterable[str], event: Event) -> None:
    """Publish ``event`` to ``channels`` from async code."""
    await get_broker().publish(_channel_list(channels), event)


def publish(channels: str | Iterable[str], kind: EventKind | str, data: dict[str, Any]) -> None:
    """Publish an arbitrary (non-model) event, e.g. ``publish(ch, "custom", {"typing": "ann"})``."""
    publish_event_sync(channels, Event(kind=EventKind(kind), model=None, pk=None, data=data))


async def apublish(
    channels: str | Iterable[str], kind: EventKind | str, data: dict[str, Any]
) -> None:
    """Publish an arbitrary (non-model) event from async code."""
    await publish_event(channels, Event(kind=EventKind(kind), model=None, pk=None, data=data))
