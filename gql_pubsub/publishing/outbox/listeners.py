"""Who hears a model's save signals: whether only the library's receivers do, so that no other
code runs in its save (``fused`` then writes the row and its event in one statement)."""

from __future__ import annotations

from django.db.models import Model
from django.db.models.signals import post_save, pre_save
from django.dispatch import Signal

LIBRARY_RECEIVER = "gql_pubsub_receiver"
"""The attribute that marks the library's own signal receivers (``library_alone``)."""


def library_alone(sender: type[Model], signals: tuple[Signal, ...] = (pre_save, post_save)) -> bool:
    """Whether only the library's receivers hear ``sender``'s ``signals`` (its ``pre_save`` and
    ``post_save``: then no other code runs in its save, or writes in its transaction)."""
    for signal in signals:
        try:
            sync, asynchronous = signal._live_receivers(sender)
        except (AttributeError, TypeError, ValueError):  # another Django: say no
            return False
        if asynchronous or not all(getattr(r, LIBRARY_RECEIVER, False) for r in sync):
            return False
    return True
