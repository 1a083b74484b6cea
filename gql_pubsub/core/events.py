"""What travels through the broker: an event, and its one wire encoding."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any, NamedTuple

import orjson


class EventKind(enum.StrEnum):
    """What happened to the published object."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    CUSTOM = "custom"


class EventDecodeError(ValueError):
    """A broker message is not a gql_pubsub event (another publisher shares the channel)."""


class Offset(NamedTuple):
    """An event's place in its channel's history: Redis stream ids ``ms-seq``, ordered."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    @classmethod
    def parse(cls, text: str | bytes) -> Offset:
        """Read ``ms-seq`` (``ValueError`` if it is not one)."""
        ms, _, seq = (text.decode() if isinstance(text, bytes) else text).partition("-")
        offset = cls(int(ms), int(seq or 0))
        if offset.ms < 0 or offset.seq < 0:
            raise ValueError(f"negative offset {text!r}")
        return offset


START = Offset(0, 0)
"""Before the first event of a channel's history."""

Epochs = dict[str, str]
"""Each channel's history epoch: it changes when the data holding the history was lost (one
Redis's for every channel; a cluster's, per hash slot)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One published change: its kind, the model (``app_label.model_name``), pk and a snapshot."""

    kind: EventKind
    model: str | None
    pk: Any
    data: dict[str, Any]
    channel: str = ""
    epoch: str = ""
    """The history this event belongs to (empty: published without one)."""
    offset: Offset = START
    """Its place in ``channel``'s history (``START``: published without one)."""

    def encode(self) -> bytes:
        """Encode the event once for the wire (the channel travels beside it, not inside)."""
        try:
            return orjson.dumps(
                {"kind": self.kind.value, "model": self.model, "pk": self.pk, "data": self.data},
                default=_json_default,
                option=orjson.OPT_NON_STR_KEYS,
            )
        except TypeError as error:  # orjson's message hides ours ("Type is not JSON serializable")
            raise TypeError(str(error.__cause__ or error)) from error

    @classmethod
    def decode(
        cls, payload: bytes | str, channel: str, epoch: str = "", offset: Offset = START
    ) -> Event:
        """Rebuild an event from its wire form, as received on ``channel`` at ``offset``."""
        try:
            raw = orjson.loads(payload)
            return cls(
                kind=EventKind(raw["kind"]),
                model=raw["model"],
                pk=raw["pk"],
                data=raw["data"],
                channel=channel,
                epoch=epoch,
                offset=offset,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise EventDecodeError(
                f"Not a gql_pubsub event on channel {channel!r}: {error}"
            ) from error


@dataclasses.dataclass(frozen=True, slots=True)
class Gap:
    """Events on ``channel`` may have been lost (Redis lost its data, or the history no longer
    reached back): who follows the channel must refetch."""

    channel: str
    reason: str


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


class EventTooLarge(ValueError):
    """An event whose encoding is larger than ``MAX_EVENT_SIZE``."""


def encode_within(event: Event, channels: list[str], limit: int) -> bytes:
    """The event's wire form; ``EventTooLarge`` past ``limit`` bytes (``MAX_EVENT_SIZE``)."""
    payload = event.encode()
    if len(payload) > limit:
        raise EventTooLarge(
            f"A {event.kind.value} event of {event.model or 'custom data'} for {channels} is "
            f"{len(payload):,} bytes, over GQL_PUBSUB['MAX_EVENT_SIZE'] "
            f"({limit:,}): publish less (an id to fetch) or raise the limit."
        )
    return payload
