"""A user's control channel: the announcements that change what their open streams may carry."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from gql_pubsub.core.events import Event, EventKind


def control_channel(user_pk: Any) -> str:
    """The channel that announces changes to one user's access and subscriptions."""
    return f"gql_pubsub.user:{user_pk}"


class Change(enum.StrEnum):
    """What an announcement says changed."""

    SUBSCRIPTION = "subscription"
    """The user subscribed to ``channel`` (``active``) or stopped following it."""
    REVOKED = "revoked"
    """The user lost access to ``channel``: their open subscriptions of it end."""
    DEACTIVATED = "deactivated"
    """The user was deactivated: their connections close."""


@dataclasses.dataclass(frozen=True, slots=True)
class Announcement:
    """One change of a user's access, announced before its commit (a loss of access) or after."""

    change: Change
    channel: str | None = None
    active: bool = False
    committed: bool = True

    @property
    def loses_access(self) -> bool:
        """Whether the user may no longer read ``channel`` (or anything: deactivated)."""
        return not self.active

    def event(self) -> Event:
        """The event that carries it (its wire form is the one earlier releases wrote)."""
        data: dict[str, Any]
        if self.change is Change.REVOKED:
            data = {"revoked": self.channel}
        elif self.change is Change.DEACTIVATED:
            data = {"deactivated": True}
        else:
            data = {"channel": self.channel, "active": self.active}
        data["committed"] = self.committed
        return Event(kind=EventKind.UPDATED, model=None, pk=None, data=data)

    @classmethod
    def of(cls, event: Event) -> Announcement | None:
        """The announcement an event on a control channel carries (None: not one)."""
        data = event.data
        committed = bool(data.get("committed", True))
        if data.get("deactivated"):
            return cls(Change.DEACTIVATED, committed=committed)
        if isinstance(data.get("revoked"), str):
            return cls(Change.REVOKED, data["revoked"], committed=committed)
        if isinstance(data.get("channel"), str):
            return cls(Change.SUBSCRIPTION, data["channel"], bool(data.get("active")), committed)
        return None
