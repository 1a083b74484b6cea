"""Changes of access, announced on each user's control channel so that their open streams follow
at once: a revocation, a deactivated user, a subscription made or ended. The receivers are
connected once, by the app's ``ready()``."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from gql_pubsub.core.control import Announcement, Change, control_channel
from gql_pubsub.publishing.outbox.writer import enqueue, publish_now
from gql_pubsub.streams.models import Subscription


def _announce(user_pk: Any, announcement: Announcement, *, early: bool, using: str | None) -> None:
    """Announce after the commit (through the outbox) and, for a loss of access, also right now.

    Announced before the commit, a loss of access precedes every event published after the
    commit, so it can never reach a stream that had the channel. A rollback is repaired by the
    stream itself (it re-reads the subscription when no committed announcement follows). The
    committed announcement goes through the outbox like any event: if Redis was unreachable it
    is relayed before every event written after it.
    """
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


def connect() -> None:
    """Connect the receivers (idempotent: each has a dispatch_uid)."""
    post_save.connect(
        _on_subscription_save, sender=Subscription, dispatch_uid="gql_pubsub.sub_save"
    )
    post_save.connect(
        _on_user_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="gql_pubsub.user"
    )
    post_delete.connect(
        _on_subscription_delete, sender=Subscription, dispatch_uid="gql_pubsub.sub_del"
    )
