"""The ASGI WebSocket endpoint: graphql-transport-ws over a socket, operations on a schema."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gql_pubsub.server.hub import Hub
from gql_pubsub.transports.websocket.connection import Connection

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

    from gql_pubsub.core.asgi_types import Receive, Scope, Send
    from gql_pubsub.execution.engine import Engine
    from gql_pubsub.execution.fanout import FanOut
    from gql_pubsub.server.hooks import Hooks

logger = logging.getLogger("gql_pubsub.websocket")


@dataclasses.dataclass(frozen=True)
class SocketStats:
    """What a WebSocket endpoint holds at one moment (``GraphQLWebSocket.stats()``)."""

    connections: int
    """Open sockets (acknowledged or not)."""
    users: int
    """Distinct authenticated users with a session in this application: its sockets' and its
    HTTP streams'."""
    operations: int
    """Operations running on them."""
    groups: int
    """Fan-out groups: subscriptions (of channels, or of users' followed channels) that share
    one execution per event."""
    group_members: int
    """Operations served by those groups."""
    live_groups: int
    """Groups whose channels' subscription is confirmed (their events are being delivered)."""
    documents_parsed: int
    """Documents parsed and validated (once per distinct text, while cached). The cache is the
    schema's, shared with the HTTP view and with other endpoints of the same schema."""
    documents_cached: int
    """Documents held parsed and validated (at most ``execution.DOCUMENT_CACHE_SIZE``)."""
    document_cache_hits: int
    """Operations (over either transport) that reused a parsed document."""


class GraphQLWebSocket:
    """ASGI app for one GraphQL WebSocket path: speaks graphql-transport-ws only."""

    def __init__(
        self, schema: BaseSchema, hooks: Hooks | None = None, *, hub: Hub | None = None
    ) -> None:
        self.hub = hub or Hub(schema, hooks)
        """The application's parts (its own, unless one is given)."""
        self.schema = self.hub.schema
        self.connections: set[Connection] = set()
        self.told_no_flow_control = False

    @property
    def hooks(self) -> Hooks:
        """What the socket does on connect, subscribe and complete (the hub's)."""
        return self.hub.hooks

    @property
    def engine(self) -> Engine:
        """The schema's engine (the hub's, shared with the HTTP view)."""
        return self.hub.engine

    @property
    def fanout(self) -> FanOut:
        """The groups of this schema's subscriptions, shared with its HTTP view's streams."""
        return self.hub.fanout

    def queued_frames(self) -> int:
        """Frames waiting in the send buffers of slow clients, all sockets together."""
        return sum(connection.send_buffer.queued for connection in self.connections)

    def stats(self) -> SocketStats:
        """What this endpoint holds now: for tests, health checks and metrics."""
        groups = self.fanout.groups.values()
        cache = self.engine.prepare.cache_info()
        return SocketStats(
            connections=len(self.connections),
            users=len(self.hub.sessions_per_user),
            operations=sum(len(connection.ops) for connection in self.connections),
            groups=len(self.fanout.groups),
            group_members=sum(len(group.members) for group in groups),
            live_groups=sum(group.ready.done() for group in groups),
            documents_parsed=cache.misses,
            documents_cached=cache.currsize,
            document_cache_hits=cache.hits,
        )

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        """Serve one socket: an ASGI app (its coroutine is the connection's own, one frame
        less a socket than an ``async def`` that awaits it)."""
        return Connection(self, scope, receive, send).run()
