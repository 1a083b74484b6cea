"""The transactional outbox: a committed event always reaches Redis, even if Redis was down.

A publishable model's event (and a committed access announcement) is written to ``OutboxEvent``
in the transaction of the write, claimed by the writing process. After the commit that process
publishes it at once, and in the same atomic step (one Lua script) records the row — by a name
unique across databases and resets — in the destination's set of published rows, unless it is
there already: the fast path costs no database write after the commit, and no row is published
twice.

A relay then tidies up, in whichever process holds the destination's lease (every ASGI server
process runs one, ``run_relay``; ``manage.py gql_pubsub_relay`` runs one anywhere else): rows
recorded as published are deleted; rows that were not — Redis was unreachable, or their writer
died — are published in order, once Redis has been reachable for ``RECONNECT_GRACE`` (so that
every server's subscription connection is back first). A problem is logged once per incident.

This module is the relay and its lease; the writer's side (the row, the fast path) is in
``outbox_write``, the rows' names and claims in ``outbox_rows``, the once-per-incident health in
``outbox_health``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import close_old_connections, connections, router
from django.db.models import Q
from django.utils import timezone

from gql_pubsub.broker.backends.base import DurableBackend, durable
from gql_pubsub.broker.broker import Broker
from gql_pubsub.broker.process import get_broker
from gql_pubsub.conf import get_settings
from gql_pubsub.publishing.outbox.health import health_of
from gql_pubsub.publishing.outbox.rows import (
    PROCESS,
    backlog_key,
    destination_key,
    marks_key,
    outbox_mark,
    release,
    waiting_rows,
)
from gql_pubsub.publishing.outbox.writer import enqueue, publish_now

if TYPE_CHECKING:
    from gql_pubsub.publishing.models import OutboxEvent

logger = logging.getLogger("gql_pubsub.publishing")

SETTLE = 1.0
"""Seconds a row is left to its writer's fast path before the relay looks at it."""

BATCH = 500
"""Rows a relay handles per round trip."""

MARKS_KEPT = 86_400.0
"""Seconds a mark is kept at most; a relay deletes marked rows long before (stale ones are left
by rows deleted otherwise, e.g. a database reset)."""


def relay_once(broker: Broker | None = None) -> int:
    """Tidy the outbox if this process holds the relay lease: delete the rows already published,
    publish the others in order. Returns how many were published here.

    Safe to run in any number of processes at once: one holds the lease, the others wait.
    """
    from gql_pubsub.publishing.models import OutboxEvent

    broker = broker or get_broker()
    backend = durable(broker.backend)
    if backend is None:
        return 0
    health = health_of(broker)
    key = destination_key(broker)
    backlog = _has_backlog(key)
    if backlog:  # as soon as Redis answers: writers leave their events to the relay, in order
        with contextlib.suppress(Exception):
            backend.raise_flag_sync(backlog_key(key), get_settings().RELAY_CLAIM_TIMEOUT)
    if not health.ready(backend):
        return 0
    relayed = 0
    for alias in _outbox_databases():
        # Rows left to their writer's fast path for SETTLE; released ones are relayed at once.
        settled = OutboxEvent.objects.using(alias).filter(
            Q(created_at__lt=timezone.now() - timedelta(seconds=SETTLE)) | Q(claimed_by=""),
            destination=key,
        )
        if not settled.exists() or not _hold_lease(alias, key):
            continue  # a read only: idle relays take no write lock
        while True:
            rows = list(settled.order_by("id")[:BATCH])
            try:
                relayed += _tidy(backend, alias, key, rows)
            except Exception as error:
                health.failed(error)
                return relayed
            if len(rows) < BATCH:
                break
    if backlog:
        with contextlib.suppress(Exception):
            # Lowered only if no writer raised it after this look at the outbox (a writer
            # releases its row first, then raises the flag).
            seen = backend.flag_sync(backlog_key(key))
            if not _has_backlog(key):
                backend.lower_flag_sync(backlog_key(key), seen)
    if health.failing:
        health.recovered(relayed)
    return relayed


def _has_backlog(key: str) -> bool:
    """Whether events of the destination wait for a relay (in any outbox database)."""
    from gql_pubsub.publishing.models import OutboxEvent

    return any(
        OutboxEvent.objects.using(alias).filter(waiting_rows(), destination=key).exists()
        for alias in _outbox_databases()
    )


