"""One socket's driver: reads frames, keeps its keep-alive timers, opens its
:class:`~gql_pubsub.server.session.Session` (the user's rules, as for an HTTP stream), hands
operations to :class:`~gql_pubsub.server.operations.Operations`, and closes it. Raw ASGI
messages of a connection appear only here and in its
:class:`~gql_pubsub.transports.websocket.send_buffer.SendBuffer`."""

from __future__ import annotations

import contextlib
import enum
import logging
from typing import TYPE_CHECKING

from gql_pubsub.auth.tokens import TokenRejected, token_from_connection_params
from gql_pubsub.conf import get_settings
from gql_pubsub.core import metrics
from gql_pubsub.core.timers import wheel
from gql_pubsub.execution.context import Context, WebSocketRequest, WebSocketResponse
from gql_pubsub.execution.limits import RateLimit
from gql_pubsub.server.close_codes import CloseCode
from gql_pubsub.server.operations import Operations
from gql_pubsub.server.session import Session
from gql_pubsub.transports.websocket import protocol
from gql_pubsub.transports.websocket.handshake import accept, frame_size
from gql_pubsub.transports.websocket.send_buffer import NO_FLOW_CONTROL_FLAG, SendBuffer

if TYPE_CHECKING:
    from gql_pubsub.core.asgi_types import Receive, Scope, Send
    from gql_pubsub.transports.websocket.endpoint import GraphQLWebSocket

logger = logging.getLogger("gql_pubsub.websocket")


class Timer(enum.Enum):
    """A socket's timers (at most one is pending; the token's expiry is its session's)."""

    INIT = "the connection_init deadline"
    PING = "the next keep-alive ping"
    PONG = "the deadline for the pong"


