"""The graphql-transport-ws test client: over an in-process socket to the ASGI application (no
server; back-pressure as uvicorn's), or over the network to a running server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import Iterable
from typing import Any

from gql_pubsub.core.asgi_types import ASGIApp
from gql_pubsub.testing.sockets import (
    ClientSocket,
    ConnectionClosed,
    InProcessSocket,
    NetworkSocket,
)
from gql_pubsub.transports.websocket.protocol import SUBPROTOCOL, MessageType


class OperationFailed(Exception):
    """The server answered an operation with ``error``; ``errors`` are the GraphQL errors."""

    def __init__(self, op_id: str, errors: list[dict[str, Any]]) -> None:
        messages = "; ".join(str(error.get("message")) for error in errors)
        super().__init__(f"Operation {op_id!r} failed: {messages}")
        self.errors = errors


class OperationCompleted(Exception):
    """The server completed an operation that the test expected another result from."""


class GraphQLTestClient:
    """A graphql-transport-ws client of an ASGI application (``get_asgi_application``'s),
    in-process; ``GraphQLTestClient.over_network(url)`` is one of a running server."""

    def __init__(
        self,
        application: ASGIApp,
        path: str | None = None,  # GRAPHQL_PATH, and a query string if wanted
        *,
        headers: Iterable[tuple[str, str]] = (),
        subprotocols: Iterable[str] = (SUBPROTOCOL,),
        client: tuple[str, int] = ("127.0.0.1", 50000),
        timeout: float = 5.0,
        buffer: int = 1000,
    ) -> None:
        from gql_pubsub.conf import get_settings

        path, _, query_string = (path or get_settings().GRAPHQL_PATH).partition("?")
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query_string.encode(),
            "headers": [
                (b"host", b"testserver"),
                *((name.lower().encode(), value.encode()) for name, value in headers),
            ],
            "client": client,
            "server": ("testserver", 80),
            "subprotocols": list(subprotocols),
            "state": {},
        }
        self._start(InProcessSocket(application, self.scope, buffer), timeout)

    def _start(self, socket: ClientSocket, timeout: float) -> None:
        self.socket = socket
        self.timeout = timeout
        self._unread: deque[dict[str, Any]] = deque()
        self._ids = (str(n) for n in itertools.count(1))
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    async def __aenter__(self) -> GraphQLTestClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    def over_network(
        cls,
        url: str,
        *,
        subprotocols: Iterable[str] = (SUBPROTOCOL,),
        timeout: float = 5.0,
        **options: Any,
    ) -> GraphQLTestClient:
        """A client of a running server at ``url`` (``ws://host:port/graphql/``), over a real
        socket (``websockets``; ``options`` go to its ``connect()``, e.g. ``additional_headers``).
        ``live()`` needs the server in this process; the rest is the same."""
        client = cls.__new__(cls)
        client.scope = {}
        client._start(NetworkSocket(url, subprotocols, open_timeout=timeout, **options), timeout)
        return client

    async def connect(self) -> None:
        """Open the socket (the handshake); ``ConnectionClosed`` if the server refuses it."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.socket.open()
        except TimeoutError:
            raise TimeoutError(f"No answer to the handshake within {self.timeout}s") from None
        except ConnectionClosed as closed:
            self.close_code, self.close_reason = closed.code, closed.reason
            raise
        self.subprotocol = self.socket.subprotocol

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Send ``connection_init`` (e.g. ``{"token": …}``); the ``connection_ack``'s payload."""
        await self.send({"type": MessageType.CONNECTION_INIT, "payload": payload or {}})
        ack = await self.receive()
        if ack["type"] != MessageType.CONNECTION_ACK:
            raise AssertionError(f"Expected connection_ack, got {ack}")
        payload = ack.get("payload")
        return payload if isinstance(payload, dict) else None

    async def subscribe(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        operation_name: str | None = None,
        extensions: dict[str, Any] | None = None,
        op_id: str | None = None,
    ) -> str:
        """Start an operation; its id (numbered from "1" unless given), for ``next``."""
        op_id = op_id or next(self._ids)
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        if operation_name is not None:
            payload["operationName"] = operation_name
        if extensions is not None:
            payload["extensions"] = extensions
        await self.send({"id": op_id, "type": MessageType.SUBSCRIBE, "payload": payload})
        return op_id

    async def live(self, *channels: str) -> None:
        """Wait until this process's broker listens on ``channels`` and, in-process, the server
        has started each of this client's subscriptions (joined its group, or streaming): what
        is published from now on reaches them. Over the network, only the broker is checked."""
        from gql_pubsub.broker.process import get_broker

        broker = get_broker()
        try:
            async with asyncio.timeout(self.timeout):
                # Polled: the operation may not have asked the broker for its channels yet.
                while not (  # noqa: ASYNC110
                    all(broker.is_live(channel) for channel in channels) and self._settled()
                ):
                    await asyncio.sleep(0.005)
        except TimeoutError:
            idle = [channel for channel in channels if not broker.is_live(channel)]
            if idle:
                raise TimeoutError(f"No subscription to {idle} within {self.timeout}s") from None
            raise TimeoutError(
                f"This client's operations did not all start within {self.timeout}s (a query "
                "still running, or a subscription still on its way to its stream)"
            ) from None

    def _settled(self) -> bool:
        """Whether the server has read every frame this in-process client sent, and each of
        its operations has joined its group or streams on its own."""
        socket = self.socket
        if not isinstance(socket, InProcessSocket):
            return True
        if not socket.inbound.empty():
            return False  # a subscribe the server has not read yet
        endpoint = getattr(socket.application, "websocket", None)
        for connection in getattr(endpoint, "connections", ()):
            if connection.scope is self.scope:
                return all(op.settled() for op in connection.ops.running.values())
        return True

    async def next(self, op_id: str) -> dict[str, Any]:
        """The next result of operation ``op_id`` (``OperationFailed``, ``OperationCompleted``)."""
        message = await self._for(op_id)
        kind = message["type"]
        if kind == MessageType.NEXT:
            result: dict[str, Any] = message["payload"]
            return result
        if kind == MessageType.ERROR:
            raise OperationFailed(op_id, message["payload"])
        raise OperationCompleted(f"Operation {op_id!r} completed")

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Run a query or mutation over the socket: its one result, once it completes."""
        op_id = await self.subscribe(query, variables, **options)
        result = await self.next(op_id)
        await self.completed(op_id)
        return result

    async def completed(self, op_id: str) -> None:
        """Wait for the server to complete ``op_id`` (a result first fails the wait)."""
        message = await self._for(op_id)
        if message["type"] != MessageType.COMPLETE:
            raise AssertionError(f"Expected complete for {op_id!r}, got {message}")

    async def complete(self, op_id: str) -> None:
        """Stop operation ``op_id`` (the client's ``complete``)."""
        await self.send({"id": op_id, "type": MessageType.COMPLETE})

    async def send(self, message: dict[str, Any] | str) -> None:
        """Send one protocol message (or any text) as a text frame."""
        await self.socket.send(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, *, answer_pings: bool = True) -> dict[str, Any]:
        """The next protocol message but keep-alive pings, answered here (``answer_pings``
        False: a ping too, unanswered)."""
        if self._unread:
            return self._unread.popleft()
        while True:
            frame: dict[str, Any] = json.loads(await self._take("message"))
            if answer_pings and frame.get("type") == MessageType.PING:
                with contextlib.suppress(ConnectionClosed):  # closing: read what is left first
                    await self.send({"type": MessageType.PONG})
                continue
            return frame

    async def closed(self) -> ConnectionClosed:
        """Wait for the server to close the socket (messages before the close fail the wait)."""
        try:
            message = await self.receive()
        except ConnectionClosed as closed:
            return closed
        raise AssertionError(f"Expected the server to close the socket, got {message}")

    async def close(self, code: int = 1000) -> None:
        """Close the socket from the client's side and wait for the server's handler to end."""
        await self.socket.close(code, self.timeout)

    async def _for(self, op_id: str) -> dict[str, Any]:
        for n, message in enumerate(self._unread):
            if message.get("id") == op_id:
                del self._unread[n]
                return message
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                message = await self.receive()
                if message.get("id") == op_id:
                    return message
                skipped.append(message)
        finally:
            self._unread.extend(skipped)

    async def _take(self, what: str) -> str:
        if self.close_code is not None:
            raise ConnectionClosed(self.close_code, self.close_reason)
        try:
            async with asyncio.timeout(self.timeout):
                return await self.socket.receive()
        except TimeoutError:
            raise TimeoutError(f"No {what} from the server within {self.timeout}s") from None
        except ConnectionClosed as closed:
            self.close_code, self.close_reason = closed.code, closed.reason
            raise
