"""How a subscription over HTTP is framed: Apollo Client's multipart parts or graphql-sse's
events, chosen by the request's ``Accept`` header; a stream's protocol side for
:class:`~gql_pubsub.server.operations.Operations`."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

STREAM_OPERATION = "http-stream"
"""The key of a stream's one operation among its connection's (the protocols have no id on
the wire: nothing of it is sent)."""


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
        self.operations: set[str] = {STREAM_OPERATION}

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
