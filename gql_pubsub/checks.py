"""Django system checks: valid settings, and no forgeable secret in production.

``manage.py`` commands run them; so does the ASGI application at startup (``check_before_serving``),
so that ``uvicorn`` or ``gunicorn`` never serves with a configuration ``check`` refuses.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning, register, run_checks
from django.core.exceptions import ImproperlyConfigured

from gql_pubsub.conf import Settings, get_settings

_INSECURE_MARKERS = ("insecure", "change-me", "changeme", "secret-key", "dev-")


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``GQL_PUBSUB`` must be valid (known keys, right types), whatever DEBUG says."""
    try:
        get_settings()
    except ImproperlyConfigured as error:
        return [
            Error(
                str(error),
                hint="Fix GQL_PUBSUB in your settings (every key: docs/reference/settings.md).",
                id="gql_pubsub.E003",
            )
        ]
    return []


def _valid_settings() -> Settings | None:
    """The settings, or None when they are invalid (gql_pubsub.E003 reports that)."""
    try:
        return get_settings()
    except ImproperlyConfigured:
        return None


@register()
def check_broker_url(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``BROKER_URL`` (and ``BACKEND``, if set) must name a broker this library can use."""
    from gql_pubsub.broker.backends import url_problem

    settings = _valid_settings()
    if settings is None:
        return []
    problem = url_problem(settings.BROKER_URL, settings.BACKEND)
    if problem is None:
        return []
    return [
        Error(
            problem,
            hint="Fix GQL_PUBSUB['BROKER_URL'] or ['BACKEND'] (docs/reference/settings.md).",
            id="gql_pubsub.E006",
        )
    ]


@register()
def check_in_memory_broker(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With DEBUG off, the in-memory broker is a warning: no other process's write reaches it."""
    from gql_pubsub.broker.backends import in_memory

    settings = None if django_settings.DEBUG else _valid_settings()
    if settings is None or not in_memory(settings.BROKER_URL, settings.BACKEND):
        return []
    return [
        Warning(
            "The in-memory broker delivers only within one process: writes from other "
            "processes (shell, management commands, Celery, other workers) never reach "
            "subscribers.",
            hint=(
                "Set GQL_PUBSUB['BROKER_URL'] = 'redis://…' (or silence gql_pubsub.W002 if "
                "this one server process makes every write)."
            ),
            id="gql_pubsub.W002",
        )
    ]


@register("security")
def check_jwt_secret(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With DEBUG off, HMAC tokens need a real JWT_SECRET: set, long, not a placeholder."""
    settings = None if django_settings.DEBUG else _valid_settings()
    if settings is None:
        return []
    if not any(algorithm.startswith("HS") for algorithm in settings.JWT_ALGORITHMS):
        return []
    secret = settings.JWT_SECRET
    fix = "Set GQL_PUBSUB['JWT_SECRET'] to a random value of 32+ characters from the environment."
    if not secret:
        return [Error("GQL_PUBSUB['JWT_SECRET'] is not set.", hint=fix, id="gql_pubsub.E001")]
    if len(secret) < 32 or any(marker in secret.lower() for marker in _INSECURE_MARKERS):
        return [
            Error(
                "GQL_PUBSUB['JWT_SECRET'] is a development placeholder or too short for "
                "production (DEBUG is off): anyone who knows it can sign tokens.",
                hint=fix,
                id="gql_pubsub.E002",
            )
        ]
    return []


@register("security")
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Metrics: a path that starts with "/", prometheus-client installed, and with DEBUG off,
    a token (a scrape shows how many users are connected and what flows)."""
    settings = _valid_settings()
    path = settings.METRICS_PATH if settings is not None else None
    if settings is None or path is None:
        return []
    if not path.startswith("/"):
        return [
            Error(
                f"GQL_PUBSUB['METRICS_PATH'] is {path!r}.",
                hint='Start it with "/", e.g. "/metrics".',
                id="gql_pubsub.E004",
            )
        ]
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return [
            Error(
                "GQL_PUBSUB['METRICS_PATH'] is set but prometheus-client is not installed.",
                hint="pip install 'gql_pubsub[metrics]', or unset METRICS_PATH.",
                id="gql_pubsub.E005",
            )
        ]
    if not django_settings.DEBUG and not settings.METRICS_TOKEN:
        return [
            Warning(
                "GQL_PUBSUB['METRICS_PATH'] is served to anyone: METRICS_TOKEN is not set.",
                hint=(
                    "Set METRICS_TOKEN (scrapes send it as a bearer token), or serve the path "
                    "only on a private network."
                ),
                id="gql_pubsub.W001",
            )
        ]
    return []


def check_before_serving() -> list[CheckMessage]:
    """Run the system checks as ``runserver`` does: raise listing the errors, return the rest."""
    messages = run_checks(include_deployment_checks=False)
    errors = [m for m in messages if m.is_serious() and not m.is_silenced()]
    if errors:
        listed = "\n".join(str(error) for error in errors)
        raise ImproperlyConfigured(
            f"The system check found {len(errors)} error(s); the server will not start:\n{listed}"
        )
    return [m for m in messages if not m.is_silenced()]
