"""Subscriptions over HTTP: one operation per request, streamed as Apollo Client's multipart
subscriptions or as graphql-sse's event stream, on the same engine, fan-out, access checks and
limits as the WebSocket.

An :class:`HttpStream` is what :class:`~gql_pubsub.server.operations.Operations` needs of a
connection: a context, a protocol that frames results, a send buffer (a bounded queue the
response body drains), and ``close``. Its user is ``Hooks.on_connect``'s, as a socket's (by
default the request's: its session, or the bearer token of the ``Authorization`` header), and
its :class:`~gql_pubsub.server.session.Session` applies the socket's rules: the token's expiry
ends the stream, and so do a revocation and a deactivation announced on the user's control
channel; the stream counts toward ``MAX_CONNECTIONS_PER_USER`` with the user's sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from graphql import OperationType, get_operation_ast

from gql_pubsub.auth.tokens import TokenRejected, token_from_header
from gql_pubsub.conf import get_settings
from gql_pubsub.execution.context import Context
from gql_pubsub.execution.limits import RateLimit
from gql_pubsub.execution.request import OperationRequest
from gql_pubsub.server.close_codes import CloseCode
from gql_pubsub.server.operations import Operations
from gql_pubsub.server.session import Session
from gql_pubsub.transports.http.framing import (
    MULTIPART,
    STREAM_OPERATION,
    Framing,
    StreamProtocol,
    framing_for,
)

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

    from gql_pubsub.core.asgi_types import Scope
    from gql_pubsub.execution.engine import Engine
    from gql_pubsub.execution.fanout import FanOut
    from gql_pubsub.server.hooks import Hooks
    from gql_pubsub.server.hub import Hub

logger = logging.getLogger("gql_pubsub.http")


class _Server:
    """What ``Operations`` reaches through ``connection.server``: the hub's engine and fan-out,
    and the view's hooks (the hub's unless the view has its own)."""

    __slots__ = ("hooks", "hub")

    def __init__(self, hub: Hub, hooks: Hooks) -> None:
        self.hub = hub
        self.hooks = hooks

    @property
    def engine(self) -> Engine:
        return self.hub.engine

    @property
    def fanout(self) -> FanOut:
        return self.hub.fanout


class HttpStream:
    """One subscription over HTTP, from its request to the end of its response body."""

    def __init__(
        self,
        hub: Hub,
        hooks: Hooks,
        request: HttpRequest,
        user: Any,
        token: str | None,
        framing: Framing,
        operation: OperationRequest,
    ) -> None:
        settings = get_settings()
        self.server = _Server(hub, hooks)
        self.context: Context | None = Context(request=request, response=HttpResponse(), user=user)
        self.protocol = StreamProtocol(framing)
        self.framing = framing
        self.operation = operation
        self.user = user
        self.token = token
        self.closed = False
        self.rate = RateLimit(settings.OPERATION_RATE, settings.OPERATION_BURST)
        self.client = f"{request.META.get('REMOTE_ADDR', 'unknown')} (HTTP)"
        self.limit = settings.SEND_BUFFER
        self.send_buffer = self  # Operations writes through connection.send_buffer.send
        self.ops = Operations(self)
        self.session = Session(hub, self)
        self._frames: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, frame: str) -> None:
        """Queue a frame for the response body; past ``SEND_BUFFER`` the stream is closed."""
        if self.closed:
            return
        if self._frames.qsize() >= self.limit:
            reason = f"Slow consumer: more than {self.limit} messages were waiting"
            self.ops.in_background(self.close(CloseCode.TRY_AGAIN_LATER, reason))
            return
        self._frames.put_nowait(frame)
        if frame.endswith(self.framing.end) and not self.protocol.operations:
            self._frames.put_nowait(None)  # the operation ended: so does the body

    async def send_text(self, frame: str) -> None:
        await self.send(frame)

    async def close(self, code: int, reason: str) -> None:
        """End the stream: its operation stops, and the body ends with ``reason`` as an error."""
        if self.closed:
            return
        logger.info("Closed the HTTP stream of %s with %d: %s", self.client, code, reason)
        self.ops.stop_all()
        frames = self.protocol.complete(STREAM_OPERATION, reason)
        self.closed = True
        for frame in frames:
            self._frames.put_nowait(frame)
        self._frames.put_nowait(None)

    async def body(self) -> AsyncIterator[str]:
        """The response body: the stream's frames as they come, heartbeats while none do."""
        settings = get_settings()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.session.close)
            if self.framing.start:
                yield self.framing.start
            refusal = await self.session.open(self.user, self.token)
            if refusal is not None:  # the socket's close reason, as the stream's one result
                frame = self.protocol.error(STREAM_OPERATION, [{"message": refusal.reason}])
                logger.info("Refused the HTTP stream of %s: %s", self.client, refusal.reason)
                if frame is not None:
                    yield frame
                return
            stack.push_async_callback(self.ops.close)
            self.ops.start(self.operation)
            interval = settings.KEEPALIVE_INTERVAL or None
            while True:
                try:
                    frame = await asyncio.wait_for(self._frames.get(), interval)
                except TimeoutError:
                    yield self.framing.heartbeat
                    continue
                if frame is None:
                    break
                yield frame
        self.closed = True


