"""Publishable models: every committed create, update and delete becomes an event."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from django.conf import settings
from django.db import models, router, transaction
from django.db.models.signals import post_delete, post_save

from .control import Announcement, Change, control_channel
from .events import Event, EventKind


class PublishableModel(models.Model):
    """Abstract model that publishes ``created``/``updated``/``deleted`` after each commit."""

    publish_enabled: ClassVar[bool] = True
    """Set to False on a subclass (or an instance) to stop it publishing."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; the event is written to the outbox in the same transaction as the row."""
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using, savepoint=False):
            super().save(*args, **kwargs)

    @classmethod
    def publish_label(cls) -> str:
        """The model's name in events and channels: ``app_label.model_name``."""
        return cls._meta.label_lower

    @classmethod
    def model_channel(cls) -> str:
        """The channel that carries every event of this model."""
        return cls.publish_label()

    def instance_channel(self) -> str:
        """The channel that carries the events of this one instance."""
        return f"{self.publish_label()}:{self.pk}"

    def get_publish_channels(self) -> list[str]:
        """The channels this instance publishes to; override to add your own."""
        return [self.model_channel(), self.instance_channel()]

    def publish_snapshot(self) -> dict[str, Any]:
        """The concrete field values (by attname) that the event carries."""
        return {f.attname: f.value_from_object(self) for f in self._meta.concrete_fields}

    def publish_event(self, kind: EventKind) -> Event:
        """The event describing ``kind`` happening to this instance now."""
        return Event(
            kind=kind, model=self.publish_label(), pk=self.pk, data=self.publish_snapshot()
        )

    @classmethod
    def from_event(cls, event: Event) -> Self:
        """Rebuild an unsaved-looking, database-free instance from an event's snapshot."""
        if event.model != cls.publish_label():
            raise ValueError(f"Event is of model {event.model!r}, not {cls.publish_label()!r}.")
        fields = cls._meta.concrete_fields
        values = [
            field.to_python(event.data[field.attname]) if field.attname in event.data else None
            for field in fields
        ]
        instance = cls.from_db(router.db_for_read(cls), [f.attname for f in fields], values)
        return instance


def _publish_on_commit(instance: PublishableModel, kind: EventKind, using: str) -> None:
    if not instance.publish_enabled:
        return
    from .outbox_write import enqueue

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


post_save.connect(_on_save, dispatch_uid="gql_pubsub.models.on_save")
post_delete.connect(_on_delete, dispatch_uid="gql_pubsub.models.on_delete")


# -- the seed's channels: named channels that users subscribe to ---------------------------


class Channel(models.Model):
    """A named channel users subscribe to; who may is decided by the access policies."""

    name = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def subscribe(self, user: Any) -> Subscription:
        """Subscribe ``user`` (or reactivate their subscription); open streams follow at once."""
        subscription, created = Subscription.objects.get_or_create(
            user=user, channel=self, defaults={"active": True}
        )
        if not created and not subscription.active:
            subscription.active = True
            subscription.save(update_fields=["active", "updated_at"])
        return subscription

    def unsubscribe(self, user: Any) -> Subscription | None:
        """Deactivate ``user``'s subscription; open streams stop carrying the channel at once."""
        subscription = Subscription.objects.filter(user=user, channel=self).first()
        if subscription is not None and subscription.active:
            subscription.active = False
            subscription.save(update_fields=["active", "updated_at"])
        return subscription


class Subscription(models.Model):
    """A user's subscription to a channel (``user.subscriptions``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="subscriptions")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "channel"], name="gql_pubsub_one_per_channel")
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.channel} ({'active' if self.active else 'inactive'})"


def _announce(user_pk: Any, announcement: Announcement, *, early: bool, using: str | None) -> None:
    """Announce after the commit (through the outbox) and, for a loss of access, also right now.

    Announced before the commit, a loss of access precedes every event published after the
    commit, so it can never reach a stream that had the channel. A rollback is repaired by the
    stream itself (it re-reads the subscription when no committed announcement follows). The
    committed announcement goes through the outbox like any event: if Redis was unreachable it
    is relayed before every event written after it.
    """
    from .outbox_write import enqueue, publish_now

    channels = [control_channel(user_pk)]
    if early:
        publish_now(channels, dataclasses.replace(announcement, committed=False).event())
    enqueue(channels, announcement.event(), using=using)


def revoke(user: Any, channel: str, *, using: str | None = None) -> None:
    """Announce that ``user`` lost access to ``channel``: their open subscriptions of it end.

    Announced now and again after the commit, like an unsubscribe, so nothing published after
    the commit reaches them; call it inside the transaction that removes the access.
    """
    _announce(user.pk, Announcement(Change.REVOKED, channel), early=True, using=using)


def _on_user_save(sender: Any, instance: Any, raw: bool, using: str, **kw: Any) -> None:
    if not raw and instance.pk is not None and not getattr(instance, "is_active", True):
        deactivated = Announcement(Change.DEACTIVATED)  # the user's sockets close
        _announce(instance.pk, deactivated, early=True, using=using)


def _on_subscription_change(instance: Subscription, active: bool, using: str) -> None:
    change = Announcement(Change.SUBSCRIPTION, instance.channel.name, active)
    _announce(instance.user_id, change, early=not active, using=using)


def _on_subscription_save(
    sender: Any, instance: Subscription, raw: bool, using: str, **kw: Any
) -> None:
    if not raw:
        _on_subscription_change(instance, instance.active, using)


def _on_subscription_delete(sender: Any, instance: Subscription, using: str, **kw: Any) -> None:
    _on_subscription_change(instance, False, using)


post_save.connect(_on_subscription_save, sender=Subscription, dispatch_uid="gql_pubsub.sub_save")
post_save.connect(_on_user_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="gql_pubsub.user")
post_delete.connect(_on_subscription_delete, sender=Subscription, dispatch_uid="gql_pubsub.sub_del")


# -- the transactional outbox ----------------------------------------------------------------


class OutboxEvent(models.Model):
    """An event committed with its write and not yet published (see ``gql_pubsub.relay``)."""

    destination = models.CharField(max_length=32)
    """Which broker (URL and channel prefix, hashed) the event is for."""
    channels = models.JSONField()
    payload = models.TextField()
    """The event's wire encoding."""
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_by = models.CharField(max_length=80, blank=True, default="")
    """The process publishing it now ('' when it waits for a relay)."""
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["destination", "id"], name="gql_pubsub_outbox_order")]

    def __str__(self) -> str:
        return f"#{self.pk} → {self.channels}"


class OutboxRelay(models.Model):
    """Who relays a destination's outbox: one relay at a time keeps the events in order."""

    destination = models.CharField(max_length=32, primary_key=True)
    holder = models.CharField(max_length=80, blank=True, default="")
    expires_at = models.DateTimeField()
