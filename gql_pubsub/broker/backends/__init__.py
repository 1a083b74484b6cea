"""Broker backends: where published bytes go and where received bytes come from."""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from django.utils.module_loading import import_string

from gql_pubsub.broker.backends.base import (
    Backend,
    BrokerUnavailable,
    Entries,
    GapHandler,
    MessageHandler,
)

_SCHEMES = {
    "memory": "gql_pubsub.broker.backends.memory:MemoryBackend",
    "redis": "gql_pubsub.broker.backends.redis:RedisBackend",
    "rediss": "gql_pubsub.broker.backends.redis:RedisBackend",
    "unix": "gql_pubsub.broker.backends.redis:RedisBackend",
    "redis+sentinel": "gql_pubsub.broker.backends.redis:RedisBackend",
    "redis+cluster": "gql_pubsub.broker.backends.redis.cluster:RedisClusterBackend",
    "rediss+cluster": "gql_pubsub.broker.backends.redis.cluster:RedisClusterBackend",
}


def url_problem(url: str | None, backend: str | None = None) -> str | None:
    """What is wrong with a broker URL, or with the ``BACKEND`` class that takes it, if anything
    (checked before the server starts)."""
    if backend is not None:
        try:
            found = import_string(backend)
        except ImportError as error:
            return f"GQL_PUBSUB['BACKEND'] = {backend!r} cannot be imported ({error})."
        if not isinstance(found, type):
            return f"GQL_PUBSUB['BACKEND'] = {backend!r} is not a class: name the backend class."
        return None
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme not in _SCHEMES:
        return (
            f"Unsupported broker URL scheme {scheme!r} in {url!r}; use one of "
            f"{sorted(_SCHEMES)} (e.g. 'redis://localhost:6379/0' or 'memory://')."
        )
    if url and scheme in ("redis+sentinel", "redis+cluster", "rediss+cluster"):
        from gql_pubsub.broker.backends.redis.clients import ClusterURL, SentinelURL

        try:
            (SentinelURL if scheme == "redis+sentinel" else ClusterURL).parse(url)
        except ValueError as error:
            return str(error)
    return None


def in_memory(url: str | None, backend: str | None = None) -> bool:
    """Whether ``BROKER_URL`` (and ``BACKEND``) name the in-process broker, which reaches the
    subscribers of one process only (nothing else is imported to tell)."""
    if backend is None:
        return (urlsplit(url).scheme if url else "memory") == "memory"
    from gql_pubsub.broker.backends.memory import MemoryBackend

    try:
        found = import_string(backend)
    except ImportError:
        return False  # gql_pubsub.E006 says so
    return isinstance(found, type) and issubclass(found, MemoryBackend)


def channel_prefix(url: str | None, configured: str | None) -> str:
    """The prefix of every channel name: ``configured`` (``CHANNEL_PREFIX``), else
    ``gql_pubsub:<db>:``.

    Redis pub/sub ignores the database number, so by default the number of ``BROKER_URL`` is
    part of every channel name: deployments on ``…/0`` and ``…/1`` never see each other's
    events.
    """
    if configured is not None:
        return configured
    return f"gql_pubsub:{broker_database(url)}:"


@functools.lru_cache(maxsize=64)  # asked at each publish (the broker's settings key)
def broker_database(url: str | None) -> int:
    """The Redis database number a broker URL names (0 when it names none, or for memory)."""
    scheme = urlsplit(url).scheme if url else "memory"
    if _SCHEMES.get(scheme, "").startswith("gql_pubsub.broker.backends.redis"):
        from gql_pubsub.broker.backends.redis.clients import database

        return database(url or "")
    return 0


def backend_class(url: str | None, backend: str | None = None) -> Any:
    """The backend class that ``backend`` (a dotted path) or the URL's scheme names, imported;
    ``ValueError`` saying what is wrong with them."""
    problem = url_problem(url, backend)
    if problem is not None:
        raise ValueError(problem)
    if backend is not None:
        return import_string(backend)
    module_name, class_name = _SCHEMES[urlsplit(url).scheme if url else "memory"].split(":")
    return getattr(import_module(module_name), class_name)


def backend_from_url(
    url: str | None,
    *,
    prefix: str,
    health_check_interval: float = 15.0,
    publish_timeout: float = 1.0,
    history_length: int = 1000,
    history_age: float = 600.0,
    backend: str | None = None,
) -> Backend:
    """Build the backend: the class ``backend`` names (a dotted path, Django's convention for
    ``CACHES`` backends), else the one of the URL's scheme: ``memory://`` (or none),
    ``redis://…`` (``rediss://``, ``unix://``), ``redis+sentinel://…`` or ``redis+cluster://…``
    (``rediss+cluster://…``)."""
    built: Backend = backend_class(url, backend)(
        url or "memory://",
        prefix=prefix,
        health_check_interval=health_check_interval,
        publish_timeout=publish_timeout,
        history_length=history_length,
        history_age=history_age,
    )
    return built


__all__ = [
    "Backend",
    "BrokerUnavailable",
    "Entries",
    "GapHandler",
    "MessageHandler",
    "backend_class",
    "backend_from_url",
    "broker_database",
    "channel_prefix",
    "in_memory",
    "url_problem",
]
