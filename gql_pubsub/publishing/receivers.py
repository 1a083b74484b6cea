"""The signal receivers that turn a publishable model's committed writes into events; connected
once, by the app's ``ready()``."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from gql_pubsub.core.events import EventKind
from gql_pubsub.publishing.models import PublishableModel
from gql_pubsub.publishing.outbox.fused import active
from gql_pubsub.publishing.outbox.listeners import LIBRARY_RECEIVER
from gql_pubsub.publishing.outbox.writer import enqueue, enqueue_written, offer


def _publish_on_commit(instance: PublishableModel, kind: EventKind, using: str) -> None:
    if not instance.publish_enabled:
        return
    # Snapshot and channels are taken now, at the write; the event goes out after the commit.
    channels = instance.get_publish_channels()
    if kind is not EventKind.DELETED:
        own = _own_event(type(instance))
        if enqueue_written(channels, None if own else instance.publish_event(kind), using=using):
            return
    enqueue(channels, instance.publish_event(kind), using=using)


def _own_event(model: type[PublishableModel]) -> bool:
    """Whether the model's event is the library's: the pk in it only as its digits."""
    return (
        model.publish_event is PublishableModel.publish_event
        and model.publish_snapshot is PublishableModel.publish_snapshot
    )


def _before_save(
    sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kw: Any
) -> None:
    fused = active(using)
    if (
        fused is not None  # else not a fused save (SQLite, inside your atomic())
        and fused.post_save_alone  # no other code writes after the INSERT
        and isinstance(instance, PublishableModel)
        and not raw
        and instance.publish_enabled
    ):
        if instance._state.adding and instance.pk is None:
            offer(fused, instance, EventKind.CREATED)
        elif not instance._state.adding:
            offer(fused, instance, EventKind.UPDATED)


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
    for receiver in (_before_save, _on_save, _on_delete):
        setattr(receiver, LIBRARY_RECEIVER, True)
    pre_save.connect(_before_save, dispatch_uid="gql_pubsub.models.before_save")
    post_save.connect(_on_save, dispatch_uid="gql_pubsub.models.on_save")
    post_delete.connect(_on_delete, dispatch_uid="gql_pubsub.models.on_delete")
