"""The process's broker: one per process, built from the ``GQL_PUBSUB`` settings on first use
(a server, a shell, a management command and a Celery worker each have theirs), and rebuilt
when those settings change."""

from __future__ import annotations

import logging
from typing import Any

from gql_pubsub.broker.backends import channel_prefix
from gql_pubsub.broker.broker import Broker
from gql_pubsub.conf import get_settings

logger = logging.getLogger("gql_pubsub.broker")

_broker: Broker | None = None
_built_from: tuple[Any, ...] = ()


def configured_prefix() -> str:
    """The channel prefix the ``GQL_PUBSUB`` settings give (``CHANNEL_PREFIX`` or the default)."""
    settings = get_settings()
    return channel_prefix(settings.BROKER_URL, settings.CHANNEL_PREFIX)


def _broker_settings() -> tuple[Any, ...]:
    settings = get_settings()
    return (
        settings.BROKER_URL,
        settings.BACKEND,
        configured_prefix(),
        settings.SUBSCRIBER_BUFFER,
        settings.REDIS_HEALTH_CHECK_INTERVAL,
        settings.MAX_EVENT_SIZE,
        settings.PUBLISH_TIMEOUT,
        settings.HISTORY_LENGTH,
        settings.HISTORY_AGE,
    )


def get_broker() -> Broker:
    """The process's broker, built from the ``GQL_PUBSUB`` settings on first use."""
    global _broker, _built_from
    if _broker is not None and _built_from != _broker_settings():
        # The settings that make a broker changed (tests, override_settings): a new one. The old
        # one's thread client is closed now (its event-loop side ends with its loop).
        _broker.backend.close_sync()
        _broker = None
    if _broker is None:
        settings = get_settings()
        if settings.BROKER_URL is None and settings.BACKEND is None:
            logger.info(
                "GQL_PUBSUB['BROKER_URL'] is not set: using the in-memory broker, which only "
                "reaches subscribers in this process. Set it to redis://… for several processes."
            )
        _broker = Broker(
            settings.BROKER_URL,
            prefix=configured_prefix(),
            buffer_size=settings.SUBSCRIBER_BUFFER,
            health_check_interval=settings.REDIS_HEALTH_CHECK_INTERVAL,
            max_event_size=settings.MAX_EVENT_SIZE,
            publish_timeout=settings.PUBLISH_TIMEOUT,
            history_length=settings.HISTORY_LENGTH,
            history_age=settings.HISTORY_AGE,
            backend=settings.BACKEND,
        )
        _built_from = _broker_settings()
    return _broker
