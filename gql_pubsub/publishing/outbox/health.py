"""Whether publishing to a destination works, in this process: each incident logged once, then
its end, and when Redis has been back long enough (``RECONNECT_GRACE``) to relay kept events."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from gql_pubsub.broker.backends.base import RECONNECT_DELAYS
from gql_pubsub.publishing.outbox.rows import destination_key

if TYPE_CHECKING:
    from gql_pubsub.broker.backends.base import DurableBackend
    from gql_pubsub.broker.broker import Broker

logger = logging.getLogger("gql_pubsub.publishing")

RECONNECT_GRACE = RECONNECT_DELAYS[-1] + 0.25
"""Seconds Redis must have been reachable before kept events are relayed: longer than any
server's subscription connection waits between reconnection attempts."""


class Health:
    """Whether publishing to one broker works; each incident is logged once, then its end."""

    def __init__(self, broker: Broker) -> None:
        self.url = broker.backend.safe_url
        self._lock = threading.Lock()
        self.failing_since: float | None = None
        self.reachable_since: float | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.reachable_since = None
            if self.failing_since is not None:
                return
            self.failing_since = time.monotonic()
        logger.warning(
            "Cannot publish to %s (%s): committed events are kept in the outbox and relayed, "
            "in order, when it is reachable again",
            self.url,
            error,
        )

    def ready(self, backend: DurableBackend) -> bool:
        """Whether kept events may be published now (Redis back for ``RECONNECT_GRACE``)."""
        if self.failing_since is None:
            return True
        try:
            backend.ping_sync()
        except Exception:
            self.reachable_since = None
            return False
        now = time.monotonic()
        if self.reachable_since is None:
            self.reachable_since = now
        return now - self.reachable_since >= RECONNECT_GRACE

    def recovered(self, relayed: int) -> None:
        with self._lock:
            since, self.failing_since = self.failing_since, None
        if since is not None:
            logger.info(
                "Publishing to %s works again after %.1fs (%d kept events relayed here)",
                self.url,
                time.monotonic() - since,
                relayed,
            )


_healths: dict[str, Health] = {}


def health_of(broker: Broker) -> Health:
    """The publishing health of ``broker``'s destination in this process."""
    key = destination_key(broker)
    health = _healths.get(key)
    if health is None:
        health = _healths.setdefault(key, Health(broker))
    return health
