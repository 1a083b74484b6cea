"""Who may read which channels of the chat."""

from __future__ import annotations

from typing import Any

from .models import Correspondence


# --8<-- [start:participants_only]
def participants_only(user: Any, channel: str) -> bool:
    """``correspondence:<id>``: only its participants."""
    _, _, correspondence_id = channel.partition(":")
    if not correspondence_id.isdigit() or not user.is_authenticated:
        return False
    return Correspondence.objects.filter(pk=int(correspondence_id), participants=user).exists()
    # --8<-- [end:participants_only]