def _tidy(backend: DurableBackend, alias: str, key: str, rows: list[OutboxEvent]) -> int:
    """Delete the rows Redis has; publish, in order, those no live writer is publishing."""
    from gql_pubsub.publishing.models import OutboxEvent

    marks = marks_key(key)
    names = {row.pk: outbox_mark(alias, row) for row in rows}
    channels = {row.pk: row.channels for row in rows}
    marked = backend.marked_sync(marks, [(names[pk], channels[pk]) for pk in names])
    published = [pk for pk, name in names.items() if name in marked]
    stale = timezone.now() - timedelta(seconds=get_settings().RELAY_CLAIM_TIMEOUT)
    waiting = [
        row.pk
        for row in rows
        if names[row.pk] not in marked
        and (not row.claimed_by or (row.claimed_at is not None and row.claimed_at < stale))
    ]
    relayed: list[OutboxEvent] = []
    if waiting:
        token = f"{PROCESS}:relay"
        # The UPDATE checks the claim again: a row its writer still holds stays its own.
        OutboxEvent.objects.using(alias).filter(
            Q(claimed_by="") | Q(claimed_at__lt=stale), pk__in=waiting
        ).update(claimed_by=token, claimed_at=timezone.now())
        claimed = OutboxEvent.objects.using(alias).filter(pk__in=waiting, claimed_by=token)
        relayed = list(claimed.order_by("id"))
        try:
            backend.publish_many_sync(
                [(row.channels, row.payload.encode()) for row in relayed],
                mark=(marks, [names[row.pk] for row in relayed]),
            )
        except Exception:
            release(alias, [row.pk for row in relayed])
            raise
    done = [*published, *(row.pk for row in relayed)]
    OutboxEvent.objects.using(alias).filter(pk__in=done)._raw_delete(alias)  # no collector
    backend.unmark_sync(marks, [(names[pk], channels[pk]) for pk in done])
    backend.prune_marks_sync(
        marks, time.time() - MARKS_KEPT, {c for row in rows for c in row.channels}
    )
    return len(relayed)


def _hold_lease(alias: str, key: str) -> bool:
    """Take or renew the destination's relay lease (one relay at a time keeps the order)."""
    from gql_pubsub.publishing.models import OutboxRelay

    now = timezone.now()
    lease = timedelta(seconds=get_settings().RELAY_CLAIM_TIMEOUT)
    OutboxRelay.objects.using(alias).get_or_create(
        destination=key, defaults={"holder": "", "expires_at": now}
    )
    taken = (
        OutboxRelay.objects.using(alias)
        .filter(Q(holder=PROCESS) | Q(expires_at__lt=now) | Q(holder=""), destination=key)
        .update(holder=PROCESS, expires_at=now + lease)
    )
    return taken == 1


def pending(broker: Broker | None = None) -> int:
    """How many events of this broker are in the outbox (published or not yet), all databases."""
    from gql_pubsub.publishing.models import OutboxEvent

    key = destination_key(broker or get_broker())
    return sum(
        OutboxEvent.objects.using(alias).filter(destination=key).count()
        for alias in _outbox_databases()
    )


def release_lease(broker: Broker | None = None) -> None:
    """Give the relay lease up (at shutdown), so that another process takes over at once."""
    from gql_pubsub.publishing.models import OutboxRelay

    key = destination_key(broker or get_broker())
    for alias in _outbox_databases():
        OutboxRelay.objects.using(alias).filter(destination=key, holder=PROCESS).update(holder="")


def _outbox_databases() -> list[str]:
    from gql_pubsub.publishing.models import OutboxEvent

    return [
        alias
        for alias in connections
        if router.allow_migrate_model(alias, OutboxEvent)
        and connections[alias].settings_dict["ENGINE"] != "django.db.backends.dummy"
    ]


async def run_relay(stop: asyncio.Event) -> None:
    """Relay the outbox every ``RELAY_INTERVAL`` seconds until ``stop`` is set.

    The relay's database work runs in one thread of its own (one database connection).
    """
    broker = get_broker()
    if durable(broker.backend) is None:
        return
    loop = asyncio.get_running_loop()
    interval = get_settings().RELAY_INTERVAL
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gql_pubsub relay") as thread:
        try:
            while not stop.is_set():
                await loop.run_in_executor(thread, _relay_in_thread, broker)
                # While publishing fails, look for Redis's return more often.
                wait = min(interval, 0.25) if health_of(broker).failing else interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # no task per round, unlike wait_for
                        await stop.wait()
        finally:
            await loop.run_in_executor(thread, _stop_in_thread, broker)


def _relay_in_thread(broker: Broker) -> int:
    close_old_connections()
    try:
        return relay_once(broker)
    except Exception as error:  # the database is unreachable, say: try again next time
        logger.warning("The outbox relay failed (%s); retrying", error)
        return 0


def _stop_in_thread(broker: Broker) -> None:
    try:
        release_lease(broker)
    except Exception as error:
        logger.warning("Could not release the outbox relay lease (%s); it expires", error)
    finally:
        connections.close_all()


__all__ = ["enqueue", "pending", "publish_now", "relay_once", "run_relay"]
