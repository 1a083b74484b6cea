"""A subscription's presence: the subscriber is a member of the channel while it runs, and it
streams the channel's members, then each change. It names its channel, so that a revocation of
that channel ends it (and with it the membership) as it ends the channel's other streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Generic, TypeVar

from gql_pubsub.broker.broker import Broker
from gql_pubsub.presence.members import PresenceDiff, PresenceState, track, watch

T = TypeVar("T")


class PresenceStream(Generic[T]):
    """``map(state)`` first, then ``map(diff)`` for each change; return it from a resolver."""

    def __init__(
        self,
        channel: str,
        *,
        member: str | int | None,
        info: Mapping[str, Any] | None,
        map: Callable[[PresenceState | PresenceDiff], T],
        broker: Broker | None,
    ) -> None:
        self.channels = frozenset({channel})
        """What it reads, for the access watch: revoking the channel ends it."""
        self._channel = channel
        self._member = member
        self._info = info
        self._map = map
        self._broker = broker
        self._iterator: AsyncIterator[T] | None = None

    def __aiter__(self) -> PresenceStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._iterator is None:
            self._iterator = self._run()
        return await anext(self._iterator)

    async def aclose(self) -> None:
        """End the stream, and the membership."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None:
            await iterator.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> AsyncIterator[T]:
        changes = watch(self._channel, broker=self._broker)
        try:
            if self._member is None:
                async for change in changes:
                    yield self._map(change)
                return
            async with track(self._channel, self._member, self._info, broker=self._broker):
                async for change in changes:
                    yield self._map(change)
        finally:
            await changes.aclose()  # type: ignore[attr-defined]


def _same(change: PresenceState | PresenceDiff) -> Any:
    return change


def presence_stream(
    channel: str,
    *,
    member: str | int | None = None,
    info: Mapping[str, Any] | None = None,
    map: Callable[[PresenceState | PresenceDiff], T] = _same,
    broker: Broker | None = None,
) -> PresenceStream[T]:
    """The members of ``channel``, then who comes and goes, for a subscription resolver; with
    ``member``, the subscriber is one of them (``info`` is what the others see) while it runs.

    Check access before returning it: a revocation of ``channel`` ends it.
    """
    return PresenceStream(channel, member=member, info=info, map=map, broker=broker)
