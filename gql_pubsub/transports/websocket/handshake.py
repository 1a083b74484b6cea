"""The WebSocket handshake, and the size of a frame as the limits count it."""

from __future__ import annotations

from gql_pubsub.auth.handshake import origin_allowed
from gql_pubsub.core.asgi_types import Receive, Scope, Send
from gql_pubsub.server.close_codes import CloseCode
from gql_pubsub.transports.websocket.protocol import SUBPROTOCOL


async def accept(scope: Scope, receive: Receive, send: Send) -> bool:
    """Accept the socket with the subprotocol, or refuse it saying why (False)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return False
    if not origin_allowed(scope, required=False):
        # Cross-site WebSocket hijacking: a page of another origin may not open a socket
        # that the browser would authenticate with this site's cookies. HTTP 403.
        await send({"type": "websocket.close", "code": CloseCode.FORBIDDEN})
        return False
    if SUBPROTOCOL not in scope.get("subprotocols", ()):
        # Accept without a subprotocol so the client can read why it is refused.
        await send({"type": "websocket.accept"})
        await send(
            {
                "type": "websocket.close",
                "code": CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE,
                "reason": f"Subprotocol not acceptable: use {SUBPROTOCOL}",
            }
        )
        return False
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
    return True


def frame_size(frame: str | bytes, limit: int) -> int:
    """The frame's size in bytes as sent (UTF-8), computed only when it could exceed ``limit``."""
    if isinstance(frame, bytes) or not limit // 4 < len(frame) <= limit:
        return len(frame)  # UTF-8 has 1 to 4 bytes a character: the count decides already
    return len(frame.encode())
