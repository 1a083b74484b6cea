"""The ASGI WebSocket endpoint: graphql-transport-ws over a socket, operations on a schema."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from strawberry.types.execution import ExecutionResult, PreExecutionError

from . import protocol
from .auth import authenticate_token, token_from_connection_params
from .conf import get_settings
from .context import Context, WebSocketRequest
from .protocol import CloseCode, MessageType

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from strawberry.schema import BaseSchema

    from .types import Receive, Scope, Send

logger = logging.getLogger("gql_pubsub.websocket")


class GraphQLWebSocket:
    """ASGI app for one GraphQL WebSocket path: speaks graphql-transport-ws only."""

    def __init__(self, schema: BaseSchema) -> None:
        self.schema = schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
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
        await _Connection(self.schema, scope, receive, send).run()


class _Connection:
    """One socket: reads frames, runs operations as tasks, writes results."""

    def __init__(self, schema: BaseSchema, scope: Scope, receive: Receive, send: Send) -> None:
        self.schema = schema
        self.scope = scope
        self.receive = receive
        self._send = send
        self.protocol = protocol.ProtocolConnection()
        self.context: Context | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.closed = False

    async def run(self) -> None:
        init_timer = asyncio.create_task(self._init_timeout())
        try:
            while not self.closed:
                message = await self.receive()
                if message["type"] == "websocket.disconnect":
                    self.closed = True
                    break
                frame = message.get("text")
                if frame is None:
                    frame = message.get("bytes")
                await self._handle(self.protocol.receive(frame))
        finally:
            self.closed = True
            init_timer.cancel()
            tasks = list(self.tasks.values())
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _handle(self, action: protocol.Action) -> None:
        match action:
            case protocol.Close(code, reason):
                await self._close(code, reason)
            case protocol.Init(payload):
                user = await self._authenticate(payload)
                if user is None:
                    close = self.protocol.reject()
                    await self._close(close.code, close.reason)
                    return
                request = WebSocketRequest(
                    scope=dict(self.scope), user=user, connection_params=payload
                )
                self.context = Context(
                    request=request,  # type: ignore[arg-type]
                    response=None,  # type: ignore[arg-type]
                    user=user,
                    connection_params=payload,
                )
                self.protocol.acknowledge()
                await self._send_json({"type": MessageType.CONNECTION_ACK})
            case protocol.Ping():
                await self._send_json({"type": MessageType.PONG})
            case protocol.Pong():
                pass
            case protocol.Subscribe() as subscribe:
                task = asyncio.create_task(self._run_operation(subscribe))
                self.tasks[subscribe.id] = task
            case protocol.Complete(id=op_id):
                if op_id in self.tasks:
                    self.tasks.pop(op_id).cancel()

    async def _run_operation(self, op: protocol.Subscribe) -> None:
        try:
            stream = await self.schema.stream(
                op.query,
                variable_values=op.variables,
                context_value=self.context,
                operation_name=op.operation_name,
            )
            first = True
            async with contextlib.aclosing(stream):
                async for result in stream:
                    if first and isinstance(result, PreExecutionError):
                        errors = [error.formatted for error in result.errors or ()]
                        if self.protocol.finish(op.id):
                            await self._send_json(
                                {"id": op.id, "type": MessageType.ERROR, "payload": errors}
                            )
                        return
                    first = False
                    if not isinstance(result, ExecutionResult):
                        continue  # incremental delivery frames have no graphql-transport-ws form
                    payload: dict[str, Any] = {"data": result.data}
                    if result.errors:
                        payload["errors"] = [error.formatted for error in result.errors]
                    if op.id not in self.protocol.operations:
                        return
                    await self._send_json(
                        {"id": op.id, "type": MessageType.NEXT, "payload": payload}
                    )
            if self.protocol.finish(op.id):
                await self._send_json({"id": op.id, "type": MessageType.COMPLETE})
        except asyncio.CancelledError:
            raise
        except OSError:
            pass  # the client went away mid-send; the receive loop ends the connection
        except Exception:
            logger.exception("Operation %r failed", op.id)
            await self._close(CloseCode.INTERNAL_SERVER_ERROR, "Internal server error")
        finally:
            if self.tasks.get(op.id) is asyncio.current_task():
                del self.tasks[op.id]

    async def _authenticate(self, params: dict[str, Any]) -> AbstractBaseUser | None:
        token = token_from_connection_params(params)
        if token is not None:
            return await sync_to_async(authenticate_token)(token)
        if self._origin_allowed_for_session():
            return await sync_to_async(_session_user)(self.scope)
        return None

    def _origin_allowed_for_session(self) -> bool:
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode("latin-1")
        host = headers.get(b"host", b"").decode("latin-1")
        if not origin:
            return False
        if origin in get_settings().SESSION_AUTH_ORIGINS:
            return True
        return bool(urlsplit(origin).netloc == host)

    async def _init_timeout(self) -> None:
        await asyncio.sleep(get_settings().CONNECTION_INIT_TIMEOUT)
        close = self.protocol.init_timed_out()
        if close is not None:
            await self._close(close.code, close.reason)

    async def _send_json(self, message: dict[str, Any]) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": protocol.encode(message)})

    async def _close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": int(code), "reason": reason})
        for task in self.tasks.values():
            if task is not asyncio.current_task():
                task.cancel()


def _session_user(scope: Scope) -> AbstractBaseUser | None:
    """The user logged in through Django's session cookie on the handshake, if any."""
    from http.cookies import SimpleCookie
    from importlib import import_module
    from types import SimpleNamespace

    from django.contrib.auth import get_user

    cookie_header = dict(scope.get("headers", [])).get(b"cookie", b"").decode("latin-1")
    cookies = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except Exception:
        return None
    morsel = cookies.get(django_settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return None
    engine = import_module(django_settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(morsel.value))
    user = get_user(request)  # type: ignore[arg-type]  # get_user only reads request.session
    if not user.is_authenticated or not user.is_active:
        return None
    return user
