"""The test client's two kinds of socket: in-process (to an ASGI application, no server, with
uvicorn's back-pressure) and over the network (to a running server, on ``websockets``). The
client speaks graphql-transport-ws over either; each hands it text frames and the close."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from gql_pubsub.core.asgi_types import ASGIApp, Message


class ConnectionClosed(Exception):
    """The server closed (or refused) the socket; ``code`` and ``reason`` say why (1006: it
    ended with no close frame)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"The server closed the socket with {code}: {reason or '(no reason)'}")
        self.code = code
        self.reason = reason


class HandshakeRefused(ConnectionClosed):
    """A server refused the handshake over the network with HTTP ``status`` (403: an origin
    it does not trust, a path it does not serve)."""

    def __init__(self, status: int) -> None:
        super().__init__(1006, f"HTTP {status}")
        self.status = status


class ClientSocket(Protocol):
    """What the client needs of a socket."""

    subprotocol: str | None

    async def open(self) -> None:
        """The handshake; ``ConnectionClosed`` if the server refuses it."""

    async def send(self, text: str) -> None:
        """Send a text frame; ``ConnectionClosed`` once closed."""

    async def receive(self) -> str:
        """The next text frame (no bound: the caller's); ``ConnectionClosed`` once closed."""

    async def close(self, code: int, timeout: float) -> None:
        """Close from the client's side, waiting up to ``timeout`` for the server to end."""


class InProcessSocket:
    """A socket to an ASGI application in this process; its ``send`` applies uvicorn's
    flow-control flag, so a test that stops reading holds the server back as a client would."""

    def __init__(self, application: ASGIApp, scope: dict[str, Any], limit: int) -> None:
        self.application = application
        self.scope = scope
        self.subprotocol: str | None = None
        self.frames: deque[Message] = deque()
        self.limit = limit
        self.writable = asyncio.Event()  # read by the library's send_buffer, as uvicorn's is
        self.writable.set()
        self.arrived = asyncio.Event()
        self.inbound: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.closed: ConnectionClosed | None = None

    async def _app_send(self, message: Message) -> None:  # the server's end
        while len(self.frames) >= self.limit:  # the test is not reading: hold the server back
            self.writable.clear()
            await self.writable.wait()
        self.frames.append(message)
        self.arrived.set()
        if len(self.frames) >= self.limit:
            self.writable.clear()

    async def _take(self) -> Message:
        while not self.frames:
            self.arrived.clear()
            await self.arrived.wait()
        message = self.frames.popleft()
        if len(self.frames) < self.limit:
            self.writable.set()
        return message

    async def open(self) -> None:
        self.task = asyncio.create_task(
            self.application(self.scope, self.inbound.get, self._app_send)  # type: ignore[arg-type]
        )
        await self.inbound.put({"type": "websocket.connect"})
        message = await self._take()
        if message["type"] != "websocket.accept":
            raise self._closed_by(message)
        self.subprotocol = message.get("subprotocol")

    async def send(self, text: str) -> None:
        if self.closed is not None:
            raise self.closed
        await self.inbound.put({"type": "websocket.receive", "text": text})

    async def receive(self) -> str:
        if self.closed is not None:
            raise self.closed
        message = await self._take()
        if message["type"] != "websocket.send":
            raise self._closed_by(message)
        return str(message["text"])

    async def close(self, code: int, timeout: float) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        await self.inbound.put({"type": "websocket.disconnect", "code": code})
        try:
            async with asyncio.timeout(timeout):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise TimeoutError(
                f"The server's socket handler did not end within {timeout}s of the close"
            ) from None

    def _closed_by(self, message: Message) -> ConnectionClosed:
        if message["type"] != "websocket.close":
            raise AssertionError(f"Unexpected ASGI message from the server: {message}")
        self.closed = ConnectionClosed(message.get("code", 1000), message.get("reason") or "")
        return self.closed


class NetworkSocket:
    """A socket to a running server (``ws://`` or ``wss://``), on the ``websockets`` library;
    ``options`` are its ``connect()``'s (``additional_headers``, ``max_queue``, …)."""

    def __init__(self, url: str, subprotocols: Iterable[str], **options: Any) -> None:
        self.url = url
        self.subprotocols = list(subprotocols)
        self.options = options
        self.subprotocol: str | None = None
        self._connection: ClientConnection | None = None

    @property
    def connection(self) -> ClientConnection:
        """The ``websockets`` connection (open)."""
        if self._connection is None:
            raise RuntimeError("The socket is not open: call open() (or connect()) first.")
        return self._connection

    async def open(self) -> None:
        try:
            from websockets.asyncio.client import connect
            from websockets.exceptions import InvalidStatus
        except ImportError:  # pragma: no cover - websockets < 13
            raise ImportError(
                "A network socket needs websockets 14.1 or newer: pip install 'websockets>=14.1'"
            ) from None
        self.options.setdefault("max_queue", None)  # the test reads when it wants to
        try:
            self._connection = await connect(
                self.url,
                subprotocols=self.subprotocols,  # type: ignore[arg-type]
                **self.options,
            )
        except InvalidStatus as refused:
            raise HandshakeRefused(refused.response.status_code) from None
        self.subprotocol = self._connection.subprotocol

    async def send(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed as Ended

        try:
            await self.connection.send(text)
        except Ended:
            raise self._closed() from None

    async def receive(self) -> str:
        from websockets.exceptions import ConnectionClosed as Ended

        try:
            return str(await self.connection.recv())
        except Ended:
            raise self._closed() from None

    def _closed(self) -> ConnectionClosed:
        close = self.connection.protocol.close_rcvd  # the server's close frame, if it sent one
        return ConnectionClosed(close.code if close else 1006, close.reason if close else "")

    async def close(self, code: int, timeout: float) -> None:
        if self._connection is not None:
            async with asyncio.timeout(timeout):
                await self._connection.close(code)
