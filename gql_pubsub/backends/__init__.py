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
    "redis+cluster": "gql_pubsub.backends.redis_cluster:RedisClusterBackend",
    "rediss+cluster": "gql_pubsub.backends.redis_cluster:RedisClusterBackend",
}


def url_problem(url: str | None) -> str | None:
    """What is wrong with a broker URL, if anything (checked before the server starts)."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme not in _SCHEMES:
        return (
            f"Unsupported broker URL scheme {scheme!r} in {url!r}; use one of "
            f"{sorted(_SCHEMES)} (e.g. 'redis://localhost:6379/0' or 'memory://')."
        )
    if url and scheme in ("redis+sentinel", "redis+cluster", "rediss+cluster"):
        from .redis_clients import ClusterURL, SentinelURL

        try:
            (SentinelURL if scheme == "redis+sentinel" else ClusterURL).parse(url)
        except ValueError as error:
            return str(error)
    return None


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
    ``unix://``), ``redis+sentinel://…`` or ``redis+cluster://…`` (``rediss+cluster://…``)."""
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    module_name, class_name = _SCHEMES[urlsplit(url).scheme if url else "memory"].split(":")
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
    "url_problem",
]
