"""ASGI type aliases, defined once; and what operations need of their connection (a socket's,
or an HTTP stream's) and of their endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .context import Context
    from .execution import Engine
    from .fanout import FanOut
    from .hooks import Hooks
    from .limits import RateLimit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


class Sender(Protocol):
    async def send(self, frame: str) -> None: ...


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
    def outbox(self) -> Sender: ...
    @property
    def closed(self) -> bool: ...
    @property
    def client(self) -> str: ...
    @property
    def rate(self) -> RateLimit: ...
    async def close(self, code: int, reason: str) -> None: ...
    async def send_text(self, frame: str) -> None: ...
