"""The composition root of one application: what its transports serve with.

``get_asgi_application`` builds one :class:`Hub` and hands it down: to its WebSocket endpoint,
and (through the ASGI scope) to the HTTP view of the same schema. No part of it lives in a
module global, so two applications in one process share nothing but the process's broker
(one connection to Redis for every subscription, as promised) and its metrics registry.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from gql_pubsub.broker.process import get_broker
from gql_pubsub.conf import get_settings
from gql_pubsub.execution.engine import DOCUMENT_CACHE_SIZE, Engine, validation_rules
from gql_pubsub.execution.fanout import FanOut
from gql_pubsub.server.hooks import Hooks

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

    from gql_pubsub.broker.broker import Broker

logger = logging.getLogger("gql_pubsub.websocket")

SCOPE_KEY = "gql_pubsub.hub"
"""Where the application puts its hub in an HTTP request's ASGI scope (for the view)."""


class Hub:
    """One application's parts: its schema's engine and fan-out, its hooks, the broker, and
    its sessions per user (sockets and HTTP streams alike)."""

    def __init__(self, schema: BaseSchema, hooks: Hooks | None = None) -> None:
        self.schema = schema
        self.hooks = hooks or Hooks()
        self.sessions_per_user: collections.Counter[Any] = collections.Counter()
        """Open sessions by user pk, over every transport (``MAX_CONNECTIONS_PER_USER``)."""
        self._engine_key: tuple[bool, int, int] | None = None
        self._engine: Engine | None = None
        self._fanout: FanOut | None = None
        engine = self.engine
        if engine.per_subscriber_reason is not None:
            logger.warning(
                "Subscriptions of this schema run once per subscriber (no shared execution): "
                "Strawberry's pipeline runs its %s, which the grouped path cannot.",
                engine.per_subscriber_reason,
            )

    @property
    def engine(self) -> Engine:
        """The schema's engine under the current settings (its rules are made of them: changed
        settings, as in a test, make a new one); HTTP and WebSocket share its document cache."""
        settings = get_settings()
        key = (settings.introspection, settings.MAX_QUERY_DEPTH, settings.MAX_QUERY_FIELDS)
        if self._engine is None or key != self._engine_key:
            self._engine = Engine(self.schema, validation_rules(), DOCUMENT_CACHE_SIZE)
            self._engine_key = key
        return self._engine

    @property
    def fanout(self) -> FanOut:
        """The groups of this application's subscriptions on the running loop (a new loop, as
        in tests, starts afresh); its sockets and its HTTP streams share them."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # (stats read outside any loop: the last one's groups)
        engine = self.engine
        fanout = self._fanout
        if (
            fanout is None
            or fanout.engine is not engine
            or (loop is not None and fanout.loop is not loop)
        ):
            fanout = self._fanout = FanOut(engine, loop)
        return fanout

    @property
    def broker(self) -> Broker:
        """The process's broker (one per process, shared by every application in it)."""
        return get_broker()
