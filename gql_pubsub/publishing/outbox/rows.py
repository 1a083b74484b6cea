"""The outbox's rows and their names: which destination a row is for, its name in Redis's set of
published rows, the destination's backlog flag, and who holds a row (a writer or a relay)."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from django.db.models import Q

if TYPE_CHECKING:
    from gql_pubsub.broker.broker import Broker

PROCESS = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
"""This process's name in the outbox's claims and the relay lease."""


def destination_key(broker: Broker) -> str:
    """The outbox's name for a broker: its URL (without password) and prefix, hashed."""
    return _hashed(broker.destination)


@functools.cache
def _hashed(destination: str) -> str:
    return hashlib.sha256(destination.encode()).hexdigest()[:32]


def marks_key(key: str) -> str:
    """The sorted set of a destination's published outbox rows (a hash tag keeps it one slot)."""
    return f"outbox:{{{key}}}:published"


def backlog_key(key: str) -> str:
    """Set while the relay has older events of the destination to publish: writers wait."""
    return f"outbox:{{{key}}}:backlog"


class _Row(Protocol):
    pk: Any
    created_at: datetime


def outbox_mark(alias: str, row: _Row) -> str:
    """A row's name in the set of published rows: unique across databases and their resets
    (ids alone repeat: a reset database, or two databases, would have a row taken for another)."""
    return f"{alias}:{row.pk}:{int(row.created_at.timestamp() * 1_000_000)}"


def waiting_rows() -> Q:
    """Rows a relay publishes (or is publishing): released by their writer, or claimed by it."""
    return Q(claimed_by="") | Q(claimed_by__endswith=":relay")


def release(using: str, ids: list[int]) -> None:
    """Give rows up to a relay: no process holds them any more."""
    from gql_pubsub.publishing.models import OutboxEvent

    OutboxEvent.objects.using(using).filter(pk__in=ids).update(claimed_by="", claimed_at=None)
