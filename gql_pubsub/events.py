"""What travels through the broker: an event, and its one wire encoding."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any

import orjson


class EventKind(enum.StrEnum):
    """What happened to the published object."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    CUSTOM = "custom"


class EventDecodeError(ValueError):
    """A broker message is not a gql_pubsub event (another publisher shares the channel)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One published change: its kind, the model (``app_label.model_name``), pk and a snapshot."""

    kind: EventKind
    model: str | None
    pk: Any
    data: dict[str, Any]
    channel: str = ""

    def encode(self) -> bytes:
        """Encode the event once for the wire (the channel travels beside it, not inside)."""
        return orjson.dumps(
            {"kind": self.kind.value, "model": self.model, "pk": self.pk, "data": self.data},
            default=_json_default,
            option=orjson.OPT_NON_STR_KEYS,
        )

    @classmethod
    def decode(cls, payload: bytes | str, channel: str) -> Event:
        """Rebuild an event from its wire form, as received on ``channel``."""
        try:
            raw = orjson.loads(payload)
            return cls(
                kind=EventKind(raw["kind"]),
                model=raw["model"],
                pk=raw["pk"],
                data=raw["data"],
                channel=channel,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise EventDecodeError(
                f"Not a gql_pubsub event on channel {channel!r}: {error}"
            ) from error


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(
        f"Cannot encode {type(value).__name__} in an event; "
        "make it JSON-friendly (str, int, float, list, dict) before publishing."
    )
