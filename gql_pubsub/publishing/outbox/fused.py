"""A publishable model's autocommit save on PostgreSQL in one or two round trips instead of four.

The save is one transaction: BEGIN, the row's statement, its outbox row, COMMIT. Through psycopg 3's
client-side binding (Django's default), one message may hold several statements, which PostgreSQL
runs in order: the BEGIN goes with the first statement, and the outbox rows go with the COMMIT.
The same transaction, so the same guarantee (the row and its event commit together or not at
all); two waits for the database instead of four.

A create whose event only the library writes (no other ``post_save`` receiver, nothing written
before its INSERT) goes further: one statement inserts the row and, from what it returns, its
outbox row; PostgreSQL commits both or neither. The event is built before the pk exists, with a
stand-in pk that SQL replaces by the real one; should the model's code compute with that pk
rather than only write it (``pk % 10``, a comparison), the stand-in notices and the save takes
the two-trip way. Elsewhere (SQLite, psycopg 2, server-side binding, a save inside the caller's
own transaction) the save is a plain ``atomic()`` block.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Model
from django.utils import timezone

_ACTIVE: ContextVar[FusedSave | None] = ContextVar("gql_pubsub_fused_save", default=None)


@dataclass(slots=True)
class PendingRow:
    """An outbox row written with the COMMIT; ``pk`` is known once it is written."""

    destination: str
    channels: list[str]
    payload: str
    claimed_by: str
    created_at: datetime
    pk: int = 0


RowOf = Callable[[], PendingRow]
"""Builds a create's outbox row from the instance as it is now (its pk a stand-in)."""


class StandIn(int):
    """The pk of a row not yet inserted: written as its digits, noticed when computed with."""

    used = False

    def __format__(self, spec: str) -> str:
        if spec:
            self.used = True
        return int.__repr__(self)


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


class FusedSave:
    """The state of one fused save: whether it has begun, and the outbox rows it commits."""

    def __init__(self, connection: BaseDatabaseWrapper, table: type[Model]) -> None:
        self.connection = connection
        self.table = table
        self.rows: list[PendingRow] = []
        self.written: PendingRow | None = None
        """The outbox row a create wrote in its INSERT's statement, already committed."""
        self._begun = False
        self._offer: tuple[Model, RowOf] | None = None

    def offer(self, instance: Model, row_of: RowOf) -> None:
        """Let the create of ``instance``, if its INSERT comes first, write its outbox row in
        the same statement; ``row_of`` builds that row (see the module's docstring)."""
        if not self._begun:
            self._offer = (instance, row_of)

    def add(self, destination: str, channels: list[str], payload: str, by: str) -> PendingRow:
        """Keep an outbox row, claimed ``by`` a process, for the COMMIT."""
        row = PendingRow(destination, channels, payload, by, timezone.now())
        self.rows.append(row)
        return row

    def wrap(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        """Django execute wrapper: the transaction's BEGIN goes with its first statement."""
        if self._begun:
            return execute(sql, params, many, context)
        self._begun = True
        pg = self.connection.connection
        if many or not _plain_begin(pg):
            return execute(sql, params, many, context)  # psycopg sends its own BEGIN first
        offer, self._offer = self._offer, None
        if offer is not None and not self.rows:
            single = self._single(sql, params, *offer)
            if single is not None:
                return self._execute_single(execute, context, *single)
        # psycopg sends a BEGIN, and waits for it, before a statement outside a transaction when
        # autocommit is off; with it on, the BEGIN in this message starts the transaction. The
        # server's own state then tells psycopg and Django's COMMIT or ROLLBACK what to do.
        pg.autocommit = True
        result = execute("BEGIN;" + sql, params, many, context)
        cursor: CursorWrapper = context["cursor"]
        cursor.cursor.nextset()  # the statement's own result, for fetchone() and rowcount
        return result

    def _single(
        self, sql: str, params: Any, instance: Model, row_of: RowOf
    ) -> tuple[str, list[Any], PendingRow, str] | None:
        """The INSERT and its outbox row as one statement, if this is the create's INSERT and
        its event only writes the pk; else None (the save takes the two-trip way)."""
        meta = instance._meta
        quote = self.connection.ops.quote_name
        if meta.pk.get_internal_type() not in _AUTO or meta.db_returning_fields != [meta.pk]:
            return None  # a pk that is not digits, or values only the database knows
        if not sql.startswith(f"INSERT INTO {quote(meta.db_table)} ") or " RETURNING " not in sql:
            return None
        attname = meta.pk.attname
        stand_in = StandIn(10**17 + secrets.randbelow(9 * 10**17))
        setattr(instance, attname, stand_in)
        try:
            row = row_of()
        except Exception:  # the real pk may not fail: let the usual way build the event
            return None
        finally:
            setattr(instance, attname, None)
        if stand_in.used:
            return None
        text = int.__repr__(stand_in)
        params = [*params, row.destination, json.dumps(row.channels), text, row.payload, text]
        params += (row.created_at, row.claimed_by, row.created_at)
        return _single_statement(self.table, meta.pk.column, quote, sql), params, row, text

    def _execute_single(
        self,
        execute: Callable[..., Any],
        context: dict[str, Any],
        sql: str,
        params: list[Any],
        row: PendingRow,
        text: str,
    ) -> Any:
        """Run the one statement (no BEGIN: PostgreSQL commits it on its own); the row then
        has its pk, and the event the real pk. Any later statement opens a new transaction."""
        pg = self.connection.connection
        pg.autocommit = True
        try:
            result = execute(sql, params, False, context)
        finally:
            with contextlib.suppress(Exception):  # a broken connection: Django closes it
                pg.autocommit = False
        cursor = context["cursor"].cursor
        *_, pk, row.pk = cursor.fetchone()
        cursor.scroll(0, "absolute")  # Django reads the statement's row next
        real = str(pk)
        row.channels = [channel.replace(text, real) for channel in row.channels]
        row.payload = row.payload.replace(text, real)
        self.written = row
        return result

    def commit(self) -> None:
        """Write the kept outbox rows and COMMIT in one message; Django's COMMIT then has
        nothing left to do (psycopg sends none outside a transaction)."""
        connection = self.connection
        if not self.rows or connection.needs_rollback:
            return  # nothing to add, or atomic() rolls everything back
        sql = _statement(self.table, connection.ops.quote_name, len(self.rows))
        params: list[Any] = []
        for row in self.rows:
            params += (row.destination, json.dumps(row.channels), row.payload)
            params += (row.created_at, row.claimed_by, row.created_at)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for row, (pk,) in zip(self.rows, cursor.fetchall(), strict=True):
                row.pk = pk


_AUTO = frozenset({"AutoField", "BigAutoField", "SmallAutoField"})
_COLUMNS = ("destination", "channels", "payload", "created_at", "claimed_by", "claimed_at")


@functools.lru_cache(maxsize=16)
def _statement(table: type[Model], quote: Callable[[str], str], count: int) -> str:
    """INSERT of ``count`` outbox rows returning their ids, then COMMIT."""
    meta = table._meta
    columns = ", ".join(quote(_column(meta.get_field(name))) for name in _COLUMNS)
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * count)
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {values} "
        f"RETURNING {quote(_column(meta.pk))}; COMMIT"
    )


