"""Django app config for gql_pubsub."""

from django.apps import AppConfig


class GqlPubsubConfig(AppConfig):
    """Registers gql_pubsub with Django."""

    name = "gql_pubsub"
    verbose_name = "GraphQL pub/sub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
