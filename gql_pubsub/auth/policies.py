"""Access policies: who may subscribe to, and receive from, which channels."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from functools import cache
from typing import Any

from django.utils.module_loading import import_string

from gql_pubsub.conf import get_settings

Policy = Callable[[Any, str], bool]
"""``policy(user, channel_name) -> bool`` (sync; it may query the database). It may also raise
:class:`AccessDenied` with a reason for the user."""

_registered: dict[str, Policy] = {}


class AccessDenied(PermissionError):
    """The user may not read this channel; the message says why."""


def register(pattern: str) -> Callable[[Policy], Policy]:
    """Register a policy for channel names matching ``pattern`` (``fnmatch``: ``"chat:*"``)."""

    def decorator(policy: Policy) -> Policy:
        _registered[pattern] = policy
        return policy

    return decorator


def allow_authenticated(user: Any, channel: str) -> bool:
    """A policy: any active, authenticated user may read the channel."""
    return bool(user is not None and user.is_authenticated and user.is_active)


def deny(user: Any, channel: str) -> bool:
    """A policy: nobody may read the channel."""
    return False


@cache
def _load(path: str) -> Policy:
    policy: Policy = import_string(path)
    return policy


def policy_for(channel: str) -> Policy | None:
    """The policy that decides ``channel``: the settings' patterns first, then registered ones."""
    configured: dict[str, str | Policy] = dict(get_settings().CHANNEL_POLICIES)
    for pattern, policy in configured.items():
        if fnmatch.fnmatchcase(channel, pattern):
            return _load(policy) if isinstance(policy, str) else policy
    for pattern, registered in _registered.items():
        if fnmatch.fnmatchcase(channel, pattern):
            return registered
    return None


def check_access(user: Any, channel: str) -> None:
    """Raise :class:`AccessDenied` unless ``user`` may read ``channel`` (sync)."""
    policy = policy_for(channel)
    if policy is None:
        raise AccessDenied(
            f"No access policy covers channel {channel!r}: nobody may subscribe to it. "
            "Register one in GQL_PUBSUB['CHANNEL_POLICIES'] or with "
            "@gql_pubsub.auth.policies.register(pattern)."
        )
    if not policy(user, channel):
        raise AccessDenied(f"You may not read channel {channel!r}.")


def may_read(user: Any, channel: str) -> bool:
    """Whether ``user`` may read ``channel`` (sync)."""
    try:
        check_access(user, channel)
    except AccessDenied:
        return False
    return True
