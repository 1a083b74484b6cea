"""What operations need of their connection (a socket's, or an HTTP stream's) and of their
endpoint."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Protocol

from gql_pubsub.execution.member import Sender

if TYPE_CHECKING:
    from gql_pubsub.execution.context import Context
    from gql_pubsub.execution.engine import Engine
    from gql_pubsub.execution.fanout import FanOut
    from gql_pubsub.execution.limits import RateLimit
    from gql_pubsub.server.hooks import Hooks
    from gql_pubsub.server.operations import Operations


class Server(Protocol):
    """What operations use of their endpoint."""

    @property
    def engine(self) -> Engine: ...
    @property
    def fanout(self) -> FanOut: ...
    @property
    def hooks(self) -> Hooks: ...


class Framer(Protocol):
    """A connection's protocol, as operations use it: the live operation ids, and frames."""

    @property
    def operations(self) -> Collection[str]: ...
    @property
    def next_suffix(self) -> str: ...
    def next_prefix(self, op_id: str) -> str: ...
    def complete(self, op_id: str, error: str | None) -> list[str]: ...
    def error(self, op_id: str, errors: list[Any]) -> str | None: ...


class Peer(Protocol):
    """What operations need of their connection: a socket's (``connection.Connection``) or an
    HTTP stream's (``http_streams.HttpStream``)."""

    @property
    def server(self) -> Server: ...
    @property
    def context(self) -> Context | None: ...
    @property
    def protocol(self) -> Framer: ...
    @property
    def ops(self) -> Operations: ...
    @property
    def send_buffer(self) -> Sender: ...
    @property
    def closed(self) -> bool: ...
    @property
    def client(self) -> str: ...
    @property
    def rate(self) -> RateLimit: ...
    async def close(self, code: int, reason: str) -> None: ...
    async def send_text(self, frame: str) -> None: ...
