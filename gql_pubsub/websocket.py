"""The ASGI WebSocket endpoint: graphql-transport-ws over a socket, operations on a schema."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import functools
import logging
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import orjson
from graphql import DocumentNode
from graphql.execution import Executor

from . import protocol
from .auth import (
    TokenRejected,
    origin_allowed,
    token_expiry,
    token_from_connection_params,
)
from .broker import EventsLost, SubscriberOverflow, get_broker
from .conf import get_settings
from .context import Context, WebSocketRequest, WebSocketResponse
from .control import Announcement, Change, control_channel
from .cursors import Cursor, InvalidCursor, start_payload, with_cursor
from .events import Event, Gap
from .execution import Engine, engine_for, payload_of, refused
from .fanout import FanOut, Group, Member
from .hooks import Hooks, OperationRefused
from .limits import RateLimit
from .outbox import NO_FLOW_CONTROL_FLAG, Outbox
from .protocol import CloseCode, next_prefix
from .subscriptions import ChannelStream

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from strawberry.schema import BaseSchema

    from .types import Receive, Scope, Send
    from .user_streams import UserSubscriptionsStream

logger = logging.getLogger("gql_pubsub.websocket")


@dataclasses.dataclass(frozen=True)
class SocketStats:
    """What a WebSocket endpoint holds at one moment (``GraphQLWebSocket.stats()``)."""

    connections: int
    """Open sockets (acknowledged or not)."""
    users: int
    """Distinct authenticated users among them."""
    operations: int
    """Operations running on them."""
    groups: int
    """Fan-out groups: subscriptions that share one execution per event."""
    group_members: int
    """Operations served by those groups."""
    live_groups: int
    """Groups whose channels' subscription is confirmed (their events are being delivered)."""
    shared_executions: int
    """Shared executions of users' followed-channel streams."""
    documents_parsed: int
    """Documents parsed and validated (once per distinct text, while cached). The cache is the
    schema's, shared with the HTTP view and with other endpoints of the same schema."""
    documents_cached: int
    """Documents held parsed and validated (at most ``execution.DOCUMENT_CACHE_SIZE``)."""
    document_cache_hits: int
    """Operations (over either transport) that reused a parsed document."""


class Timer(enum.Enum):
    """A socket's timers (at most one of each is pending)."""

    INIT = "the connection_init deadline"
    PING = "the next keep-alive ping"
    PONG = "the deadline for the pong"
    EXPIRY = "the token's expiry"


class GraphQLWebSocket:
    """ASGI app for one GraphQL WebSocket path: speaks graphql-transport-ws only."""

    def __init__(self, schema: BaseSchema, hooks: Hooks | None = None) -> None:
        self.schema = schema
        self.hooks = hooks or Hooks()
        self.engine = engine_for(schema)
        if self.engine.per_subscriber_reason is not None:
            logger.warning(
                "Subscriptions of this schema run once per subscriber (no shared execution): "
                "Strawberry's pipeline runs its %s, which the grouped path cannot.",
                self.engine.per_subscriber_reason,
            )
        self.fanout = FanOut(self.engine)
        self.connections_per_user: collections.Counter[Any] = collections.Counter()
        self.connections: set[_Connection] = set()
        self.told_no_flow_control = False

    def stats(self) -> SocketStats:
        """What this endpoint holds now: for tests, health checks and metrics."""
        groups = self.fanout.groups.values()
        cache = self.engine.prepare.cache_info()
        return SocketStats(
            connections=len(self.connections),
            users=len(self.connections_per_user),
            operations=sum(len(connection.operations) for connection in self.connections),
            groups=len(self.fanout.groups),
            group_members=sum(len(group.members) for group in groups),
            live_groups=sum(group.ready.done() for group in groups),
            shared_executions=len(self.fanout.shared),
            documents_parsed=cache.misses,
            documents_cached=cache.currsize,
            document_cache_hits=cache.hits,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if not origin_allowed(scope, required=False):
            # Cross-site WebSocket hijacking: a page of another origin may not open a socket
            # that the browser would authenticate with this site's cookies. HTTP 403.
            await send({"type": "websocket.close", "code": CloseCode.FORBIDDEN})
            return
        if protocol.SUBPROTOCOL not in scope.get("subprotocols", ()):
            # Accept without a subprotocol so the client can read why it is refused.
            await send({"type": "websocket.accept"})
            await send(
                {
                    "type": "websocket.close",
                    "code": CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE,
                    "reason": f"Subprotocol not acceptable: use {protocol.SUBPROTOCOL}",
                }
            )
            return
        await send({"type": "websocket.accept", "subprotocol": protocol.SUBPROTOCOL})
        connection = _Connection(self, scope, receive, send)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)


