"""Publishable models, and the transactional outbox's tables."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Self

from django.db import models, router

from gql_pubsub.core.events import Event, EventKind
from gql_pubsub.publishing.outbox.fused import save_transaction
from gql_pubsub.publishing.outbox.statements import channels_text


class PublishableModel(models.Model):
    """Abstract model that publishes ``created``/``updated``/``deleted`` after each commit."""

    publish_enabled: ClassVar[bool] = True
    """Set to False on a subclass (or an instance) to stop it publishing."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; the event is written to the outbox in the same transaction as the row."""
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with save_transaction(using, OutboxEvent, type(self)):
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


# -- the transactional outbox ----------------------------------------------------------------


if TYPE_CHECKING:
    from django.db.models.expressions import Combinable

    _ListAsText = models.TextField[list[str] | Combinable, list[str]]
else:
    _ListAsText = models.TextField


class ChannelsField(_ListAsText):
    """A list of channel names, stored as JSON text: a save writes it without PostgreSQL's
    parse into ``jsonb``, and nothing queries inside it."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        """The list, from the stored text."""
        return self.to_python(value)

    def to_python(self, value: Any) -> Any:
        """The list, from the stored text or the list itself."""
        return json.loads(value) if isinstance(value, str) else value

    def get_prep_value(self, value: Any) -> Any:
        """The stored text of the list."""
        return None if value is None else channels_text(value)


class OutboxEvent(models.Model):
    """An event committed with its write and not yet published (see ``publishing.outbox``)."""

    destination = models.CharField(max_length=32)
    """Which broker (URL and channel prefix, hashed) the event is for."""
    channels = ChannelsField()
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
