"""How a stream of everything a user follows keeps to what they may read: the channels it starts
with, and their changes of access as announced on the user's control channel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Set
from typing import Any, Protocol

from gql_pubsub.auth.policies import may_read
from gql_pubsub.conf import get_settings
from gql_pubsub.core.control import Announcement
from gql_pubsub.core.db import database_sync_to_async
from gql_pubsub.streams.models import Subscription


def readable_channels(user: Any) -> list[str]:
    """The channels ``user`` actively subscribes to and may read (a query)."""
    names = Subscription.objects.filter(user=user, active=True).values_list(
        "channel__name", flat=True
    )
    return [name for name in names if may_read(user, name)]


def still_readable(user: Any, channel: str) -> bool:
    """Whether ``user`` still actively subscribes to ``channel`` and may read it (a query)."""
    active = Subscription.objects.filter(user=user, active=True, channel__name=channel).exists()
    return active and may_read(user, channel)


class Following(Protocol):
    """What access changes need of the stream they apply to."""

    @property
    def user(self) -> Any: ...
    @property
    def channels(self) -> Set[str]: ...
    def drop(self, channel: str) -> None: ...
    async def add(self, channel: str) -> None: ...


class AccessChanges:
    """How a followed stream applies its user's changes of access: a loss at once (before any
    later event), a gain after a check (a query); a loss announced before its commit is read
    again if no commit follows (a rollback)."""

    __slots__ = ("stream", "tasks", "unconfirmed")

    def __init__(self, stream: Following) -> None:
        self.stream = stream
        self.unconfirmed: dict[str, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def apply(self, announcement: Announcement | None) -> None:
        if announcement is None or announcement.channel is None:
            return  # e.g. a deactivation: the connection itself is closed
        channel = announcement.channel
        if announcement.loses_access:
            self.stream.drop(channel)
            if announcement.committed:
                self._confirmed(channel)
            elif channel not in self.unconfirmed:
                self.unconfirmed[channel] = asyncio.get_running_loop().call_later(
                    get_settings().REVOCATION_CONFIRM_TIMEOUT, self._recheck, channel
                )
            return
        self._confirmed(channel)
        if channel not in self.stream.channels:
            self._in_background(self._add_if(may_read, channel))

    def close(self) -> None:
        for timer in self.unconfirmed.values():
            timer.cancel()
        self.unconfirmed.clear()
        for task in self.tasks:
            task.cancel()

    def _confirmed(self, channel: str) -> None:
        timer = self.unconfirmed.pop(channel, None)
        if timer is not None:
            timer.cancel()

    def _recheck(self, channel: str) -> None:
        self.unconfirmed.pop(channel, None)
        self._in_background(self._add_if(still_readable, channel))

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _add_if(self, readable: Callable[[Any, str], bool], channel: str) -> None:
        if await database_sync_to_async(readable)(self.stream.user, channel):
            await self.stream.add(channel)
