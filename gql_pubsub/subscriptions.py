"""Helpers for subscription resolvers: broker events in, model instances out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING, TypeVar

from .broker import Broker, get_broker
from .events import Event, EventKind

if TYPE_CHECKING:
    from .models import PublishableModel

M = TypeVar("M", bound="PublishableModel")


async def listen(
    *channels: str,
    kinds: Collection[EventKind] | None = None,
    broker: Broker | None = None,
) -> AsyncIterator[Event]:
    """Yield the events published on ``channels`` (optionally only these ``kinds``)."""
    async with (broker or get_broker()).subscribe(*channels) as subscriber:
        async for event in subscriber:
            if kinds is None or event.kind in kinds:
                yield event


async def instances(
    model: type[M],
    *channels: str,
    kinds: Collection[EventKind] | None = None,
    broker: Broker | None = None,
) -> AsyncIterator[M]:
    """Yield ``model`` instances rebuilt from the events on ``channels`` (no query)."""
    async for _kind, instance in model_events(model, *channels, kinds=kinds, broker=broker):
        yield instance


async def model_events(
    model: type[M],
    *channels: str,
    kinds: Collection[EventKind] | None = None,
    broker: Broker | None = None,
) -> AsyncIterator[tuple[EventKind, M]]:
    """Yield ``(kind, instance)`` for events of ``model`` on ``channels``."""
    label = model.publish_label()
    async for event in listen(*channels, kinds=kinds, broker=broker):
        if event.model == label:
            yield event.kind, model.from_event(event)
