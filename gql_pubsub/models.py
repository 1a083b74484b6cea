"""gql_pubsub's models, where Django looks for them: publishable models and the outbox's tables
(``publishing.models``) and the seed's channels (``streams.models``)."""

from gql_pubsub.publishing.models import OutboxEvent, OutboxRelay, PublishableModel
from gql_pubsub.streams.access import revoke
from gql_pubsub.streams.models import Channel, Subscription

__all__ = ["Channel", "OutboxEvent", "OutboxRelay", "PublishableModel", "Subscription", "revoke"]