class Connection:
    """One socket: reads frames, starts operations, writes results through its send_buffer."""

    __slots__ = (
        "_beat",
        "_beat_at",
        "_send",
        "closed",
        "context",
        "max_message_size",
        "ops",
        "protocol",
        "rate",
        "receive",
        "scope",
        "send_buffer",
        "server",
        "session",
    )  # fmt: skip  (thousands of sockets a process: no __dict__ each)

    def __init__(
        self, server: GraphQLWebSocket, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.server = server
        self.scope = scope
        self.receive = receive
        self._send = send
        self.send_buffer = SendBuffer(
            send, limit=get_settings().SEND_BUFFER, on_overflow=self._on_overflow
        )
        if not self.send_buffer.flow_controlled and not server.told_no_flow_control:
            server.told_no_flow_control = True  # once per application
            logger.warning(NO_FLOW_CONTROL_FLAG)
        self.protocol = protocol.ProtocolConnection()
        self.context: Context | None = None
        self.ops = Operations(self)
        self.session = Session(server.hub, self)
        self.closed = False
        # The pending timer (one of the connection_init deadline, the ping and the pong), by
        # its slot on the loop's ``timers.wheel()`` (0: none).
        self._beat: Timer | None = None
        self._beat_at = 0
        settings = get_settings()
        self.rate = RateLimit(settings.OPERATION_RATE, settings.OPERATION_BURST)
        self.max_message_size = settings.MAX_MESSAGE_SIZE

    @property
    def client(self) -> str:
        """The peer's address, for the log (made when needed: most sockets never log)."""
        host, port = self.scope.get("client") or ("unknown", 0)
        return f"{host}:{port}"

    async def run(self) -> None:
        """Serve the socket: the handshake, then its frames until it is closed."""
        if not await accept(self.scope, self.receive, self._send):
            return
        self.server.connections.add(self)
        self._after(Timer.INIT, get_settings().CONNECTION_INIT_TIMEOUT)
        try:
            while not self.closed:
                message = await self.receive()
                if message["type"] == "websocket.disconnect":
                    self.closed = True
                    break
                frame = message.get("text")
                if frame is None:
                    frame = message.get("bytes")
                if frame is not None and frame_size(frame, self.max_message_size) > (
                    self.max_message_size
                ):
                    await self.close(
                        CloseCode.MESSAGE_TOO_BIG,
                        f"Message too big: the limit is {self.max_message_size} bytes",
                    )
                    break
                await self._handle(self.protocol.receive(frame))
        finally:
            self.closed = True
            self._cancel()
            await self.ops.close()
            await self.session.close()
            await self.send_buffer.close()
            self.server.connections.discard(self)

    async def _handle(self, action: protocol.Action) -> None:
        match action:
            case protocol.Close(code, reason):
                await self.close(code, reason)
            case protocol.Init(payload):
                self._cancel()
                token = token_from_connection_params(payload)
                try:
                    user = await self.session.authenticate(self.scope, payload, token)
                except TokenRejected as rejected:
                    close = self.protocol.reject(str(rejected))
                    await self.close(close.code, close.reason, fix=rejected.fix)
                    return
                self.context = Context(
                    request=WebSocketRequest(self.scope, user, payload),
                    response=WebSocketResponse(),
                    user=user,
                    connection_params=payload,
                )
                refusal = await self.session.open(user, token)
                if refusal is not None:
                    await self.close(refusal.code, refusal.reason)
                    return
                await self.send_text(self.protocol.ack())
                self._schedule_ping()
            case protocol.Ping():
                await self.send_text(protocol.PONG)
            case protocol.Pong():
                if self._beat is Timer.PONG:  # the answer to our keepalive ping
                    self._cancel()
                    self._schedule_ping()
            case protocol.Subscribe() as subscribe:
                too_many = self.ops.refusal()
                if too_many is not None:
                    await self.ops.fail(subscribe.id, [{"message": too_many}])
                    return
                self.ops.start(subscribe)
            case protocol.Complete(id=op_id):
                self.ops.stop(op_id)
                await self.ops.ended(op_id)

    def _after(self, timer: Timer, delay: float) -> None:
        """Fire ``timer`` in ``delay`` seconds (see ``_fired``), replacing the pending one."""
        self._cancel()
        self._beat, self._beat_at = timer, wheel().add(delay, self)

    def due(self, slot: int) -> None:
        """The wheel's call: fire the pending timer if ``slot`` is its."""
        timer = self._beat
        if timer is not None and self._beat_at == slot:
            self._beat, self._beat_at = None, 0
            self._fired(timer)

    def _cancel(self) -> None:
        """Cancel the pending timer, if any."""
        slot, self._beat, self._beat_at = self._beat_at, None, 0
        if slot:
            wheel().discard(slot, self)

    def _schedule_ping(self) -> None:
        interval = get_settings().KEEPALIVE_INTERVAL
        if interval > 0 and not self.closed:
            self._after(Timer.PING, interval)

    def _fired(self, timer: Timer) -> None:
        match timer:
            case Timer.PING:
                self.ops.in_background(self.send_text(protocol.PING))
                self._after(Timer.PONG, get_settings().KEEPALIVE_TIMEOUT)
            case Timer.PONG:
                self.ops.in_background(
                    self.close(CloseCode.GOING_AWAY, "Keepalive timeout: no pong")
                )
            case Timer.INIT:
                close = self.protocol.init_timed_out()
                if close is not None:
                    self.ops.in_background(self.close(close.code, close.reason))

    def _on_overflow(self) -> None:
        reason = f"Slow consumer: more than {self.send_buffer.limit} messages were waiting"
        self.ops.in_background(self.close(CloseCode.TRY_AGAIN_LATER, reason))

    async def send_text(self, frame: str) -> None:
        if not self.closed:
            await self.send_buffer.send(frame)

    async def close(self, code: int, reason: str, *, fix: str | None = None) -> None:
        """Close the socket with ``code`` and ``reason``; the log line also says ``fix``."""
        if self.closed:
            return
        self.closed = True
        hint = f"; {fix}" if fix else ""
        logger.info("Closed the socket of %s with %d: %s%s", self.client, code, reason, hint)
        if metrics.METRICS is not None:
            metrics.METRICS.closed.labels(str(int(code))).inc()
        # Leave every group first: the close frame may wait a long time behind a stalled client.
        self.ops.stop_all()
        await self.send_buffer.close()
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": int(code), "reason": reason})
