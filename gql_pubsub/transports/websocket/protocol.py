"""The graphql-transport-ws protocol as a state machine, both ways and with no I/O: client
frames in, actions out (``receive``); what the server says, out as text frames (``ack``,
``pong``, ``ping``, ``next_prefix``, ``complete``, ``error``), each operation ended once."""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any

import orjson

from gql_pubsub.execution.request import OperationRequest
from gql_pubsub.server.close_codes import CloseCode

SUBPROTOCOL = "graphql-transport-ws"
"""The only WebSocket subprotocol spoken (the legacy ``graphql-ws`` one is refused)."""


class MessageType(enum.StrEnum):
    """Every message type of graphql-transport-ws."""

    CONNECTION_INIT = "connection_init"
    CONNECTION_ACK = "connection_ack"
    PING = "ping"
    PONG = "pong"
    SUBSCRIBE = "subscribe"
    NEXT = "next"
    ERROR = "error"
    COMPLETE = "complete"


class ConnectionState(enum.Enum):
    """Where a connection is in the protocol."""

    AWAITING_INIT = "awaiting_init"
    INITIALISING = "initialising"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with this code and reason."""

    code: CloseCode
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Init:
    """The client asked to connect; authenticate ``payload``, then call ``acknowledge``."""

    payload: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """Answer with a pong."""

    payload: dict[str, Any] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Pong:
    """The client answered a ping."""

    payload: dict[str, Any] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Complete:
    """The client stopped operation ``id``."""

    id: str


Subscribe = OperationRequest
"""A ``subscribe`` message: start the operation it requests."""

Action = Close | Init | Ping | Pong | Subscribe | Complete


class ProtocolConnection:
    """One connection's protocol state: validates client messages and enforces transitions."""

    __slots__ = ("operations", "state")  # one per socket: no __dict__ each

    next_suffix = "}"
    """After a ``next`` frame's payload: the frame's closing brace."""

    def __init__(self) -> None:
        self.state = ConnectionState.AWAITING_INIT
        self.operations: list[str] = []
        """The ids in use (a list: most sockets have one or two, and a set of one is 216 bytes;
        at most ``MAX_OPERATIONS_PER_CONNECTION`` long)."""

    def next_prefix(self, op_id: str) -> str:
        """Before a ``next`` frame's payload (see :func:`next_prefix`)."""
        return next_prefix(op_id)

    def receive(self, text: str | bytes | None) -> Action:
        """Turn one client frame into the action the server must take."""
        if self.state is ConnectionState.CLOSED:
            return Close(CloseCode.BAD_REQUEST, "Connection is closed")
        if not isinstance(text, str):
            return self._close(CloseCode.BAD_REQUEST, "Binary messages are not supported")
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._close(CloseCode.BAD_REQUEST, "Message is not valid JSON")
        if not isinstance(message, dict):
            return self._close(CloseCode.BAD_REQUEST, "Message must be a JSON object")
        try:
            return self._dispatch(message)
        except _Invalid as invalid:
            return self._close(CloseCode.BAD_REQUEST, str(invalid))

    def _dispatch(self, message: dict[str, Any]) -> Action:
        kind = message.get("type")
        if kind == MessageType.CONNECTION_INIT:
            payload = _optional_object(message, "payload")
            if self.state is not ConnectionState.AWAITING_INIT:
                return self._close(
                    CloseCode.TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests"
                )
            self.state = ConnectionState.INITIALISING
            return Init(payload or {})
        if kind == MessageType.PING:
            return Ping(_optional_object(message, "payload"))
        if kind == MessageType.PONG:
            return Pong(_optional_object(message, "payload"))
        if kind == MessageType.SUBSCRIBE:
            op_id = _id(message)
            payload = message.get("payload")
            if not isinstance(payload, dict):
                raise _Invalid("Subscribe payload must be an object")
            query = payload.get("query")
            if not isinstance(query, str):
                raise _Invalid("Subscribe payload 'query' must be a string")
            variables = _optional_object(payload, "variables")
            operation_name = payload.get("operationName")
            if operation_name is not None and not isinstance(operation_name, str):
                raise _Invalid("Subscribe payload 'operationName' must be a string or null")
            extensions = _optional_object(payload, "extensions")
            if self.state is not ConnectionState.ACKNOWLEDGED:
                return self._close(CloseCode.UNAUTHORIZED, "Unauthorized")
            if op_id in self.operations:
                return self._close(
                    CloseCode.SUBSCRIBER_ALREADY_EXISTS, f"Subscriber for {op_id} already exists"
                )
            self.operations.append(op_id)
            return Subscribe(op_id, query, variables, operation_name, extensions)
        if kind == MessageType.COMPLETE:
            op_id = _id(message)
            if op_id in self.operations:
                self.operations.remove(op_id)
            return Complete(op_id)
        if isinstance(kind, str):
            raise _Invalid(f"Unexpected message type {kind[:64]!r}")
        raise _Invalid("Message has no valid 'type'")

    def acknowledge(self) -> None:
        """The server accepted ``connection_init``; the client may now subscribe."""
        self._expect(ConnectionState.INITIALISING)
        self.state = ConnectionState.ACKNOWLEDGED

    def reject(self, why: str) -> Close:
        """The server refused ``connection_init``, for the reason ``why``."""
        return self._close(CloseCode.FORBIDDEN, _close_reason(f"Forbidden: {why}"))

    def init_timed_out(self) -> Close | None:
        """The init wait ran out: a Close if the client never sent ``connection_init``."""
        if self.state is ConnectionState.AWAITING_INIT:
            return self._close(
                CloseCode.CONNECTION_INITIALISATION_TIMEOUT, "Connection initialisation timeout"
            )
        return None

    def finish(self, op_id: str) -> bool:
        """Operation ``id`` ended on the server; True if the client must be told so."""
        if op_id in self.operations:
            self.operations.remove(op_id)
            return self.state is not ConnectionState.CLOSED
        return False

    # -- what the server sends ---------------------------------------------------------------

    def ack(self) -> str:
        """Accept ``connection_init``: the ``connection_ack`` frame (the client may subscribe)."""
        self.acknowledge()
        return ACK

    def complete(self, op_id: str, error: str | None = None) -> list[str]:
        """End operation ``op_id`` from the server's side: ``complete`` (after a ``next`` that
        carries ``error``, if given); nothing if it ended already or the client completed it."""
        if not self.finish(op_id):
            return []
        frames = [f'{{"id":{_json(op_id)},"type":"complete"}}']
        if error is not None:
            payload = {"data": None, "errors": [{"message": error}]}
            frames.insert(0, next_prefix(op_id) + _json(payload) + "}")
        return frames

    def error(self, op_id: str, errors: list[dict[str, Any]]) -> str | None:
        """Refuse operation ``op_id`` with GraphQL ``errors`` (the ``error`` frame, which ends
        it); None if it ended already or the client completed it."""
        if not self.finish(op_id):
            return None
        return f'{{"id":{_json(op_id)},"type":"error","payload":{_json(errors)}}}'

    def _close(self, code: CloseCode, reason: str) -> Close:
        self.state = ConnectionState.CLOSED
        self.operations.clear()
        return Close(code, reason)

    def _expect(self, state: ConnectionState) -> None:
        if self.state is not state:
            raise RuntimeError(f"Expected state {state.name}, but got {self.state.name}")


class _Invalid(ValueError):
    pass


def _id(message: dict[str, Any]) -> str:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not op_id:
        raise _Invalid("Message 'id' must be a non-empty string")
    return op_id


def _optional_object(message: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = message.get(key)
    if value is not None and not isinstance(value, dict):
        raise _Invalid(f"'{key}' must be an object or null")
    return value


ACK = '{"type":"connection_ack"}'
PING = '{"type":"ping"}'
PONG = '{"type":"pong"}'


@functools.lru_cache(maxsize=1024)
def next_prefix(op_id: str) -> str:
    """The start of operation ``op_id``'s ``next`` frames: the encoded payload and "}" follow
    (a result encoded once is sent to many operations this way). Clients mostly number their
    operations alike ("1", "2"…): the sockets of a process share these strings."""
    return '{"id":' + _json(op_id) + ',"type":"next","payload":'


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


MAX_CLOSE_REASON = 123
"""Bytes a WebSocket close reason may have (RFC 6455: 125 bytes of payload, less the code)."""


def _close_reason(text: str) -> str:
    """``text`` cut to fit a close frame, on a character boundary."""
    return text.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
