"""The chat: correspondences between users, and their messages; both publishable."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models.signals import m2m_changed, pre_delete

from gql_pubsub import Channel, PublishableModel, revoke


# --8<-- [start:correspondence]
class Correspondence(PublishableModel):
    """A conversation between its participants."""

    title = models.CharField(max_length=200)
    participants = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="correspondences")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title

    @staticmethod
    def channel_for(correspondence_id: object) -> str:
        """The channel that carries everything that happens in a correspondence."""
        return f"correspondence:{correspondence_id}"

    @property
    def channel(self) -> str:
        return self.channel_for(self.pk)
        # --8<-- [end:correspondence]


# --8<-- [start:message]
class Message(PublishableModel):
    """One message in a correspondence."""

    correspondence = models.ForeignKey(
        Correspondence, on_delete=models.CASCADE, related_name="messages"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sent_messages"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.body[:50]

    def get_publish_channels(self) -> list[str]:
        return [*super().get_publish_channels(), Correspondence.channel_for(self.correspondence_id)]
        # --8<-- [end:message]


# --8<-- [start:follow_participants]
def _follow_participants(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None, **kw: Any
) -> None:
    """Participants follow their correspondence's channel (the seed's Correspondence.save)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if reverse:  # user.correspondences.add(...): instance is the user
        pairs = [(c, instance) for c in Correspondence.objects.filter(pk__in=pk_set or ())]
    elif action == "pre_clear":
        pairs = [(instance, u) for u in instance.participants.all()]
    else:
        pairs = [(instance, u) for u in get_user_model().objects.filter(pk__in=pk_set or ())]
    for correspondence, user in pairs:
        channel, _ = Channel.objects.get_or_create(name=correspondence.channel)
        if action == "post_add":
            channel.subscribe(user)
        else:
            channel.unsubscribe(user)
            revoke(user, correspondence.channel)  # ends their open subscriptions of it, too


def _drop_channel(sender: Any, instance: Correspondence, **kw: Any) -> None:
    Channel.objects.filter(name=instance.channel).delete()


m2m_changed.connect(_follow_participants, sender=Correspondence.participants.through)
pre_delete.connect(_drop_channel, sender=Correspondence)
# --8<-- [end:follow_participants]
