"""The signal receivers that turn a publishable model's committed writes into events; connected
once, by the app's ``ready()``."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from gql_pubsub.core.events import EventKind
from gql_pubsub.publishing.models import PublishableModel
from gql_pubsub.publishing.outbox.writer import enqueue, enqueue_written, offer_create


def _publish_on_commit(instance: PublishableModel, kind: EventKind, using: str) -> None:
    if not instance.publish_enabled:
        return
    # Snapshot and channels are taken now, at the write; the event goes out after the commit.
    channels = instance.get_publish_channels()
    if kind is EventKind.CREATED:
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
    if (
        isinstance(instance, PublishableModel)
        and not raw
        and instance.publish_enabled
        and instance._state.adding
        and instance.pk is None
        and _ours_alone(sender)
    ):
        offer_create(instance, using)


def _ours_alone(sender: type[models.Model]) -> bool:
    """Whether the library's receiver is the only one of ``sender``'s ``post_save``: then no
    other code writes after the INSERT, and the row may commit with its outbox row at once."""
    try:
        sync, asynchronous = post_save._live_receivers(sender)
    except (AttributeError, TypeError, ValueError):  # another Django: the usual way
        return False
    return not asynchronous and all(receiver is _on_save for receiver in sync)


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
    pre_save.connect(_before_save, dispatch_uid="gql_pubsub.models.before_save")
    post_save.connect(_on_save, dispatch_uid="gql_pubsub.models.on_save")
    post_delete.connect(_on_delete, dispatch_uid="gql_pubsub.models.on_delete")
