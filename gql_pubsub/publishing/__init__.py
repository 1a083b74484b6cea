"""From a write to the broker: publishable models (``models``) and their signal receivers
(``receivers``), ``publish()`` / ``apublish()`` (``publish``), and the transactional outbox that
keeps every committed event until it is published (``outbox``)."""

from gql_pubsub.publishing.publish import apublish, publish

__all__ = ["apublish", "publish"]
