"""A small real graphql-transport-ws client for the tests (on the ``websockets`` library)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .services import scaled

SUBPROTOCOL = "graphql-transport-ws"


class Closed(Exception):
    """The server closed the socket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code}: {reason}")
        self.code = code
        self.reason = reason


PING = {"type": "ping"}
PONG = {"type": "pong"}


class GraphQLWS:
    """One client socket: send protocol messages, receive them with bounded waits."""

    def __init__(self, ws: ClientConnection, *, answer_pings: bool = False) -> None:
        self.ws = ws
        self._inbox: asyncio.Queue[str | None] | None = None
        self._reader: asyncio.Task[None] | None = None
        if answer_pings:  # as real clients do: read all the time, answer pings at once
            self._inbox = asyncio.Queue()
            self._reader = asyncio.create_task(self._read(self._inbox))

    async def _answered(self, raw: str | bytes) -> bool:
        """Whether ``raw`` is a keep-alive ping, answered here (the one place pings are)."""
        if json.loads(raw) != PING:
            return False
        await self.send(PONG)
        return True

    async def _read(self, inbox: asyncio.Queue[str | None]) -> None:
        try:
            async for raw in self.ws:
                if not await self._answered(raw):
                    inbox.put_nowait(str(raw))
        except ConnectionClosed:
            pass
        finally:
            inbox.put_nowait(None)  # closed: receive() raises Closed from here on

    async def _recv(self, timeout: float) -> str:
        if self._inbox is None:
            return str(await asyncio.wait_for(self.ws.recv(), timeout))
        raw = await asyncio.wait_for(self._inbox.get(), timeout)
        if raw is None:
            self._inbox.put_nowait(None)
            rcvd = self.ws.close_rcvd
            raise ConnectionClosed(rcvd, self.ws.close_sent)
        return raw

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        subprotocols: list[str] | None = None,
        answer_pings: bool = False,
        **kwargs: Any,
    ) -> GraphQLWS:
        kwargs.setdefault("max_queue", None)
        ws = await websockets.connect(
            url,
            subprotocols=subprotocols if subprotocols is not None else [SUBPROTOCOL],  # type: ignore[arg-type]
            open_timeout=scaled(20),
            **kwargs,
        )
        return cls(ws, answer_pings=answer_pings)

    async def __aenter__(self) -> GraphQLWS:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 10, *, skip_pings: bool = False) -> dict[str, Any]:
        """The next message (``skip_pings``: but keep-alive pings, answered)."""
        try:
            raw = await self._recv(scaled(timeout))
            while skip_pings and await self._answered(raw):
                raw = await self._recv(scaled(timeout))
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
        message: dict[str, Any] = json.loads(raw)
        return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send connection_init and expect connection_ack."""
        await self.send({"type": "connection_init", "payload": payload or {}})
        ack = await self.receive()
        assert ack["type"] == "connection_ack", ack
        return ack

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        await self.send(
            {"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables}}
        )

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
                message = await self._recv(max(left, 0))
            except TimeoutError:
                return
            if not (pings and await self._answered(message)):
                raise AssertionError(f"expected no message, got {message!r}")


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
