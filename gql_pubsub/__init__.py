"""gql_pubsub: real-time GraphQL subscriptions for Django models, fanned out through Redis.

Everything a project uses is importable from here. The names that need Django's settings or
apps (models, the ASGI application, the view, the schema) load on first use, so importing
``gql_pubsub`` itself needs neither.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

from gql_pubsub import moved
from gql_pubsub.broker.broker import Broker, BrokerState
from gql_pubsub.broker.listeners import EventsLost, Subscriber, SubscriberOverflow
from gql_pubsub.broker.process import get_broker
from gql_pubsub.core.events import Event, EventKind, Gap
from gql_pubsub.execution.viewers import VIEWER_DEPENDENT, VIEWER_INDEPENDENT
from gql_pubsub.publishing.publish import apublish, publish
from gql_pubsub.streams.channels import (
    SKIP,
    ChannelStream,
    EventMap,
    Skip,
    instances,
    listen,
    model_events,
    stream,
)

moved.install()  # the paths of modules that moved keep importing, with a DeprecationWarning

try:  # pyproject.toml holds the version; the installed metadata carries it here
    __version__ = importlib.metadata.version("gql_pubsub")
except importlib.metadata.PackageNotFoundError:  # imported from a checkout never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from gql_pubsub.asgi import get_asgi_application
    from gql_pubsub.auth.policies import AccessDenied, check_access, may_read
    from gql_pubsub.auth.tokens import TokenRejected, create_jwt
    from gql_pubsub.execution.context import Context, get_user
    from gql_pubsub.models import Channel, PublishableModel, Subscription, revoke
    from gql_pubsub.schema import Schema
    from gql_pubsub.server.hooks import Hooks, OperationRefused
    from gql_pubsub.streams.user_streams import (
        UserSubscriptionsStream,
        listen_to_user_subscriptions,
    )
    from gql_pubsub.transports.http.view import GraphQLView

_LAZY = {
    "get_asgi_application": "asgi",
    "TokenRejected": "auth.tokens",
    "create_jwt": "auth.tokens",
    "Context": "execution.context",
    "get_user": "execution.context",
    "Hooks": "server.hooks",
    "OperationRefused": "server.hooks",
    "Channel": "models",
    "PublishableModel": "models",
    "Subscription": "models",
    "revoke": "models",
    "AccessDenied": "auth.policies",
    "check_access": "auth.policies",
    "may_read": "auth.policies",
    "Schema": "schema",
    "UserSubscriptionsStream": "streams.user_streams",
    "listen_to_user_subscriptions": "streams.user_streams",
    "GraphQLView": "transports.http.view",
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
