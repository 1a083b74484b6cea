"""Cursors: where a subscription is in its channels' histories, handed to clients to resume.

A client that asks for them (``"extensions": {"after": null}`` in its ``subscribe``) finds one
in every ``next`` (``payload.extensions.cursor``) and sends the latest back as ``after`` when it
subscribes again: it then receives every event it missed, once, in order per channel — or the
``REFETCH`` signal when the history no longer holds them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from typing import Any

import orjson

from gql_pubsub.core.events import Epochs, Offset

REFETCH = "REFETCH"
"""``errors[].extensions.code`` of the signal that events were lost: refetch, then go on."""

_VERSION = 1
"""A cursor whose channels share one epoch (one Redis): ``[1, epoch, issued, positions]``."""

_VERSION_EPOCHS = 2
"""A cursor whose channels' epochs differ (a cluster): ``[2, epochs, issued, positions]``."""


class InvalidCursor(ValueError):
    """An ``after`` value that is not a cursor from this server."""


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """A subscription's place: each channel's history epoch and offset."""

    epochs: Epochs
    positions: dict[str, Offset]
    issued: float = dataclasses.field(default_factory=time.time)
    """When (Unix time) the positions were current: dates positions taken on empty channels."""

    def encode(self) -> str:
        """The opaque text sent to the client."""
        offsets = {channel: str(offset) for channel, offset in self.positions.items()}
        epochs = {self.epochs.get(channel, "") for channel in self.positions}
        if len(epochs) <= 1:
            raw = [_VERSION, epochs.pop() if epochs else "", int(self.issued), offsets]
        else:
            named = {c: self.epochs.get(c, "") for c in self.positions}
            raw = [_VERSION_EPOCHS, named, int(self.issued), offsets]
        return base64.urlsafe_b64encode(orjson.dumps(raw)).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: Any) -> Cursor:
        """Read a cursor sent back by a client; ``InvalidCursor`` says what is wrong."""
        if not isinstance(text, str):
            raise InvalidCursor(
                f"extensions.after must be a cursor string or null, not {type(text).__name__}"
            )
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            version, epoch, issued, positions = raw
            if not isinstance(positions, dict):
                raise ValueError("unknown layout")
            if version == _VERSION and isinstance(epoch, str):
                epochs = dict.fromkeys((str(c) for c in positions), epoch)
            elif version == _VERSION_EPOCHS and isinstance(epoch, dict):
                epochs = {str(c): str(e) for c, e in epoch.items()}
            else:
                raise ValueError("unknown layout")
            return cls(
                epochs=epochs,
                positions={str(c): Offset.parse(o) for c, o in positions.items()},
                issued=float(issued),
            )
        except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError) as error:
            raise InvalidCursor(
                "extensions.after is not a cursor from this server: send back the "
                f"extensions.cursor of the last `next` message you received, or null ({error})"
            ) from None


def with_cursor(body: str, cursor: str) -> str:
    """A ``next`` payload's text (``body``: its encoding without the closing brace) with the
    cursor in its extensions."""
    return body + ',"extensions":{"cursor":"' + cursor + '"}}'


def live_payload(cursor: str) -> str:
    """The payload that tells a resuming client its subscription is live from ``cursor``."""
    return '{"extensions":{"cursor":"' + cursor + '"}}'


def start_payload(cursor: str, lost: list[str]) -> str:
    """The first ``next`` of a resumable subscription: live from ``cursor``, or ``REFETCH``
    naming the channels whose events since the client's cursor are no longer held."""
    if lost:
        return refetch_payload(
            f"The history no longer holds every event since your cursor on {lost}: "
            "refetch, then go on.",
            cursor,
        )
    return live_payload(cursor)


def refetch_payload(message: str, cursor: str | None) -> str:
    """The ``REFETCH`` signal: a ``next`` payload with one error (and where to go on from)."""
    payload: dict[str, Any] = {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": REFETCH}}],
    }
    if cursor is not None:
        payload["extensions"] = {"cursor": cursor}
    return orjson.dumps(payload).decode()
