"""A publishable model's autocommit save on PostgreSQL in two round trips instead of four.

The save is one transaction: BEGIN, the row's statement, its outbox row, COMMIT. Through psycopg 3's
client-side binding (Django's default), one message may hold several statements, which PostgreSQL
runs in order: the BEGIN goes with the first statement, and the outbox rows go with the COMMIT.
The same transaction, so the same guarantee (the row and its event commit together or not at
all); two waits for the database instead of four. Elsewhere (SQLite, psycopg 2, server-side
binding, a save inside the caller's own transaction) the save is a plain ``atomic()`` block.
"""

from __future__ import annotations

import contextlib
import functools
import json
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


class FusedSave:
    """The state of one fused save: whether it has begun, and the outbox rows it commits."""

    def __init__(self, connection: BaseDatabaseWrapper, table: type[Model]) -> None:
        self.connection = connection
        self.table = table
        self.rows: list[PendingRow] = []
        self._begun = False

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
        # psycopg sends a BEGIN, and waits for it, before a statement outside a transaction when
        # autocommit is off; with it on, the BEGIN in this message starts the transaction. The
        # server's own state then tells psycopg and Django's COMMIT or ROLLBACK what to do.
        pg.autocommit = True
        result = execute("BEGIN;" + sql, params, many, context)
        cursor: CursorWrapper = context["cursor"]
        cursor.cursor.nextset()  # the statement's own result, for fetchone() and rowcount
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
