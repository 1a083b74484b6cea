"""The library's settings: one ``GQL_PUBSUB`` dict in Django settings, read lazily."""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved ``GQL_PUBSUB`` settings; see the README for each key."""

    BROKER_URL: str | None = None
    BACKEND: str | None = None
    CHANNEL_PREFIX: str | None = None
    SUBSCRIBER_BUFFER: int = 1000
    TOKEN_AUTH: str = "gql_pubsub.auth.jwt_user"
    JWT_SECRET: str | None = None
    JWT_ALGORITHMS: tuple[str, ...] = ("HS256",)
    JWT_AUDIENCE: str | None = None
    JWT_ISSUER: str | None = None
    JWT_LEEWAY: float = 0.0
    JWT_LIFETIME: float = 3600.0
    GRAPHQL_PATH: str = "/graphql/"
    METRICS_PATH: str | None = None
    METRICS_TOKEN: str | None = None
    METRICS_INTERVAL: float = 5.0
    SHARE_WHEN_SAFE: bool = True
    GRAPHIQL: bool | None = None
    INTROSPECTION: bool | None = None
    CONNECTION_INIT_TIMEOUT: float = 3.0
    ALLOWED_ORIGINS: tuple[str, ...] = ()
    TOKEN_EXPIRY: str = "gql_pubsub.auth.jwt_expiry"
    KEEPALIVE_INTERVAL: float = 20.0
    KEEPALIVE_TIMEOUT: float = 10.0
    MAX_OPERATIONS_PER_CONNECTION: int = 500
    MAX_CONNECTIONS_PER_USER: int = 1000
    MAX_MESSAGE_SIZE: int = 65536
    MAX_QUERY_DEPTH: int = 15
    MAX_QUERY_FIELDS: int = 500
    OPERATION_RATE: float = 100.0
    OPERATION_BURST: int = 500
    MAX_EVENT_SIZE: int = 1_048_576
    REDIS_HEALTH_CHECK_INTERVAL: float = 15.0
    GC_FREEZE_ON_STARTUP: bool = True
    GC_THRESHOLD: tuple[int, int, int] | None = (5_000, 20, 20)
    SEND_BUFFER: int = 1000
    CHANNEL_POLICIES: tuple[tuple[str, Any], ...] = ()
    REVOCATION_CONFIRM_TIMEOUT: float = 5.0
    PUBLISH_TIMEOUT: float = 1.0
    HISTORY_LENGTH: int = 1000
    HISTORY_AGE: float = 600.0
    RELAY_INTERVAL: float = 1.0
    RELAY_CLAIM_TIMEOUT: float = 30.0

    @property
    def graphiql(self) -> bool:
        """Whether the GraphQL view serves GraphiQL (``GRAPHIQL``, else ``DEBUG``)."""
        return bool(django_settings.DEBUG if self.GRAPHIQL is None else self.GRAPHIQL)

    @property
    def introspection(self) -> bool:
        """Whether ``__schema`` and ``__type`` may be asked (``INTROSPECTION``, else ``DEBUG``)."""
        return bool(django_settings.DEBUG if self.INTROSPECTION is None else self.INTROSPECTION)

    @property
    def jwt_secret(self) -> str:
        """The key that signs and verifies tokens (``JWT_SECRET``, else ``SECRET_KEY``)."""
        return self.JWT_SECRET or str(django_settings.SECRET_KEY)


_TUPLE_KEYS = {"JWT_ALGORITHMS", "ALLOWED_ORIGINS", "GC_THRESHOLD"}


@cache
def get_settings() -> Settings:
    """Return the ``GQL_PUBSUB`` settings, validated, with defaults filled in."""
    raw: dict[str, Any] = dict(getattr(django_settings, "GQL_PUBSUB", None) or {})
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"GQL_PUBSUB has unknown key(s) {unknown}; the known keys are {sorted(known)}."
        )
    if "CHANNEL_POLICIES" in raw:
        policies = raw["CHANNEL_POLICIES"]
        if not isinstance(policies, dict):
            raise ImproperlyConfigured(
                "GQL_PUBSUB['CHANNEL_POLICIES'] must be a dict of channel pattern → policy."
            )
        raw["CHANNEL_POLICIES"] = tuple(policies.items())
    for key in _TUPLE_KEYS & raw.keys():
        if raw[key] is None:  # GC_THRESHOLD = None: keep Python's thresholds
            continue
        if isinstance(raw[key], str):
            raise ImproperlyConfigured(f"GQL_PUBSUB[{key!r}] must be a list, not a string.")
        raw[key] = tuple(raw[key])
    result = Settings(**raw)
    if result.SUBSCRIBER_BUFFER < 1:
        raise ImproperlyConfigured("GQL_PUBSUB['SUBSCRIBER_BUFFER'] must be at least 1.")
    if result.HISTORY_LENGTH < 1 or result.HISTORY_AGE <= 0:
        raise ImproperlyConfigured(
            "GQL_PUBSUB['HISTORY_LENGTH'] must be at least 1 and ['HISTORY_AGE'] positive: "
            "reconnecting clients resume from that history."
        )
    if not result.GRAPHQL_PATH.startswith("/"):
        raise ImproperlyConfigured("GQL_PUBSUB['GRAPHQL_PATH'] must start with '/'.")
    if result.METRICS_INTERVAL <= 0:
        raise ImproperlyConfigured(
            "GQL_PUBSUB['METRICS_INTERVAL'] must be positive: seconds between two samples."
        )
    return result


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("GQL_PUBSUB", "SECRET_KEY"):
        get_settings.cache_clear()


setting_changed.connect(_reset)
