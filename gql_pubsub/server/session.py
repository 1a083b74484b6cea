"""One client's session, over any transport: who it is (``Hooks.on_connect``), until when (its
token's expiry), what it may still see (its user's access watch), and its place under
``MAX_CONNECTIONS_PER_USER``. A WebSocket connection and an HTTP stream each hold one, so the
rules are the same for both."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gql_pubsub.auth.tokens import token_expiry
from gql_pubsub.broker.backends.base import BrokerUnavailable
from gql_pubsub.conf import get_settings
from gql_pubsub.core.control import control_channel
from gql_pubsub.core.timers import wheel
from gql_pubsub.server.close_codes import CloseCode

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    from gql_pubsub.broker.broker import Broker
    from gql_pubsub.broker.listeners import Watcher
    from gql_pubsub.core.asgi_types import Scope
    from gql_pubsub.server.hub import Hub
    from gql_pubsub.server.peer import Peer

logger = logging.getLogger("gql_pubsub.websocket")

TOKEN_EXPIRED = "Token expired: reconnect with a fresh token"
BROKER_UNREACHABLE = "Try again later: the server cannot reach its broker"
"""Why a session or an operation could not start while the broker (Redis) is unreachable:
the client should retry (1013 on a socket); the details are in the server's log only."""


@dataclass(frozen=True)
class Refusal:
    """Why a session was not opened, and the close code a socket gets for it."""

    code: CloseCode
    reason: str


def too_many(limit: int) -> str:
    """The refusal of a session past the user's limit."""
    return f"Forbidden: this user already has {limit} connections here"


class Session:
    """The rules of one connection's user, from ``open`` to ``close`` (once each)."""

    __slots__ = ("_expiry_at", "_watch", "counted_user", "hub", "peer")

    def __init__(self, hub: Hub, peer: Peer) -> None:
        self.hub = hub
        self.peer = peer
        self.counted_user: Any = None
        """The user's pk while the session counts toward their limit."""
        self._watch: tuple[Broker, Watcher] | None = None
        """The user's control channel, watched for access changes, and on which broker."""
        self._expiry_at = 0  # the token's expiry, by its slot on the loop's timer wheel

    async def authenticate(
        self, scope: Scope, payload: dict[str, Any], token: str | None
    ) -> AbstractBaseUser | AnonymousUser:
        """The session's user (the peer's ``Hooks.on_connect``); raises ``TokenRejected``
        saying why there is none."""
        return await self.peer.server.hooks.on_connect(scope, payload, token)

    async def open(
        self, user: AbstractBaseUser | AnonymousUser, token: str | None
    ) -> Refusal | None:
        """Apply the rules to ``user``: count them (or refuse: why, and nothing held), watch
        their access (refused, to retry later, while the broker is unreachable), and end the
        session when ``token`` expires."""
        if user.is_authenticated and getattr(user, "pk", None) is not None:
            limit = get_settings().MAX_CONNECTIONS_PER_USER
            counts = self.hub.sessions_per_user
            if limit and counts[user.pk] >= limit:
                return Refusal(CloseCode.FORBIDDEN, too_many(limit))
            counts[user.pk] += 1
            self.counted_user = user.pk
            broker = self.hub.broker
            try:
                watcher = await broker.watcher(
                    self.peer.ops.on_access_change, control_channel(user.pk)
                )
            except BrokerUnavailable as error:  # no access watch, no session: nothing leaks
                logger.warning("Refused a session of user %s: %s", user.pk, error)
                await self.close()
                return Refusal(CloseCode.TRY_AGAIN_LATER, BROKER_UNREACHABLE)
            self._watch = (broker, watcher)
        expires = token_expiry(token) if token is not None else None
        if expires is not None:
            self._expiry_at = wheel().add(max(0.0, expires - time.time()), self)
        return None

    def due(self, slot: int) -> None:
        """The wheel's call: the token expired."""
        if slot == self._expiry_at:
            self._expiry_at = 0
            peer = self.peer
            peer.ops.in_background(peer.close(CloseCode.FORBIDDEN, TOKEN_EXPIRED))

    async def close(self) -> None:
        """End the session: its timer, its count, its watch."""
        slot, self._expiry_at = self._expiry_at, 0
        if slot:
            wheel().discard(slot, self)
        if self.counted_user is not None:
            counts = self.hub.sessions_per_user
            counts[self.counted_user] -= 1
            if counts[self.counted_user] <= 0:
                del counts[self.counted_user]
            self.counted_user = None
        if self._watch is not None:
            (broker, watcher), self._watch = self._watch, None
            await broker.remove(watcher, *watcher.channels)
