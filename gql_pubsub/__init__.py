"""gql_pubsub: real-time GraphQL subscriptions for Django models, fanned out through Redis."""

from .broker import Broker, BrokerState, Subscriber, SubscriberOverflow, get_broker
from .events import Event, EventKind
from .publishing import apublish, publish, publish_event, publish_event_sync
from .subscriptions import SKIP, ChannelStream, Skip, instances, listen, model_events, stream

__all__ = [
    "SKIP",
    "Broker",
    "BrokerState",
    "ChannelStream",
    "Event",
    "EventKind",
    "Skip",
    "Subscriber",
    "SubscriberOverflow",
    "apublish",
    "get_broker",
    "instances",
    "listen",
    "model_events",
    "publish",
    "publish_event",
    "publish_event_sync",
    "stream",
]
