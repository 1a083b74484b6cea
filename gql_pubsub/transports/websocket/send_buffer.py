"""A socket's outgoing frames: sent at once while the socket keeps up, queued (bounded) if not."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gql_pubsub.core.asgi_types import Send

logger = logging.getLogger("gql_pubsub.outbox")


NO_FLOW_CONTROL_FLAG = (
    "The ASGI server's websocket send exposes no flow-control flag (uvicorn's `websockets-sansio`"
    " and `wsproto` protocols do; its legacy `websockets` one does not, and an ASGI middleware"
    " that wraps `send` hides it): every frame goes through a writer task, which is correct but"
    " slower. Serve with uvicorn's default `--ws auto`, and wrap only the HTTP side."
)


def _writable_flag(send: Send) -> asyncio.Event | None:
    """uvicorn's flow-control flag behind its ASGI ``send``, when it exposes one."""
    flag = getattr(getattr(send, "__self__", None), "writable", None)
    return flag if isinstance(flag, asyncio.Event) else None


class SendBuffer:
    """Orders a socket's frames and keeps a slow client from holding anyone else up.

    While the client keeps up (the server's transport is writable), a frame is written in the
    caller's turn, without a task switch. Once the client falls behind, frames queue here and
    one writer task drains them; more than ``limit`` queued frames call ``on_overflow``.
    """

    __slots__ = ("_backlog", "_closed", "_flag", "_on_overflow", "_send", "_writer", "limit")

    def __init__(self, send: Send, *, limit: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self._flag = _writable_flag(send)
        self._backlog: deque[str] | None = None  # made when first needed: most never need it
        self._writer: asyncio.Task[None] | None = None
        self._on_overflow = on_overflow
        self._closed = False
        self.limit = limit

    @property
    def queued(self) -> int:
        """Frames waiting for a slow client."""
        return len(self._backlog) if self._backlog is not None else 0

    @property
    def flow_controlled(self) -> bool:
        """Whether frames are written in the caller's turn while the client keeps up."""
        return self._flag is not None

    async def send(self, text: str) -> None:
        """Send a frame, in order; never waits for a slow client."""
        if self._closed:
            return
        flag = self._flag
        if flag is not None and flag.is_set() and not self._backlog and self._writer is None:
            # The transport accepts writes: this ASGI send completes without suspending.
            try:
                await self._send({"type": "websocket.send", "text": text})
            except OSError:
                self._closed = True
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        if len(backlog) >= self.limit:
            self._closed = True
            self._backlog = None
            self._on_overflow()
            return
        backlog.append(text)
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._backlog and not self._closed:
                text = self._backlog.popleft()
                await self._send({"type": "websocket.send", "text": text})
        except OSError:
            self._closed = True
        finally:
            self._writer = None
            if not self._backlog:
                self._backlog = None  # the client caught up: let the buffer go

    async def close(self) -> None:
        """Drop what is queued and stop the writer."""
        self._closed = True
        self._backlog = None
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await writer
