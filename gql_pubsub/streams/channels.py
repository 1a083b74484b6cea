"""Helpers for subscription resolvers: broker events in, values (e.g. model instances) out.

Each helper returns a :class:`ChannelStream`: an async iterator that also *describes* what it
streams (channels, kinds, mapping). The WebSocket server recognises it and serves every
subscriber with the same stream and the same operation from one execution per event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Callable, Collection, Hashable
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar, overload

from gql_pubsub.broker.broker import Broker
from gql_pubsub.broker.listeners import EventsLost, Subscriber
from gql_pubsub.broker.process import get_broker
from gql_pubsub.core.events import Event, EventKind, Gap

if TYPE_CHECKING:
    from gql_pubsub.publishing.models import PublishableModel

M = TypeVar("M", bound="PublishableModel")
T = TypeVar("T")
G = TypeVar("G")


class Skip(enum.Enum):
    """The type of ``SKIP``: annotate a ``map`` function ``-> MyType | Skip``."""

    SKIP = "SKIP"

    def __repr__(self) -> str:
        return "SKIP"


SKIP: Final = Skip.SKIP
"""Returned by a stream's ``map`` function to drop an event."""

EventMap = Callable[[Event], "T | Literal[Skip.SKIP]"]


def _identity(event: Event) -> Event:
    return event


@dataclasses.dataclass(frozen=True)
class ModelMap(Generic[M]):
    """Map an event of ``model`` to an instance (or ``(kind, instance)``); other models: SKIP."""

    model: type[M]
    with_kind: bool = False

    def __call__(self, event: Event) -> Any:  # M, (kind, M) or SKIP
        if event.model != self.model.publish_label():
            return SKIP
        instance = self.model.from_event(event)
        return (event.kind, instance) if self.with_kind else instance


class ChannelStream(Generic[T]):
    """The events on some channels, filtered by kind and mapped; iterate it, or return it.

    ``shared=True`` declares that the subscription's result does not depend on who receives it
    (access having been checked before the stream was returned): subscribers of different users
    then share one execution per event, run with an anonymous context.
    """

    def __init__(
        self,
        channels: Collection[str],
        *,
        kinds: Collection[EventKind] | None = None,
        map: EventMap[T] = _identity,  # type: ignore[assignment]
        shared: bool = False,
        broker: Broker | None = None,
    ) -> None:
        if not channels:
            raise ValueError("A stream needs at least one channel.")
        self.channels = frozenset(channels)
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.map = map
        self.shared = shared
        self._broker = broker
        self._context: contextlib.AbstractAsyncContextManager[Subscriber] | None = None
        self._subscriber: Subscriber | None = None

    @property
    def broker(self) -> Broker:
        return self._broker or get_broker()

    @property
    def key(self) -> Hashable:
        """What makes two streams the same: channels, kinds, mapping, sharing, broker."""
        return (self.channels, self.kinds, self.map, self.shared, id(self.broker))

    def accepts(self, event: Event) -> bool:
        """Whether the event's kind passes the filter."""
        return self.kinds is None or event.kind in self.kinds

    async def open(self) -> None:
        """Subscribe now (idempotent): events published from here on will be streamed."""
        if self._subscriber is None:
            self._context = self.broker.subscribe(*self.channels)
            self._subscriber = await self._context.__aenter__()

    async def aclose(self) -> None:
        """Stop streaming and release the broker subscription."""
        context, self._context, self._subscriber = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)

    async def __aenter__(self) -> ChannelStream[T]:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> ChannelStream[T]:
        return self

    async def __anext__(self) -> T:
        await self.open()
        assert self._subscriber is not None
        while True:
            event = await anext(self._subscriber)
            if isinstance(event, Gap):
                raise EventsLost(event)
            if self.accepts(event):
                value = self.map(event)
                if value is not SKIP:
                    return value


def stream(
    *channels: str,
    kinds: Collection[EventKind] | None = None,
    map: EventMap[T] = _identity,  # type: ignore[assignment]
    shared: bool = False,
    broker: Broker | None = None,
) -> ChannelStream[T]:
    """Stream ``map(event)`` for the events on ``channels`` (``map`` may return ``SKIP``)."""
    return ChannelStream(channels, kinds=kinds, map=map, shared=shared, broker=broker)


def listen(
    *channels: str,
    kinds: Collection[EventKind] | None = None,
    shared: bool = False,
    broker: Broker | None = None,
) -> ChannelStream[Event]:
    """Stream the events published on ``channels`` (optionally only these ``kinds``).

    ``async with listen("a", "b") as events: async for event in events: …`` — the channels are
    live once the block is entered.
    """
    return ChannelStream(channels, kinds=kinds, shared=shared, broker=broker)


@overload
def instances(
    model: type[M],
    *channels: str,
    kinds: Collection[EventKind] | None = None,
    shared: bool = False,
    broker: Broker | None = None,
) -> ChannelStream[M]: ...


@overload
def instances(
    model: type[M],
    *channels: str,
    as_type: type[G],
    kinds: Collection[EventKind] | None = None,
    shared: bool = False,
    broker: Broker | None = None,
) -> ChannelStream[G]: ...


def instances(
    model: type[M],
    *channels: str,
    as_type: type[Any] | None = None,
    kinds: Collection[EventKind] | None = None,
    shared: bool = False,
    broker: Broker | None = None,
) -> ChannelStream[Any]:
    """Stream ``model`` instances rebuilt from the events on ``channels`` (no query).

    ``as_type`` names the strawberry_django type the resolver declares (``MessageType`` for
    ``Message``): the stream is typed as that type's stream, and a type of another model is
    refused here.
    """
    if as_type is not None:
        _check_type_of(as_type, model)
    return ChannelStream(channels, kinds=kinds, map=ModelMap(model), shared=shared, broker=broker)


def _check_type_of(as_type: type[Any], model: type[PublishableModel]) -> None:
    from strawberry_django.utils.typing import get_django_definition

    definition = get_django_definition(as_type)
    declared = getattr(definition, "model", None)
    if not (isinstance(declared, type) and issubclass(model, declared)):
        raise TypeError(
            f"as_type={as_type.__name__} is not a strawberry_django type of"
            f" {model.__name__}: declare it with @strawberry_django.type({model.__name__})."
        )


def model_events(
    model: type[M],
    *channels: str,
    kinds: Collection[EventKind] | None = None,
    shared: bool = False,
    broker: Broker | None = None,
) -> ChannelStream[tuple[EventKind, M]]:
    """Stream ``(kind, instance)`` for the events of ``model`` on ``channels``."""
    return ChannelStream(
        channels, kinds=kinds, map=ModelMap(model, with_kind=True), shared=shared, broker=broker
    )