UNAUTHORIZED = (
    "Unauthorized: subscriptions over HTTP need a user. Send Authorization: Bearer <token>, "
    "or log in."
)


async def stream_response(
    hub: Hub, hooks: Hooks, request: HttpRequest, user: Any
) -> HttpResponseBase | None:
    """The streaming response to a request that asks for one (``Accept``): graphql-sse for any
    operation, multipart for a subscription. None: not a stream request (the view answers).

    ``user`` is the request's; the stream's is ``hooks.on_connect``'s, as a socket's."""
    framing = framing_for(request.headers.get("Accept", ""))
    if framing is None or request.method not in ("GET", "POST"):
        return None
    data = _request_data(request)
    if data is None or not isinstance(data.get("query"), str):
        return None  # Strawberry's view says what is wrong with it
    query: str = data["query"]
    name = data.get("operationName")
    document = hub.engine.prepare(query)
    if not isinstance(document, list):
        operation = get_operation_ast(document, name if isinstance(name, str) else None)
        kind = operation.operation if operation is not None else None
        if framing is MULTIPART and kind is not OperationType.SUBSCRIPTION:
            return None  # a query or mutation answered at once (or deferred) by Strawberry
        if request.method == "GET" and kind is OperationType.MUTATION:
            return None  # Strawberry refuses a mutation over GET
    token = token_from_header(request.headers.get("Authorization"))
    try:
        user = await hooks.on_connect(_scope_of(request, user), {}, token)
    except TokenRejected as rejected:
        if token is None and not user.is_authenticated:
            return JsonResponse({"errors": [{"message": UNAUTHORIZED}]}, status=401)
        message = f"Forbidden: {rejected}"
        return JsonResponse({"errors": [{"message": message}]}, status=403)
    variables, extensions = data.get("variables"), data.get("extensions")
    if not isinstance(variables, dict | None) or not isinstance(extensions, dict | None):
        message = "variables and extensions must be JSON objects."
        return JsonResponse({"errors": [{"message": message}]}, status=400)
    subscribe = OperationRequest(
        STREAM_OPERATION, query, variables, name if isinstance(name, str) else None, extensions
    )
    stream = HttpStream(hub, hooks, request, user, token, framing, subscribe)
    return StreamingHttpResponse(
        stream.body(),
        content_type=framing.content_type,
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )


def _scope_of(request: HttpRequest, user: Any) -> Scope:
    """The request's ASGI scope for ``on_connect``, with the request's user as ``"user"`` (a
    scope of its headers under WSGI)."""
    scope = getattr(request, "scope", None)
    if scope is None:
        scope = {
            "type": "http",
            "path": request.path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
            "client": (request.META.get("REMOTE_ADDR", "unknown"), 0),
        }
    return {**scope, "user": user}


def _request_data(request: HttpRequest) -> dict[str, Any] | None:
    """The GraphQL parameters of a POST's JSON body or a GET's query string."""
    if request.method == "GET":
        data: dict[str, Any] = {k: request.GET.get(k) for k in ("query", "operationName")}
        for key in ("variables", "extensions"):
            raw = request.GET.get(key)
            try:
                data[key] = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                return None
        return data
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None
