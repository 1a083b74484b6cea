"""Django system checks: refuse to run in production with a development or missing secret."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, register

from .conf import get_settings

_INSECURE_MARKERS = ("insecure", "change-me", "changeme", "secret-key", "dev-")


@register("security")
def check_jwt_secret(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With DEBUG off, HMAC tokens need a real JWT_SECRET: set, long, not a placeholder."""
    if django_settings.DEBUG:
        return []
    settings = get_settings()
    if not any(algorithm.startswith("HS") for algorithm in settings.JWT_ALGORITHMS):
        return []
    secret = settings.JWT_SECRET
    fix = "Set GQL_PUBSUB['JWT_SECRET'] to a random value of 32+ characters from the environment."
    if not secret:
        return [Error("GQL_PUBSUB['JWT_SECRET'] is not set.", hint=fix, id="gql_pubsub.E001")]
    if len(secret) < 32 or any(marker in secret.lower() for marker in _INSECURE_MARKERS):
        return [
            Error(
                "GQL_PUBSUB['JWT_SECRET'] is a development placeholder or too short for "
                "production (DEBUG is off): anyone who knows it can sign tokens.",
                hint=fix,
                id="gql_pubsub.E002",
            )
        ]
    return []
