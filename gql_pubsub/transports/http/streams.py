"""Subscriptions over HTTP: one operation per request, streamed as Apollo Client's multipart
subscriptions or as graphql-sse's event stream, on the same engine, fan-out, access checks and
limits as the WebSocket.

An :class:`HttpStream` is what :class:`~gql_pubsub.operations.Operations` needs of a
connection: a context, a protocol that frames results, an send_buffer (a bounded queue the response
body drains), and ``close``. The user is the request's (session, or the bearer token of the
``Authorization`` header); a token's expiry ends the stream, and so do a revocation and a
deactivation, announced on the user's control channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from graphql import OperationType, get_operation_ast

from gql_pubsub.auth.tokens import token_expiry, token_from_header
from gql_pubsub.broker.process import get_broker
from gql_pubsub.conf import get_settings
from gql_pubsub.core.control import control_channel
from gql_pubsub.execution.context import Context
from gql_pubsub.execution.engine import Engine, engine_for
from gql_pubsub.execution.fanout import FanOut, fanout_for
from gql_pubsub.execution.limits import RateLimit
from gql_pubsub.execution.request import OperationRequest
from gql_pubsub.server.close_codes import CloseCode
from gql_pubsub.server.hooks import Hooks
from gql_pubsub.server.operations import Operations

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase
    from strawberry.schema import BaseSchema

logger = logging.getLogger("gql_pubsub.http")

OP_ID = "1"
"""The id of a stream's one operation (the protocols have none on the wire)."""


@dataclasses.dataclass(frozen=True)
class Framing:
    """How a protocol frames a stream: its start, each result, a heartbeat and its end."""

    name: str
    content_type: str
    start: str
    prefix: str
    """Before a result's payload (a JSON object)."""
    suffix: str
    """After it."""
    heartbeat: str
    end: str


MULTIPART = Framing(
    name="multipart subscription",
    content_type='multipart/mixed;boundary="graphql";subscriptionSpec="1.0"',
    start="--graphql",
    prefix='\r\nContent-Type: application/json; charset=utf-8\r\n\r\n{"payload":',
    suffix="}\r\n--graphql",
    heartbeat="\r\nContent-Type: application/json; charset=utf-8\r\n\r\n{}\r\n--graphql",
    end="--\r\n",
)
"""Apollo Client's multipart subscriptions (HttpLink): each result a part ``{"payload": …}``,
a heartbeat part ``{}``."""

SSE = Framing(
    name="graphql-sse",
    content_type="text/event-stream",
    start="",
    prefix="event: next\r\ndata: ",
    suffix="\r\n\r\n",
    heartbeat=":\r\n\r\n",
    end="event: complete\r\ndata: \r\n\r\n",
)
"""graphql-sse's distinct-connections mode: ``next`` events, then ``complete``."""


def framing_for(accept: str) -> Framing | None:
    """The streaming protocol an ``Accept`` header asks for, if any."""
    for part in accept.lower().split(","):
        media, _, params = part.strip().partition(";")
        if media.strip() == "text/event-stream":
            return SSE
        if media.strip() == "multipart/mixed" and "subscriptionspec" in params.replace(" ", ""):
            return MULTIPART
    return None


