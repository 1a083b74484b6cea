"""Fan-out: one execution and one encoding per event per group of identical subscriptions.

Subscribers whose operation is the same (document, variables, operation name), whose streams
map events the same way, and whose results cannot differ (the same user, or a stream declared
``shared``) form a :class:`Group`. The broker's dispatch feeds the group's one bounded queue:
every event of its channels (a channel stream), or the events each member's followed-channel
stream lets through (``listen_to_user_subscriptions``). For each event the group executes the
selection set once and encodes the result once; each member only splices in its operation id
(and its cursor, if it asked for one). When some fields can depend on the viewer, the group is
of every user's subscribers all the same, and each member splices in its own values of just
those fields (``splice``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from typing import Any

from graphql.execution import Executor

from gql_pubsub.execution.engine import Engine
from gql_pubsub.execution.group import Group
from gql_pubsub.execution.member import Member, Source


class FanOut:
    """The groups of one engine's subscriptions in this process and event loop, by key."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.engine = engine
        self.loop = loop
        self.groups: dict[Hashable, Group] = {}
        self._detaching: set[asyncio.Task[None]] = set()

    def detach(self, member: Member) -> None:
        """Stop a member's own followed-channel stream, if it has one (it left its group)."""
        detach, member.detach = member.detach, None
        if detach is not None:
            task = asyncio.ensure_future(detach())
            self._detaching.add(task)
            task.add_done_callback(self._detaching.discard)

    def group(
        self,
        key: Hashable,
        make_executor: Callable[[], Executor[Any]],
        stream: Source,
        *,
        resumable: bool = False,
    ) -> Group:
        """The group for ``key``, created (with ``make_executor()``) if there is none."""
        group = self.groups.get(key)
        if group is None or group.task.done():
            group = Group(key, make_executor(), stream, self, resumable=resumable)
            self.groups[key] = group
        return group

    def forget(self, group: Group) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]

    async def close(self) -> None:
        """Cancel every group (server shutdown)."""
        groups = list(self.groups.values())
        self.groups.clear()
        for group in groups:
            group.task.cancel()
        for group in groups:
            with contextlib.suppress(BaseException):
                await group.task
        for task in list(self._detaching):
            with contextlib.suppress(BaseException):
                await task
