"""Presence: who is on a channel now, across every server, and who comes and goes.

``async with track(channel, user.pk, {"username": …})`` makes a connection a member;
``watch(channel)`` streams the members, then each change; ``members(channel)`` and
``amembers(channel)`` answer who is there now; ``presence_stream(…)`` is both, for a
subscription resolver. ``broadcast(channel, data, sender=…)`` sends a short event ("typing")
to the subscribers of ``ephemeral_channel(channel)`` that nothing keeps.
"""

from gql_pubsub.presence.ephemeral import EphemeralRefused, broadcast, ephemeral_channel
from gql_pubsub.presence.members import (
    Member,
    PresenceDiff,
    PresenceState,
    amembers,
    members,
    track,
    watch,
)
from gql_pubsub.presence.stream import PresenceStream, presence_stream

__all__ = [
    "EphemeralRefused",
    "Member",
    "PresenceDiff",
    "PresenceState",
    "PresenceStream",
    "amembers",
    "broadcast",
    "ephemeral_channel",
    "members",
    "presence_stream",
    "track",
    "watch",
]
