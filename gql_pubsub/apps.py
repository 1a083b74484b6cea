"""Django app config for gql_pubsub."""

from __future__ import annotations

import logging
import sys

from django.apps import AppConfig
from django.conf import settings as django_settings
from django.utils.log import RequireDebugTrue

LOGGER = "gql_pubsub"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"


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
        show_log_on_console()
        import_backend()


class _Console(logging.Filter):
    """Lines below WARNING only with DEBUG on (Django's ``RequireDebugTrue``); none that a
    handler of an ancestor logger prints as well (a root handler the project configured,
    pytest's): each line appears once."""

    def __init__(self) -> None:
        super().__init__()
        self.debug = RequireDebugTrue()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not self.debug.filter(record):
            return False
        logger = logging.getLogger(LOGGER)
        while logger.propagate and logger.parent is not None:
            logger = logger.parent
            if any(record.levelno >= handler.level for handler in logger.handlers):
                return False
        return True


def show_log_on_console() -> None:
    """With DEBUG on and nothing configured for the "gql_pubsub" logger, print its INFO lines
    (a refused socket, say) on stderr, as Django's ``DEFAULT_LOGGING`` does for "django"."""
    logger = logging.getLogger(LOGGER)
    named = (getattr(django_settings, "LOGGING", None) or {}).get("loggers") or {}
    if (
        not django_settings.DEBUG  # production: Python's last resort prints the warnings
        or django_settings.LOGGING_CONFIG is None  # the project sets logging up itself
        or any(name == LOGGER or name.startswith(f"{LOGGER}.") for name in named)
        or logger.handlers
    ):
        return
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    console.addFilter(_Console())
    logger.addHandler(console)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def import_backend() -> None:
    """Import the configured backend's modules now (redis-py takes 0.1 s and more), not in the
    first write of the process; the in-memory broker needs none."""
    from django.core.exceptions import ImproperlyConfigured

    from gql_pubsub.broker.backends import backend_class, in_memory
    from gql_pubsub.conf import get_settings

    try:
        settings = get_settings()
        if not in_memory(settings.BROKER_URL, settings.BACKEND):
            backend_class(settings.BROKER_URL, settings.BACKEND)
    except (ImproperlyConfigured, ValueError):
        pass  # the system checks say what is wrong (gql_pubsub.E003, gql_pubsub.E006)
