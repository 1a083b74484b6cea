"""Django app config for gql_pubsub."""

from django.apps import AppConfig


class GqlPubsubConfig(AppConfig):
    """Registers gql_pubsub with Django."""

    name = "gql_pubsub"
    verbose_name = "GraphQL pub/sub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from gql_pubsub import checks  # noqa: F401 - registers the system checks
        from gql_pubsub.publishing import receivers
        from gql_pubsub.streams import access

        receivers.connect()
        access.connect()
