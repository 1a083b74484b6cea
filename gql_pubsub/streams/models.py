"""The seed's channels: named channels that users subscribe to."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


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
