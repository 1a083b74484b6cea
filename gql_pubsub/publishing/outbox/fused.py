"""A publishable model's autocommit save on PostgreSQL in one or two round trips instead of four.

The save is one transaction: BEGIN, the row's statement, its outbox row, COMMIT. Through psycopg 3's
client-side binding (Django's default), one message may hold several statements, which PostgreSQL
runs in order: the BEGIN goes with the first statement, and the outbox rows go with the COMMIT.
The same transaction, so the same guarantee (the row and its event commit together or not at
all); two waits for the database instead of four.

A save whose event only the library writes (no other ``post_save`` receiver, nothing written
before its INSERT or UPDATE) goes further: one statement writes the row and, from what it
returns, its outbox row; PostgreSQL commits both or neither. A create's event is built before
the pk exists, with a stand-in pk that SQL replaces by the real one; should the model's code
compute with that pk rather than only write it (``pk % 10``, a comparison), the stand-in notices
and the save takes the two-trip way. Elsewhere (SQLite, psycopg 2, server-side binding, a save
inside the caller's own transaction) the save is a plain ``atomic()`` block.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Model
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from gql_pubsub.publishing.outbox.listeners import library_alone
from gql_pubsub.publishing.outbox.statements import (
    AUTO,
    PendingRow,
    channels_text,
    commit_statement,
    new_stand_in,
    row_params,
    single_insert,
    single_update,
)

_ACTIVE: ContextVar[FusedSave | None] = ContextVar("gql_pubsub_fused_save", default=None)


RowOf = Callable[[], PendingRow]
"""Builds a create's outbox row from the instance as it is now (its pk a stand-in)."""


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
        self.post_save_alone = False
        """Whether only the library hears the saved model's ``post_save`` (see ``offer``)."""
        self.opening: Callable[[], object] | None = None
        """Enters the save's ``atomic()`` block, when it is left until a statement needs it."""

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
            self._open()
            return execute(sql, params, many, context)
        self._begun = True
        pg = self.connection.connection
        offer, self._offer = self._offer, None
        if offer is not None and not self.rows and not many and _plain_begin(pg):
            single = self._single(sql, params, *offer)
            if single is not None:
                return self._execute_single(execute, context, *single)
        self._open()
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

    def _open(self) -> None:
        """Enter the save's ``atomic()`` block now, if it was left for its first statement that
        is not the one statement (``save_transaction``)."""
        if self.opening is not None:
            opening, self.opening = self.opening, None
            opening()

    def _single(
        self, sql: str, params: Any, instance: Model, row_of: RowOf
    ) -> tuple[str, list[Any], PendingRow, str] | None:
        """The save's statement and its outbox row as one statement, if this is its INSERT (or
        UPDATE) and its event can be built now; else None (the save takes the two-trip way)."""
        meta = instance._meta
        quote = self.connection.ops.quote_name
        if meta.pk.get_internal_type() not in AUTO or meta.db_returning_fields != [meta.pk]:
            return None  # a pk that is not digits, or values only the database knows
        table = quote(meta.db_table)
        if sql.startswith(f"UPDATE {table} SET ") and " RETURNING " not in sql:
            try:
                row = row_of()  # the pk is known: the event is exact
            except Exception:  # let the usual way raise it
                return None
            statement = single_update(self.table, meta.pk.column, quote, sql)
            return statement, [*params, *row_params(row, "")], row, ""
        if not sql.startswith(f"INSERT INTO {table} ") or " RETURNING " not in sql:
            return None
        attname = meta.pk.attname
        stand_in = new_stand_in()
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
        statement = single_insert(self.table, meta.pk.column, quote, sql)
        return statement, [*params, *row_params(row, text)], row, text

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
        in_atomic = not pg.autocommit
        if in_atomic:
            pg.autocommit = True
        try:
            result = execute(sql, params, False, context)
        finally:
            if in_atomic:
                with contextlib.suppress(Exception):  # a broken connection: Django closes it
                    pg.autocommit = False
        cursor = context["cursor"].cursor
        returned = cursor.fetchone()
        if returned is None:  # an UPDATE that found no row: no outbox row either
            return result
        cursor.scroll(0, "absolute")  # Django reads the statement's row next
        *_, pk, row.pk = returned
        if text:
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
        sql = commit_statement(self.table, connection.ops.quote_name, len(self.rows))
        params: list[Any] = []
        for row in self.rows:
            params += (row.destination, channels_text(row.channels), row.payload)
            params += (row.created_at, row.claimed_by, row.created_at)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for row, (pk,) in zip(self.rows, cursor.fetchall(), strict=True):
                row.pk = pk


def active(using: str) -> FusedSave | None:
    """The fused save running on database ``using`` in this context, if any."""
    fused = _ACTIVE.get()
    if fused is not None and fused.connection.alias == using:
        return fused
    return None


def save_transaction(
    using: str, outbox: type[Model], sender: type[Model]
) -> contextlib.AbstractContextManager[object]:
    """The transaction of a publishable model's save: fused where it can be, else ``atomic()``;
    ``outbox`` is the outbox's model (``OutboxEvent``), ``sender`` the saved one.

    When no code but the library's hears the save's signals, nothing but Django runs before its
    first statement: the ``atomic()`` block is only entered there if that statement is not the
    one statement (which needs none, and is the whole save)."""
    connection = connections[using]
    if connection.in_atomic_block or _ACTIVE.get() is not None or not _fusable(connection):
        return transaction.atomic(using=using, savepoint=False)
    return _FusedTransaction(FusedSave(connection, outbox), sender)


class _FusedTransaction:
    """``save_transaction``'s fused way, as a plain context manager: it runs on every save."""

    __slots__ = ("block", "entered", "fused", "sender", "token")

    def __init__(self, fused: FusedSave, sender: type[Model]) -> None:
        self.fused = fused
        self.sender = sender
        self.block = transaction.atomic(using=fused.connection.alias, savepoint=False)
        self.entered = False

    def __enter__(self) -> FusedSave:
        fused = self.fused
        self.token = _ACTIVE.set(fused)
        fused.post_save_alone = library_alone(self.sender, (post_save,))
        if fused.post_save_alone and library_alone(self.sender, (pre_save,)):
            fused.opening = self._enter_block
        else:
            try:
                self._enter_block()
            except BaseException:
                _ACTIVE.reset(self.token)
                raise
        fused.connection.execute_wrappers.append(fused.wrap)
        return fused

    def _enter_block(self) -> None:
        self.block.__enter__()
        self.entered = True

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        fused = self.fused
        try:
            fused.connection.execute_wrappers.pop()
            if kind is None:
                try:
                    fused.commit()
                except BaseException as failure:
                    if self.entered:  # atomic() rolls back, then the failure is raised
                        self.block.__exit__(type(failure), failure, failure.__traceback__)
                    raise
            if self.entered:
                self.block.__exit__(kind, error, traceback)
        finally:
            _ACTIVE.reset(self.token)


def _fusable(connection: BaseDatabaseWrapper) -> bool:
    if connection.vendor != "postgresql" or not _psycopg3():
        return False
    options = connection.settings_dict.get("OPTIONS") or {}
    if options.get("server_side_binding") is True:
        return False
    return connection.get_autocommit()  # with AUTOCOMMIT off, atomic() leaves the COMMIT to you


@functools.cache
def _psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


def _plain_begin(pg: Any) -> bool:
    """Whether psycopg's own BEGIN would be a bare one (no isolation level, no read only)."""
    return pg.isolation_level is None and pg.read_only is None and pg.deferrable is None
