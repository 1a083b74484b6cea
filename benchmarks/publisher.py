"""The harness's `--mode import` publisher: events go out through gql_pubsub's own API."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from gql_pubsub import publish as gql_publish  # noqa: E402


def publish(channel: str, event: dict[str, Any]) -> None:
    """Publish one harness event (a custom event whose data is the harness's dict)."""
    gql_publish(channel, "custom", event)


# Connect now, like the harness's other publishers do before their first timestamp.
gql_publish("gql_pubsub-bench:warm-up", "custom", {"warm": True})
