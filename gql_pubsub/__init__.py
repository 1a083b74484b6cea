"""gql_pubsub: real-time GraphQL subscriptions for Django models, fanned out through Redis.

Everything a project uses is importable from here. The names that need Django's settings or
apps (models, the ASGI application, the view, the schema) load on first use, so importing
``gql_pubsub`` itself needs neither.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

from .broker import Broker, BrokerState, get_broker
from .events import Event, EventKind, Gap
from .listeners import EventsLost, Subscriber, SubscriberOverflow
from .publishing import apublish, publish
from .subscriptions import (
    SKIP,
    ChannelStream,
    EventMap,
    Skip,
    instances,
    listen,
    model_events,
    stream,
)
from .viewers import VIEWER_DEPENDENT, VIEWER_INDEPENDENT

try:  # pyproject.toml holds the version; the installed metadata carries it here
    __version__ = importlib.metadata.version("gql_pubsub")
except importlib.metadata.PackageNotFoundError:  # imported from a checkout never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from .asgi import get_asgi_application
    from .auth import TokenRejected, create_jwt
    from .context import Context, get_user
    from .hooks import Hooks, OperationRefused
    from .models import Channel, PublishableModel, Subscription, revoke
    from .policies import AccessDenied, check_access, may_read
    from .schema import Schema
    from .user_streams import UserSubscriptionsStream, listen_to_user_subscriptions
    from .views import GraphQLView

_LAZY = {
    "get_asgi_application": "asgi",
    "TokenRejected": "auth",
    "create_jwt": "auth",
    "Context": "context",
    "get_user": "context",
    "Hooks": "hooks",
    "OperationRefused": "hooks",
    "Channel": "models",
    "PublishableModel": "models",
    "Subscription": "models",
    "revoke": "models",
    "AccessDenied": "policies",
    "check_access": "policies",
    "may_read": "policies",
    "Schema": "schema",
    "UserSubscriptionsStream": "user_streams",
    "listen_to_user_subscriptions": "user_streams",
    "GraphQLView": "views",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gql_pubsub' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once
    return value


__all__ = [
    "SKIP",
    "VIEWER_DEPENDENT",
    "VIEWER_INDEPENDENT",
    "AccessDenied",
    "Broker",
    "BrokerState",
    "Channel",
    "ChannelStream",
    "Context",
    "Event",
    "EventKind",
    "EventMap",
    "EventsLost",
    "Gap",
    "GraphQLView",
    "Hooks",
    "OperationRefused",
    "PublishableModel",
    "Schema",
    "Skip",
    "Subscriber",
    "SubscriberOverflow",
    "Subscription",
    "TokenRejected",
    "UserSubscriptionsStream",
    "__version__",
    "apublish",
    "check_access",
    "create_jwt",
    "get_asgi_application",
    "get_broker",
    "get_user",
    "instances",
    "listen",
    "listen_to_user_subscriptions",
    "may_read",
    "model_events",
    "publish",
    "revoke",
    "stream",
]
