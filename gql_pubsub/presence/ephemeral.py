"""Ephemeral events: short messages to a channel's subscribers ("typing") that no table, no
history and no resume keeps, limited in rate per sender and in size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gql_pubsub.broker.backends.base import PresenceBackend
from gql_pubsub.broker.broker import Broker
from gql_pubsub.broker.process import get_broker
from gql_pubsub.conf import get_settings
from gql_pubsub.core.events import Event, EventKind

WINDOW = 1.0
"""Seconds over which ``EPHEMERAL_RATE`` counts a sender's events on a channel."""


class EphemeralRefused(Exception):
    """An ephemeral event was not sent: too fast or too large (the message says which)."""


def ephemeral_channel(channel: str) -> str:
    """The channel whose events are ``channel``'s ephemeral ones."""
    return f"ephemeral:{channel}"


async def broadcast(
    channel: str,
    data: Mapping[str, Any],
    *,
    sender: str | int,
    broker: Broker | None = None,
) -> None:
    """Send ``data`` (and ``sender``) to the subscribers of ``ephemeral_channel(channel)`` now.

    Check that ``sender`` may write to ``channel`` first. ``EphemeralRefused`` past
    ``EPHEMERAL_RATE`` events a second from one sender on one channel (across servers), or past
    ``EPHEMERAL_MAX_SIZE`` bytes; ``BrokerUnavailable`` if Redis cannot be reached.
    """
    settings = get_settings()
    event = Event(EventKind.CUSTOM, None, None, {**data, "sender": str(sender)})
    payload = event.encode()
    if len(payload) > settings.EPHEMERAL_MAX_SIZE:
        raise EphemeralRefused(
            f"An ephemeral event of {len(payload):,} bytes is over "
            f"GQL_PUBSUB['EPHEMERAL_MAX_SIZE'] ({settings.EPHEMERAL_MAX_SIZE:,}): send less."
        )
    broker = broker or get_broker()
    backend = broker.backend
    if not isinstance(backend, PresenceBackend):
        raise TypeError(f"Ephemeral events need a backend that keeps presence; {backend} does not.")
    await broker.start()
    sent = await backend.publish_ephemeral(
        ephemeral_channel(channel),
        payload,
        sender=str(sender),
        rate=settings.EPHEMERAL_RATE,
        window=WINDOW,
    )
    if not sent:
        raise EphemeralRefused(
            f"Too many ephemeral events on {channel!r}: at most {settings.EPHEMERAL_RATE} a "
            "second from one sender (GQL_PUBSUB['EPHEMERAL_RATE']). Send fewer: one 'typing' "
            "every few seconds while typing is enough."
        )


def derived_channels(channel: str) -> tuple[str, str]:
    """The channels that carry ``channel``'s presence and ephemeral events: a revocation of
    ``channel`` ends the streams of these too."""
    from gql_pubsub.presence.tracker import presence_channel

    return presence_channel(channel), ephemeral_channel(channel)
