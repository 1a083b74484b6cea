"""The per-process broker (``broker``), what it hands events to (``listeners``), where a
subscription is in its channels' histories (``cursors``, ``replay``), the process's broker
(``process``), and the backends that move events between processes (``backends``)."""

from gql_pubsub.broker.broker import Broker, BrokerState
from gql_pubsub.broker.listeners import (
    EventsLost,
    Listener,
    Subscriber,
    SubscriberOverflow,
    Watcher,
)
from gql_pubsub.broker.process import get_broker
from gql_pubsub.core.events import EventTooLarge

__all__ = [
    "Broker",
    "BrokerState",
    "EventTooLarge",
    "EventsLost",
    "Listener",
    "Subscriber",
    "SubscriberOverflow",
    "Watcher",
    "get_broker",
]
