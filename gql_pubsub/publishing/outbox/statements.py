"""The SQL of a fused save: its outbox rows' INSERT with the COMMIT, and one statement for a
save and its outbox row; and the stand-in pk a create's event is built with before its INSERT."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db.models import Model


@dataclass(slots=True)
class PendingRow:
    """An outbox row written with the COMMIT; ``pk`` is known once it is written."""

    destination: str
    channels: list[str]
    payload: str
    claimed_by: str
    created_at: datetime
    pk: int = 0


class StandIn(int):
    """The pk of a row not yet inserted: written as its digits, noticed when computed with."""

    used = False

    def __format__(self, spec: str) -> str:
        if spec:
            self.used = True
        return int.__repr__(self)


def new_stand_in() -> StandIn:
    """A new create's stand-in pk: 18 random digits."""
    return StandIn(10**17 + secrets.randbelow(9 * 10**17))


def channels_text(channels: list[str]) -> str:
    """An outbox row's channels as stored: JSON text."""
    return orjson.dumps(channels).decode()


_OPERATORS = "add sub mul truediv floordiv mod divmod pow lshift rshift and or xor"
_UNARY = "neg pos abs invert eq ne lt le gt ge hash bool int index float round trunc floor ceil"
_COMPUTED = (
    *(f"__{side}{name}__" for name in _OPERATORS.split(" ") for side in ("", "r")),
    *(f"__{name}__" for name in _UNARY.split(" ")),
    *("bit_length", "bit_count", "to_bytes", "as_integer_ratio", "conjugate"),
)
"""What a stand-in notices: computing with it, as opposed to writing its digits."""


def _noticing(name: str) -> Callable[..., Any]:
    def noticed(self: StandIn, *args: Any, **kwargs: Any) -> Any:
        self.used = True
        return getattr(int, name)(self, *args, **kwargs)

    return noticed


for _name in _COMPUTED:
    setattr(StandIn, _name, _noticing(_name))


AUTO = frozenset({"AutoField", "BigAutoField", "SmallAutoField"})
"""The pk fields whose values are digits the database gives."""
_COLUMNS = ("destination", "channels", "payload", "created_at", "claimed_by", "claimed_at")


@functools.lru_cache(maxsize=16)
def commit_statement(table: type[Model], quote: Callable[[str], str], count: int) -> str:
    """INSERT of ``count`` outbox rows returning their ids, then COMMIT."""
    meta = table._meta
    columns = ", ".join(quote(_column(meta.get_field(name))) for name in _COLUMNS)
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * count)
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {values} "
        f"RETURNING {quote(_column(meta.pk))}; COMMIT"
    )


def row_params(row: PendingRow, text: str) -> list[Any]:
    """The outbox row's values for ``single_insert`` (``text``: the stand-in's digits, which
    follow the channels and the payload) or, ``text`` empty, ``single_update``."""
    stand_in = [text] if text else []
    return [
        row.destination,
        channels_text(row.channels),
        *stand_in,
        row.payload,
        *stand_in,
        row.created_at,
        row.claimed_by,
        row.created_at,
    ]


@functools.lru_cache(maxsize=64)
def single_insert(outbox: type[Model], pk: str, quote: Callable[[str], str], insert: str) -> str:
    """``insert`` (returning the new row) and the outbox row made from it, as one statement; the
    outbox row's channels and payload get the row's pk in place of the stand-in's digits."""
    new = f"m.{quote(pk)}::text"
    values = f"%s, replace(%s, %s, {new}), replace(%s, %s, {new}), %s, %s, %s"
    return _with_outbox_row(outbox, quote, insert, values, f"m.*, m.{quote(pk)}")


@functools.lru_cache(maxsize=64)
def single_update(outbox: type[Model], pk: str, quote: Callable[[str], str], update: str) -> str:
    """``update`` and, if it found its row, the outbox row, as one statement: one row (the pk
    and the outbox row's) if it did, none if not, for Django's count of updated rows."""
    values = "%s, %s, %s, %s, %s, %s"
    return _with_outbox_row(
        outbox, quote, f"{update} RETURNING {quote(pk)}", values, f"m.{quote(pk)}"
    )


def _with_outbox_row(
    outbox: type[Model], quote: Callable[[str], str], write: str, values: str, selected: str
) -> str:
    meta = outbox._meta
    columns = ", ".join(quote(_column(meta.get_field(name))) for name in _COLUMNS)
    outbox_pk = quote(_column(meta.pk))
    return (
        f"WITH m AS ({write}), o AS (INSERT INTO {quote(meta.db_table)} ({columns}) "
        f"SELECT {values} FROM m RETURNING {outbox_pk}) SELECT {selected}, o.{outbox_pk} FROM m, o"
    )


def _column(field: object) -> str:
    column = getattr(field, "column", None)
    assert isinstance(column, str)
    return column
