"""The signal receivers that turn a publishable model's committed writes into events; connected
once, by the app's ``ready()``."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save

from gql_pubsub.core.events import EventKind
from gql_pubsub.publishing.models import PublishableModel
from gql_pubsub.publishing.outbox.writer import enqueue


def _publish_on_commit(instance: PublishableModel, kind: EventKind, using: str) -> None:
    if not instance.publish_enabled:
        return
    # Snapshot and channels are taken now, at the write; the event goes out after the commit.
    enqueue(instance.get_publish_channels(), instance.publish_event(kind), using=using)


def _on_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool,
    using: str,
    **kw: Any,
) -> None:
    if isinstance(instance, PublishableModel) and not raw:
        _publish_on_commit(instance, EventKind.CREATED if created else EventKind.UPDATED, using)


def _on_delete(sender: type[models.Model], instance: models.Model, using: str, **kw: Any) -> None:
    if isinstance(instance, PublishableModel):
        _publish_on_commit(instance, EventKind.DELETED, using)


def connect() -> None:
    """Connect the receivers (idempotent: each has a dispatch_uid)."""
    post_save.connect(_on_save, dispatch_uid="gql_pubsub.models.on_save")
    post_delete.connect(_on_delete, dispatch_uid="gql_pubsub.models.on_delete")
