"""The writer's side of the outbox: an event's row, written in the transaction of the write and
claimed by this process, and the fast path that publishes it right after the commit."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.db import router, transaction
from django.utils import timezone

from gql_pubsub.broker.backends.base import DEFERRED, DurableBackend, durable
from gql_pubsub.broker.broker import Broker
from gql_pubsub.broker.process import get_broker
from gql_pubsub.conf import get_settings
from gql_pubsub.core import metrics
from gql_pubsub.core.events import Event, EventKind
from gql_pubsub.publishing.outbox.fused import FusedSave, active
from gql_pubsub.publishing.outbox.health import Health, health_of
from gql_pubsub.publishing.outbox.rows import (
    PROCESS,
    backlog_key,
    destination_key,
    marks_key,
    outbox_mark,
    release,
    waiting_rows,
)
from gql_pubsub.publishing.outbox.statements import PendingRow

logger = logging.getLogger("gql_pubsub.publishing")


def enqueue(channels: list[str], event: Event, *, using: str | None) -> None:
    """Publish ``event`` once the current transaction commits, never losing it on the way."""
    broker = get_broker()
    payload = broker.encode(channels, event)  # EventTooLarge here, at the write
    backend = durable(broker.backend)
    if backend is None:  # in-process: publishing cannot fail
        transaction.on_commit(lambda: _publish(broker, channels, payload), using=using)
        return
    from gql_pubsub.publishing.models import OutboxEvent

    alias = using or router.db_for_write(OutboxEvent)
    key = destination_key(broker)
    fused = active(alias)
    if fused is not None:  # the row goes with the save's COMMIT, which gives it its pk
        _publish_after_commit(broker, alias, fused.add(key, channels, payload.decode(), PROCESS))
        return
    row = OutboxEvent.objects.using(alias).create(
        destination=key,
        channels=channels,
        payload=payload.decode(),
        claimed_by=PROCESS,
        claimed_at=timezone.now(),
    )

    mark = outbox_mark(alias, row)

    def after_commit() -> None:
        _fast_path(broker, backend, row.pk, mark, channels, payload, alias)

    transaction.on_commit(after_commit, alias)


def offer(fused: FusedSave, instance: Any, kind: EventKind) -> None:
    """Let a save's fused save write its outbox row with its INSERT or UPDATE, in one
    statement (``fused`` says how)."""
    broker = get_broker()
    if durable(broker.backend) is None:
        return
    key = destination_key(broker)

    def row_of() -> PendingRow:
        channels = instance.get_publish_channels()
        payload = broker.encode(channels, instance.publish_event(kind))
        return PendingRow(key, channels, payload.decode(), PROCESS, timezone.now())

    fused.offer(instance, row_of)


def enqueue_written(channels: list[str], event: Event | None, *, using: str) -> bool:
    """Publish after the commit the outbox row a save's statement wrote, if it wrote one: its
    channels checked against ``channels``, its payload against ``event`` unless that is None
    (the library's own event, whose pk alone differs, and only as digits)."""
    fused = active(using)
    row = fused.written if fused is not None else None
    if fused is None or row is None:
        return False
    fused.written = None
    broker = get_broker()
    payload = row.payload if event is None else broker.encode(channels, event).decode()
    if (row.channels, row.payload) != (channels, payload):
        _correct(using, row, channels, payload)
    _publish_after_commit(broker, using, row)
    return True


def _publish_after_commit(broker: Broker, alias: str, row: PendingRow) -> None:
    """Once the transaction commits (and the row has its pk), publish it by the fast path."""
    backend = durable(broker.backend)
    assert backend is not None

    def after_fused_commit() -> None:
        mark = outbox_mark(alias, row)
        payload = row.payload.encode()
        _fast_path(broker, backend, row.pk, mark, row.channels, payload, alias)

    transaction.on_commit(after_fused_commit, alias)


def _correct(alias: str, row: PendingRow, channels: list[str], payload: str) -> None:
    """The row written with the INSERT differs from the event built from the real pk: the
    model's code computed with the stand-in pk unnoticed. The row, still claimed by this
    process, is corrected before it is published."""
    from gql_pubsub.publishing.models import OutboxEvent

    logger.warning(
        "The event of a create was built from a stand-in pk its model's code computed with "
        "(channels %s, not %s); corrected before publishing. Compute nothing from the pk in "
        "get_publish_channels() or publish_event() but text.",
        row.channels,
        channels,
    )
    OutboxEvent.objects.using(alias).filter(pk=row.pk).update(channels=channels, payload=payload)
    row.channels, row.payload = channels, payload


def publish_now(channels: list[str], event: Event) -> None:
    """Publish now, outside the outbox; a failure is logged (once per incident), not raised."""
    broker = get_broker()
    _publish(broker, channels, broker.encode(channels, event))


def _publish(broker: Broker, channels: list[str], payload: bytes) -> bool:
    try:
        broker.send_sync(channels, payload)
    except Exception as error:
        health_of(broker).failed(error)
        return False
    return True


def _fast_path(
    broker: Broker,
    backend: DurableBackend,
    pk: int,
    mark: str,
    channels: list[str],
    payload: bytes,
    using: str,
) -> None:
    """Publish the committed event now; if that fails, release its row to a relay."""
    health = health_of(broker)
    key = destination_key(broker)
    if health.failing and _recovered_here(health, backend, key, pk, using):
        health.recovered(0)
    if not health.failing:  # else kept events are relayed first: leave this one to the relay
        try:
            with metrics.timed_publish():
                done = backend.publish_many_sync(
                    [(channels, payload)], mark=(marks_key(key), [mark]), backlog=backlog_key(key)
                )
            if done != [DEFERRED]:
                return
        except Exception as error:
            health.failed(error)
    try:
        release(using, [pk])
    except Exception as error:  # the database failed after its own commit: the claim expires
        logger.warning("Could not release outbox row %s (%s); a relay takes it later", pk, error)
        return
    if health.reachable_since is not None or not health.failing:
        # Redis answers: from now on every writer leaves its events to the relay, behind this
        # one, until the relay has published it (it lowers the flag when nothing waits).
        with contextlib.suppress(Exception):
            backend.raise_flag_sync(backlog_key(key), get_settings().RELAY_CLAIM_TIMEOUT)


def _recovered_here(health: Health, backend: DurableBackend, key: str, pk: int, using: str) -> bool:
    """After an incident, a writer publishes directly again once Redis is back and no older
    event of its destination still waits for the relay (so that none is overtaken)."""
    from gql_pubsub.publishing.models import OutboxEvent

    if not health.ready(backend):
        return False
    older = OutboxEvent.objects.using(using).filter(waiting_rows(), destination=key, pk__lt=pk)
    return not older.exists()
