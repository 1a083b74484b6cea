"""Broker backends: where published bytes go and where received bytes come from."""

from __future__ import annotations

from importlib import import_module
from urllib.parse import urlsplit

from .base import Backend, BrokerUnavailable, Entries, GapHandler, MessageHandler

_SCHEMES = {
    "memory": "gql_pubsub.backends.memory:MemoryBackend",
    "redis": "gql_pubsub.backends.redis:RedisBackend",
    "rediss": "gql_pubsub.backends.redis:RedisBackend",
    "unix": "gql_pubsub.backends.redis:RedisBackend",
    "redis+sentinel": "gql_pubsub.backends.redis:RedisBackend",
}


def backend_from_url(
    url: str | None,
    *,
    prefix: str,
    health_check_interval: float = 15.0,
    publish_timeout: float = 1.0,
    history_length: int = 1000,
    history_age: float = 600.0,
) -> Backend:
    """Build the backend a URL names: ``memory://`` (or none), ``redis://…`` (``rediss://``,
    ``unix://``) or ``redis+sentinel://…``."""
    scheme = urlsplit(url).scheme if url else "memory"
    try:
        module_name, class_name = _SCHEMES[scheme].split(":")
    except KeyError:
        raise ValueError(
            f"Unsupported broker URL scheme {scheme!r} in {url!r}; "
            f"use one of {sorted(_SCHEMES)} (e.g. 'redis://localhost:6379/0' or 'memory://')."
        ) from None
    backend_class = getattr(import_module(module_name), class_name)
    backend: Backend = backend_class(
        url or "memory://",
        prefix=prefix,
        health_check_interval=health_check_interval,
        publish_timeout=publish_timeout,
        history_length=history_length,
        history_age=history_age,
    )
    return backend


__all__ = [
    "Backend",
    "BrokerUnavailable",
    "Entries",
    "GapHandler",
    "MessageHandler",
    "backend_from_url",
]
