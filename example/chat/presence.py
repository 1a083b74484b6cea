"""Who is online and who is typing in a correspondence: the GraphQL types, and the maps from
gql_pubsub's presence and ephemeral events."""

from __future__ import annotations

import datetime
from typing import Any

import strawberry

from gql_pubsub import Event
from gql_pubsub.presence import Member, PresenceDiff, PresenceState


@strawberry.type
class OnlineMember:
    """A participant with the correspondence open (in one tab or several)."""

    id: strawberry.ID
    username: str
    since: datetime.datetime


@strawberry.type
class PresenceChange:
    """Everyone online (``members``: first, and again after changes may have been missed),
    or who came (``joined``) and who left (``left``) since the last change."""

    members: list[OnlineMember] | None
    joined: list[OnlineMember]
    left: list[strawberry.ID]


def public_info(user: Any) -> dict[str, str]:
    """What the others see of a participant online."""
    return {"username": user.get_username()}


def online_member(member: Member) -> OnlineMember:
    """A presence member as the API shows it."""
    return OnlineMember(
        id=strawberry.ID(member.id),
        username=str(member.info.get("username", "")),
        since=member.since,
    )


def presence_change(change: PresenceState | PresenceDiff) -> PresenceChange:
    """A presence state or diff as the API shows it."""
    if isinstance(change, PresenceState):
        return PresenceChange(
            members=[online_member(m) for m in change.members], joined=[], left=[]
        )
    return PresenceChange(
        members=None,
        joined=[online_member(m) for m in change.joins],
        left=[strawberry.ID(member) for member in change.leaves],
    )


@strawberry.type
class Typing:
    """Someone is typing in the correspondence (sent again every few seconds while they are)."""

    user_id: strawberry.ID
    username: str


def typing_of(event: Event) -> Typing:
    """An ephemeral "typing" event as the API shows it."""
    return Typing(
        user_id=strawberry.ID(event.data["sender"]), username=str(event.data.get("username", ""))
    )
