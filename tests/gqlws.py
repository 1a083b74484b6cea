"""A small real graphql-transport-ws client for the tests (on the ``websockets`` library)."""

from __future__ import annotations

import asyncio
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


class GraphQLWS:
    """One client socket: send protocol messages, receive them with bounded waits."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(
        cls, url: str, *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> GraphQLWS:
        ws = await websockets.connect(
            url,
            subprotocols=subprotocols if subprotocols is not None else [SUBPROTOCOL],  # type: ignore[arg-type]
            open_timeout=scaled(20),
            max_queue=None,
            **kwargs,
        )
        return cls(ws)

    async def __aenter__(self) -> GraphQLWS:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), scaled(timeout))
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
        """The payload of the next message, which must be a ``next`` for ``op_id``."""
        message = await self.receive(timeout)
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

    async def expect_silence(self, seconds: float) -> None:
        """Assert no message arrives for ``seconds`` (used after the positive control)."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected no message, got {message!r}")