class StreamProtocol:
    """The protocol side of one HTTP stream (for ``Operations``): frames, and its operation."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.operations: set[str] = {OP_ID}

    def next_prefix(self, op_id: str) -> str:
        return self.framing.prefix

    @property
    def next_suffix(self) -> str:
        return self.framing.suffix

    def complete(self, op_id: str, error: str | None) -> list[str]:
        """The stream's last frames: its error's result, if any, then its end."""
        if op_id not in self.operations:
            return []
        self.operations.discard(op_id)
        frames = []
        if error is not None:
            payload = orjson.dumps({"errors": [{"message": error}]}).decode()
            frames.append(self.framing.prefix + payload + self.framing.suffix)
        return [*frames, self.framing.end]

    def error(self, op_id: str, errors: list[Any]) -> str | None:
        """The operation was refused: its errors as its one result, and the end."""
        if op_id not in self.operations:
            return None
        self.operations.discard(op_id)
        payload = orjson.dumps({"errors": errors}).decode()
        return self.framing.prefix + payload + self.framing.suffix + self.framing.end


class _Server:
    """What ``Operations`` reaches through ``connection.server``."""

    def __init__(self, engine: Engine, fanout: FanOut, hooks: Hooks) -> None:
        self.engine = engine
        self.fanout = fanout
        self.hooks = hooks


class HttpStream:
    """One subscription over HTTP, from its request to the end of its response body."""

    def __init__(
        self,
        engine: Engine,
        request: HttpRequest,
        response: HttpResponse,
        user: Any,
        framing: Framing,
        operation: OperationRequest,
        hooks: Hooks | None = None,
    ) -> None:
        settings = get_settings()
        self.server = _Server(engine, fanout_for(engine), hooks or Hooks())
        self.context: Context | None = Context(request=request, response=response, user=user)
        self.protocol = StreamProtocol(framing)
        self.framing = framing
        self.operation = operation
        self.user = user
        self.token = token_from_header(request.headers.get("Authorization"))
        self.closed = False
        self.rate = RateLimit(settings.OPERATION_RATE, settings.OPERATION_BURST)
        self.client = f"{request.META.get('REMOTE_ADDR', 'unknown')} (HTTP)"
        self.limit = settings.SEND_BUFFER
        self.send_buffer = self  # Operations writes through connection.send_buffer.send
        self.ops = Operations(self)
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
        frames = self.protocol.complete(OP_ID, reason)
        self.closed = True
        for frame in frames:
            self._frames.put_nowait(frame)
        self._frames.put_nowait(None)

    async def body(self) -> AsyncIterator[str]:
        """The response body: the stream's frames as they come, heartbeats while none do."""
        settings = get_settings()
        loop = asyncio.get_running_loop()
        timers: list[asyncio.TimerHandle] = []
        async with contextlib.AsyncExitStack() as stack:
            if self.user.is_authenticated and getattr(self.user, "pk", None) is not None:
                watch = get_broker().watch(self.ops.on_access_change, control_channel(self.user.pk))
                await stack.enter_async_context(watch)
            expires = token_expiry(self.token) if self.token else None
            if expires is not None:
                reason = "Token expired: reconnect with a fresh token"
                timers.append(
                    loop.call_later(
                        max(0.0, expires - time.time()),
                        lambda: self.ops.in_background(self.close(CloseCode.FORBIDDEN, reason)),
                    )
                )
            for timer in timers:
                stack.callback(timer.cancel)
            stack.push_async_callback(self.ops.close)
            self.ops.start(self.operation)
            if self.framing.start:
                yield self.framing.start
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
    schema: BaseSchema, request: HttpRequest, user: Any, hooks: Hooks | None = None
) -> HttpResponseBase | None:
    """The streaming response to a request that asks for one (``Accept``): graphql-sse for any
    operation, multipart for a subscription. None: not a stream request (the view answers)."""
    framing = framing_for(request.headers.get("Accept", ""))
    if framing is None or request.method not in ("GET", "POST"):
        return None
    data = _request_data(request)
    if data is None or not isinstance(data.get("query"), str):
        return None  # Strawberry's view says what is wrong with it
    query: str = data["query"]
    name = data.get("operationName")
    engine = engine_for(schema)
    document = engine.prepare(query)
    if not isinstance(document, list):
        operation = get_operation_ast(document, name if isinstance(name, str) else None)
        kind = operation.operation if operation is not None else None
        if framing is MULTIPART and kind is not OperationType.SUBSCRIPTION:
            return None  # a query or mutation answered at once (or deferred) by Strawberry
        if request.method == "GET" and kind is OperationType.MUTATION:
            return None  # Strawberry refuses a mutation over GET
    if not user.is_authenticated:
        return JsonResponse({"errors": [{"message": UNAUTHORIZED}]}, status=401)
    variables, extensions = data.get("variables"), data.get("extensions")
    if not isinstance(variables, dict | None) or not isinstance(extensions, dict | None):
        message = "variables and extensions must be JSON objects."
        return JsonResponse({"errors": [{"message": message}]}, status=400)
    subscribe = OperationRequest(
        OP_ID, query, variables, name if isinstance(name, str) else None, extensions
    )
    stream = HttpStream(engine, request, HttpResponse(), user, framing, subscribe, hooks)
    return StreamingHttpResponse(
        stream.body(),
        content_type=framing.content_type,
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )


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