class _Joined:
    """An operation served by a group."""

    __slots__ = ("group", "token")

    def __init__(self, group: Group, token: int) -> None:
        self.group = group
        self.token = token


class _Connection:
    """One socket: reads frames, starts operations, writes results through its outbox."""

    def __init__(
        self, server: GraphQLWebSocket, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.server = server
        self.scope = scope
        self.receive = receive
        self._send = send
        self.outbox = Outbox(send, limit=get_settings().SEND_BUFFER, on_overflow=self._on_overflow)
        if not self.outbox.flow_controlled and not server.told_no_flow_control:
            server.told_no_flow_control = True  # once per application
            logger.warning(NO_FLOW_CONTROL_FLAG)
        self.protocol = protocol.ProtocolConnection()
        self.context: Context | None = None
        self.operations: dict[str, asyncio.Task[None] | _Joined] = {}
        self.started: dict[str, protocol.Subscribe] = {}
        """Operations ``on_subscribe`` let start, until ``on_complete`` is called for them."""
        self.closed = False
        self._background: set[asyncio.Task[None]] = set()
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._watch: contextlib.AbstractAsyncContextManager[Any] | None = None
        settings = get_settings()
        self.rate = RateLimit(settings.OPERATION_RATE, settings.OPERATION_BURST)
        self.max_message_size = settings.MAX_MESSAGE_SIZE
        self.counted_user: Any = None
        host, port = scope.get("client") or ("unknown", 0)
        self.client = f"{host}:{port}"  # the peer's address, for the log

    async def _watch_access(self, user: Any) -> None:
        """Follow the user's control channel: revocations end operations before any later event."""
        self._watch = get_broker().watch(self._on_control, control_channel(user.pk))
        await self._watch.__aenter__()

    def _on_control(self, event: Event | Gap) -> None:
        """Runs inside the broker's dispatch: groups lose the member before the next event."""
        if isinstance(event, Gap):  # a revocation may be among what was lost: authorize again
            self._in_background(
                self._close(CloseCode.GOING_AWAY, "Going away: reconnect to check access again")
            )
            return
        announcement = Announcement.of(event)
        if announcement is None:
            return
        if announcement.change is Change.DEACTIVATED:
            self._in_background(self._close(CloseCode.FORBIDDEN, "Forbidden: user deactivated"))
            return
        channel = announcement.channel
        if announcement.change is not Change.REVOKED or channel is None:
            return
        for op_id, entry in list(self.operations.items()):
            if isinstance(entry, _Joined) and channel in entry.group.stream.channels:
                self._stop(op_id)
                self._in_background(self._finish(op_id, f"Access to {channel!r} was revoked."))

    async def run(self) -> None:
        self._after(Timer.INIT, get_settings().CONNECTION_INIT_TIMEOUT, self._init_timed_out)
        try:
            while not self.closed:
                message = await self.receive()
                if message["type"] == "websocket.disconnect":
                    self.closed = True
                    break
                frame = message.get("text")
                if frame is None:
                    frame = message.get("bytes")
                if frame is not None and _frame_size(frame, self.max_message_size) > (
                    self.max_message_size
                ):
                    await self._close(
                        CloseCode.MESSAGE_TOO_BIG,
                        f"Message too big: the limit is {self.max_message_size} bytes",
                    )
                    break
                await self._handle(self.protocol.receive(frame))
        finally:
            self.closed = True
            for timer in self._timers.values():
                timer.cancel()
            await self._stop_operations()
            for op_id in list(self.started):
                await self._ended(op_id)
            if self.counted_user is not None:
                counts = self.server.connections_per_user
                counts[self.counted_user] -= 1
                if counts[self.counted_user] <= 0:
                    del counts[self.counted_user]
            if self._watch is not None:
                await self._watch.__aexit__(None, None, None)
            await self.outbox.close()

    async def _handle(self, action: protocol.Action) -> None:
        match action:
            case protocol.Close(code, reason):
                await self._close(code, reason)
            case protocol.Init(payload):
                self._cancel(Timer.INIT)
                try:
                    user = await self._authenticate(payload)
                except TokenRejected as rejected:
                    close = self.protocol.reject(str(rejected))
                    await self._close(close.code, close.reason)
                    return
                self.context = Context(
                    request=WebSocketRequest(self.scope, user, payload),
                    response=WebSocketResponse(),
                    user=user,
                    connection_params=payload,
                )
                if user.is_authenticated and getattr(user, "pk", None) is not None:
                    limit = get_settings().MAX_CONNECTIONS_PER_USER
                    counts = self.server.connections_per_user
                    if limit and counts[user.pk] >= limit:
                        await self._close(
                            CloseCode.FORBIDDEN,
                            f"Forbidden: this user already has {limit} connections here",
                        )
                        return
                    counts[user.pk] += 1
                    self.counted_user = user.pk
                    await self._watch_access(user)
                await self._send_text(self.protocol.ack())
                self._schedule_ping()
            case protocol.Ping():
                await self._send_text(protocol.PONG)
            case protocol.Pong():
                if Timer.PONG in self._timers:  # the answer to our keepalive ping
                    self._cancel(Timer.PONG)
                    self._schedule_ping()
            case protocol.Subscribe() as subscribe:
                refusal = self._refuse()
                if refusal is not None:
                    await self._send_error(subscribe.id, [{"message": refusal}])
                    return
                self.operations[subscribe.id] = asyncio.create_task(self._start(subscribe))
            case protocol.Complete(id=op_id):
                self._stop(op_id)
                await self._ended(op_id)

    # -- operations --------------------------------------------------------------------------

    async def _start(self, op: protocol.Subscribe) -> None:
        """Start an operation: a group membership for subscriptions, else Strawberry's pipeline."""
        try:
            assert self.context is not None  # operations start after the ack
            try:
                await self.server.hooks.on_subscribe(self.context, op)
            except OperationRefused as refused:
                await self._send_error(op.id, [{"message": str(refused)}])
                return
            self.started[op.id] = op
            engine = self.server.engine
            document = engine.prepare(op.query)
            if isinstance(document, list):
                await self._send_error(op.id, engine.report(document))
                return
            if engine.groupable(document, op.operation_name):
                await self._subscribe(op, document)
            else:
                await self._stream_results(op.id, await engine.stream(op, self.context))
        except asyncio.CancelledError:
            raise
        except OSError:
            pass  # the client went away mid-send; the receive loop ends the connection
        except Exception:
            logger.exception("Operation %r failed", op.id)
            await self._close(CloseCode.INTERNAL_SERVER_ERROR, "Internal server error")
        finally:
            if self.operations.get(op.id) is asyncio.current_task():
                del self.operations[op.id]

    async def _subscribe(self, op: protocol.Subscribe, document: DocumentNode) -> None:
        resumable = op.extensions is not None and "after" in op.extensions
        after: Cursor | None = None
        if resumable and op.extensions is not None and op.extensions["after"] is not None:
            try:
                after = Cursor.decode(op.extensions["after"])
            except InvalidCursor as error:
                await self._send_error(op.id, [{"message": str(error)}])
                return
        engine = self.server.engine
        executor = engine.build(document, self.context, op)
        if isinstance(executor, list):
            await self._send_error(op.id, executor)
            return
        source = await engine.source(executor)
        if isinstance(source, list):
            await self._send_error(op.id, source)
            return
        from .user_streams import UserSubscriptionsStream  # needs Django's apps: imported late

        followed = source if isinstance(source, UserSubscriptionsStream) else None
        if followed is not None and resumable:
            followed.resume_from(after)
            await followed.open()
            payload = start_payload(followed.cursor, followed.lost)
            await self.outbox.send(next_prefix(op.id) + payload + "}")
        if followed is not None and followed.shared:
            await self._stream_shared(op, document, followed)
            return
        if not isinstance(source, ChannelStream):
            results = engine.results(executor, source)
            await self._stream_results(op.id, results, followed if resumable else None)
            return
        key: Hashable = (
            *_operation_key(op),
            source.key,
            None if source.shared else self._viewer_key(),
            resumable,
        )
        make_executor = (
            functools.partial(_shared_executor, engine, document, op)
            if source.shared
            else lambda: executor
        )
        group = self.server.fanout.group(key, make_executor, source, resumable=resumable)
        member = Member(op.id, self.outbox.send, functools.partial(self._finish, op.id))
        if resumable:
            member.held = []  # the group's frames wait until the member has caught up
        token = await group.join(member)
        if self.operations.get(op.id) is asyncio.current_task() and not self.closed:
            self.operations[op.id] = _Joined(group, token)
        else:  # completed or closed while joining
            group.leave(token)
            return
        if resumable:
            await group.catch_up(member, after)

    async def _stream_shared(
        self, op: protocol.Subscribe, document: DocumentNode, source: UserSubscriptionsStream[Any]
    ) -> None:
        """A per-subscriber stream whose events are executed once for all its subscribers."""
        key: Hashable = (*_operation_key(op), source.map)
        fanout = self.server.fanout
        make_executor = functools.partial(_shared_executor, self.server.engine, document, op)
        shared = fanout.share(key, make_executor)
        prefix = next_prefix(op.id)
        try:
            async with source:
                while op.id in self.protocol.operations:
                    event = await source.next_event()
                    payload = await shared.payload(event, source.map)
                    if payload is not None:
                        if source.resumable:
                            payload = with_cursor(payload[:-1], source.cursor)
                        await self.outbox.send(prefix + payload + "}")
        except StopAsyncIteration:
            await self._finish(op.id, None)
        except (SubscriberOverflow, EventsLost) as ended:
            await self._finish(op.id, str(ended))
        finally:
            fanout.unshare(key)

    def _refuse(self) -> str | None:
        """Why a new operation may not start (the connection's limits), if it may not."""
        settings = get_settings()
        if len(self.operations) >= settings.MAX_OPERATIONS_PER_CONNECTION:
            return (
                f"Too many operations on this connection: the limit is "
                f"{settings.MAX_OPERATIONS_PER_CONNECTION}. Complete some first."
            )
        if not self.rate.allow():
            return (
                f"Too many operations too fast: at most {settings.OPERATION_RATE:g} per second "
                f"(bursts of {settings.OPERATION_BURST}). Retry a little later."
            )
        return None

    def _viewer_key(self) -> Hashable:
        user = self.context.user if self.context is not None else None
        if user is not None and user.is_authenticated:
            return ("user", user.pk)
        return ("connection", id(self))

    async def _stream_results(
        self, op_id: str, results: Any, cursors: UserSubscriptionsStream[Any] | None = None
    ) -> None:
        """Send each result; with ``cursors``, with that stream's cursor after its event."""
        first = True
        async with contextlib.aclosing(results):
            async for result in results:
                errors = refused(result) if first else None
                if errors is not None:
                    await self._send_error(op_id, errors)
                    return
                first = False
                payload = payload_of(result)
                if payload is None:
                    continue  # incremental delivery frames have no graphql-transport-ws form
                if op_id not in self.protocol.operations:
                    return
                if cursors is not None and not result.extensions:
                    payload = with_cursor(payload[:-1], cursors.cursor)
                await self.outbox.send(next_prefix(op_id) + payload + "}")
        await self._finish(op_id, None)

    async def _finish(self, op_id: str, error: str | None) -> None:
        """The server ended operation ``op_id`` (its stream ended or failed)."""
        entry = self.operations.get(op_id)
        if isinstance(entry, _Joined):
            del self.operations[op_id]
        for frame in self.protocol.complete(op_id, error):
            await self._send_text(frame)
        await self._ended(op_id)

    async def _send_error(self, op_id: str, errors: list[Any]) -> None:
        frame = self.protocol.error(op_id, errors)
        if frame is not None:
            logger.info(
                "Operation %r of %s failed: %s",
                op_id,
                self.client,
                "; ".join(str(error.get("message")) for error in errors)[:1000],
            )
            await self._send_text(frame)
        await self._ended(op_id)

    async def _ended(self, op_id: str) -> None:
        """Tell ``on_complete`` that a started operation ended (once)."""
        op = self.started.pop(op_id, None)
        if op is None or self.context is None:
            return
        try:
            await self.server.hooks.on_complete(self.context, op)
        except Exception:
            logger.exception("The on_complete hook failed for operation %r", op_id)

    def _stop(self, op_id: str) -> None:
        entry = self.operations.pop(op_id, None)
        if isinstance(entry, _Joined):
            entry.group.leave(entry.token)
        elif entry is not None:
            entry.cancel()

    async def _stop_operations(self) -> None:
        entries = list(self.operations.values())
        self.operations.clear()
        tasks = []
        for entry in entries:
            if isinstance(entry, _Joined):
                entry.group.leave(entry.token)
            elif entry is not asyncio.current_task():
                entry.cancel()
                tasks.append(entry)
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # -- connection ---------------------------------------------------------------------------

    async def _authenticate(self, params: dict[str, Any]) -> AbstractBaseUser | AnonymousUser:
        """The connection's user (``on_connect``), or ``TokenRejected`` saying why there is none."""
        token = token_from_connection_params(params)
        user = await self.server.hooks.on_connect(self.scope, params, token)
        if token is not None:
            expires = token_expiry(token)
            if expires is not None:
                self._after(Timer.EXPIRY, max(0.0, expires - time.time()), self._token_expired)
        return user

    def _after(self, name: Timer, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` in ``delay`` seconds, replacing the pending ``name`` timer."""
        self._cancel(name)

        def fire() -> None:
            del self._timers[name]
            callback()

        self._timers[name] = asyncio.get_running_loop().call_later(delay, fire)

    def _cancel(self, name: Timer) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _schedule_ping(self) -> None:
        interval = get_settings().KEEPALIVE_INTERVAL
        if interval > 0 and not self.closed:
            self._after(Timer.PING, interval, self._ping)

    def _ping(self) -> None:
        self._in_background(self._send_text(protocol.PING))
        self._after(Timer.PONG, get_settings().KEEPALIVE_TIMEOUT, self._pong_missing)

    def _pong_missing(self) -> None:
        self._in_background(self._close(CloseCode.GOING_AWAY, "Keepalive timeout: no pong"))

    def _token_expired(self) -> None:
        self._in_background(
            self._close(CloseCode.FORBIDDEN, "Token expired: reconnect with a fresh token")
        )

    def _init_timed_out(self) -> None:
        close = self.protocol.init_timed_out()
        if close is not None:
            self._in_background(self._close(close.code, close.reason))

    def _on_overflow(self) -> None:
        self._in_background(
            self._close(
                CloseCode.TRY_AGAIN_LATER,
                f"Slow consumer: more than {self.outbox.limit} messages were waiting",
            )
        )

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_text(self, frame: str) -> None:
        if not self.closed:
            await self.outbox.send(frame)

    async def _close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        logger.info("Closed the socket of %s with %d: %s", self.client, code, reason)
        # Leave every group first: the close frame may wait a long time behind a stalled client.
        for op_id in list(self.operations):
            if self.operations[op_id] is not asyncio.current_task():
                self._stop(op_id)
        await self.outbox.close()
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": int(code), "reason": reason})


def _frame_size(frame: str | bytes, limit: int) -> int:
    """The frame's size in bytes as sent (UTF-8), computed only when it could exceed ``limit``."""
    if isinstance(frame, bytes) or not limit // 4 < len(frame) <= limit:
        return len(frame)  # UTF-8 has 1 to 4 bytes a character: the count decides already
    return len(frame.encode())


def _operation_key(op: protocol.Subscribe) -> tuple[str, bytes, str | None]:
    """What makes two operations the same: document text, variables (key order aside), name."""
    variables = orjson.dumps(op.variables, option=orjson.OPT_SORT_KEYS) if op.variables else b""
    return op.query, variables, op.operation_name


def _shared_executor(
    engine: Engine, document: DocumentNode, op: protocol.Subscribe
) -> Executor[Any]:
    """The executor of a shared group: nobody's user, so no result can depend on one."""
    from django.contrib.auth.models import AnonymousUser

    # Nobody's handshake either: a request with the path only (no headers, cookies or client).
    scope = {"type": "websocket", "path": get_settings().GRAPHQL_PATH, "headers": []}
    user = AnonymousUser()
    context = Context(
        request=WebSocketRequest(scope, user),
        response=WebSocketResponse(),
        user=user,
        connection_params={},
    )
    executor = engine.build(document, context, op)
    assert isinstance(executor, Executor)  # the same arguments built one for the first member
    return executor
