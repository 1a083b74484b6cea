"""The chat: correspondences between users, and their messages; both publishable."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from gql_pubsub.models import PublishableModel


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