@functools.lru_cache(maxsize=64)
def _single_statement(
    outbox: type[Model], pk: str, quote: Callable[[str], str], insert: str
) -> str:
    """``insert`` (returning the new row) and the outbox row made from it, as one statement; the
    outbox row's channels and payload get the row's pk in place of the stand-in's digits."""
    meta = outbox._meta
    columns = ", ".join(quote(_column(meta.get_field(name))) for name in _COLUMNS)
    new = f"m.{quote(pk)}::text"
    outbox_pk = quote(_column(meta.pk))
    return (
        f"WITH m AS ({insert}), o AS (INSERT INTO {quote(meta.db_table)} ({columns}) "
        f"SELECT %s, CAST(replace(%s, %s, {new}) AS jsonb), replace(%s, %s, {new}), %s, %s, %s "
        f"FROM m RETURNING {outbox_pk}) SELECT m.*, m.{quote(pk)}, o.{outbox_pk} FROM m, o"
    )


def _column(field: object) -> str:
    column = getattr(field, "column", None)
    assert isinstance(column, str)
    return column


def active(using: str) -> FusedSave | None:
    """The fused save running on database ``using`` in this context, if any."""
    fused = _ACTIVE.get()
    if fused is not None and fused.connection.alias == using:
        return fused
    return None


@contextlib.contextmanager
def save_transaction(using: str, outbox: type[Model]) -> Iterator[None]:
    """The transaction of a publishable model's save: fused where it can be, else ``atomic()``;
    ``outbox`` is the outbox's model (``OutboxEvent``)."""
    connection = connections[using]
    if connection.in_atomic_block or _ACTIVE.get() is not None or not _fusable(connection):
        with transaction.atomic(using=using, savepoint=False):
            yield
        return
    fused = FusedSave(connection, outbox)
    token = _ACTIVE.set(fused)
    try:
        with transaction.atomic(using=using, savepoint=False):
            with connection.execute_wrapper(fused.wrap):
                yield
            fused.commit()
    finally:
        _ACTIVE.reset(token)


def _fusable(connection: BaseDatabaseWrapper) -> bool:
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    options = connection.settings_dict.get("OPTIONS") or {}
    if not is_psycopg3 or options.get("server_side_binding") is True:
        return False
    return connection.get_autocommit()  # with AUTOCOMMIT off, atomic() leaves the COMMIT to you


def _plain_begin(pg: Any) -> bool:
    """Whether psycopg's own BEGIN would be a bare one (no isolation level, no read only)."""
    return pg.isolation_level is None and pg.read_only is None and pg.deferrable is None
