"""The suite's WebSocket clients: ``GraphQLWS``, the suite's spelling of the public test client
(``gql_pubsub.testing.GraphQLTestClient.over_network``: one client, the one users get, over a
real socket) with per-call bounded waits; and ``StalledClient``, a fault (a client with tiny
buffers that stops reading)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from gql_pubsub.testing import ConnectionClosed, GraphQLTestClient
from gql_pubsub.testing.sockets import NetworkSocket

from .services import scaled

SUBPROTOCOL = "graphql-transport-ws"

Closed = ConnectionClosed
"""The server closed the socket (``code`` 1006: with no close frame)."""

PING = {"type": "ping"}
PONG = {"type": "pong"}


class GraphQLWS:
    """One client socket: send protocol messages, receive them with bounded waits."""

    def __init__(self, client: GraphQLTestClient, *, answer_pings: bool = False) -> None:
        self.client = client
        self._inbox: asyncio.Queue[dict[str, Any] | Closed] | None = None
        self._reader: asyncio.Task[None] | None = None
        if answer_pings:  # as real clients do: read all the time, answer pings at once
            self._inbox = asyncio.Queue()
            self._reader = asyncio.create_task(self._read(self._inbox))

    @property
    def ws(self) -> ClientConnection:
        """The ``websockets`` connection under it."""
        socket = self.client.socket
        assert isinstance(socket, NetworkSocket)
        return socket.connection

    async def _read(self, inbox: asyncio.Queue[dict[str, Any] | Closed]) -> None:
        try:
            while True:
                inbox.put_nowait(await self.client.receive(answer_pings=True))
        except Closed as closed:
            inbox.put_nowait(closed)  # receive() raises it from here on

    async def _next(self, timeout: float, *, answer_pings: bool) -> dict[str, Any]:
        if self._inbox is None:
            return await asyncio.wait_for(self.client.receive(answer_pings=answer_pings), timeout)
        message = await asyncio.wait_for(self._inbox.get(), timeout)
        if isinstance(message, Closed):
            self._inbox.put_nowait(message)
            raise message
        return message

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        subprotocols: list[str] | None = None,
        answer_pings: bool = False,
        **kwargs: Any,
    ) -> GraphQLWS:
        client = GraphQLTestClient.over_network(
            url,
            subprotocols=subprotocols if subprotocols is not None else [SUBPROTOCOL],
            timeout=scaled(20),
            **kwargs,
        )
        await client.connect()
        client.timeout = 3600  # each wait below is bounded by its own timeout
        return cls(client, answer_pings=answer_pings)

    async def __aenter__(self) -> GraphQLWS:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.client.socket.close(1000, scaled(10))
        if self._reader is not None:
            await self._reader

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.client.send(message)

    async def receive(self, timeout: float = 10, *, skip_pings: bool = False) -> dict[str, Any]:
        """The next message (``skip_pings``: but keep-alive pings, answered)."""
        return await self._next(scaled(timeout), answer_pings=skip_pings)

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send connection_init and expect connection_ack."""
        await self.send({"type": "connection_init", "payload": payload or {}})
        ack = await self.receive()
        assert ack["type"] == "connection_ack", ack
        return ack

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        await self.client.subscribe(query, variables, op_id=op_id)

    async def next_payload(self, op_id: str, timeout: float = 10) -> dict[str, Any]:
        """The payload of the next message but keep-alive pings (answered), which must be a
        ``next`` for ``op_id``."""
        message = await self.receive(timeout, skip_pings=True)
        assert message.get("id") == op_id and message["type"] == "next", message
        payload: dict[str, Any] = message["payload"]
        return payload

    async def expect_close(self, timeout: float = 10) -> Closed:
        """Wait for the server to close the socket, and say how."""
        try:
            while True:
                message = await self.receive(timeout)
                raise AssertionError(f"expected a close, got {message}")
        except Closed as closed:
            return closed

    async def expect_silence(self, seconds: float, *, pings: bool = True) -> None:
        """Assert no message arrives for ``seconds``; keep-alive pings are answered if ``pings``."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await self._next(max(left, 0), answer_pings=False)
            except TimeoutError:
                return
            if not (pings and message == PING):
                raise AssertionError(f"expected no message, got {message!r}")
            await self.send(PONG)


class StalledClient:
    """A graphql-transport-ws client with tiny receive buffers that stops reading on demand.

    Built on websockets' sans-I/O protocol over a raw socket, so nothing reads behind its back:
    once it stops calling ``receive``, the server's writes back up within a few kilobytes.
    """

    def __init__(self, protocol: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        self.pending: list[Any] = []

    @classmethod
    async def connect(cls, url: str) -> StalledClient:
        import socket as socket_module

        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        sock = socket_module.socket()
        sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        protocol = ClientProtocol(uri, subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
        protocol.send_request(protocol.connect())
        client = cls(protocol, reader, writer)
        await client._flush()
        while protocol.handshake_exc is None and protocol.state.name == "CONNECTING":
            await client._read()
        return client

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def _read(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), scaled(10))
        if not data:
            self.protocol.receive_eof()
        else:
            self.protocol.receive_data(data)
        self.pending.extend(self.protocol.events_received())
        await self._flush()

    async def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def receive(self) -> dict[str, Any]:
        """The next text message; raises Closed on the server's close frame."""
        from websockets.frames import Opcode

        while True:
            while self.pending:
                event = self.pending.pop(0)
                if getattr(event, "opcode", None) is Opcode.TEXT:
                    message: dict[str, Any] = json.loads(event.data)
                    return message
                if getattr(event, "opcode", None) is Opcode.CLOSE:
                    close = self.protocol.close_rcvd
                    raise Closed(close.code if close else None, close.reason if close else "")
            if self.protocol.close_rcvd is not None:
                raise Closed(self.protocol.close_rcvd.code, self.protocol.close_rcvd.reason)
            await self._read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
