"""Settings of the example chat project, from the environment (twelve-factor)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent

DEV_SECRET = (
    "dev-insecure-secret-change-me-before-deploying"  # refused in production by a later check
)

DEBUG = os.environ.get("DEBUG", "1").lower() in ("1", "true", "yes", "on")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", DEV_SECRET)
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

# --8<-- [start:installed_apps]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",  # its system checks; after staticfiles, so runserver still serves static files
    "strawberry_django",
    "gql_pubsub",
    "example.chat",
]
# --8<-- [end:installed_apps]

try:  # optional: enables TOKEN_AUTH = "gql_pubsub.auth.drf_token_user" with DRF's tokens
    import rest_framework  # noqa: F401

    INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken"]
except ImportError:
    pass

# --8<-- [start:middleware]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",  # async: no thread hop per request
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "gql_pubsub.auth.TokenAuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# --8<-- [end:middleware]

ROOT_URLCONF = "example.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (uvicorn workers, tests) share the file: wait for locks, write eagerly.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"  # for `manage.py collectstatic` (a CDN or a web server)
# With DEBUG on, gql_pubsub's ASGI app serves static files as runserver does. With DEBUG off,
# ServeStatic serves them from the apps' static directories (the finders), indexed once at
# startup: nothing to collect before starting the example.
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_AUTOREFRESH = False  # no per-request file lookup in a thread, even with DEBUG on

# --8<-- [start:gql_pubsub]
GQL_PUBSUB = {
    "BROKER_URL": os.environ.get("REDIS_URL") or None,
    # Prometheus metrics at this path (off when unset), behind a bearer token if one is set.
    "METRICS_PATH": os.environ.get("METRICS_PATH") or None,
    "METRICS_TOKEN": os.environ.get("METRICS_TOKEN") or None,
    "METRICS_INTERVAL": float(os.environ.get("METRICS_INTERVAL", "5")),
    "JWT_SECRET": os.environ.get("JWT_SECRET", DEV_SECRET),
    "TOKEN_AUTH": os.environ.get("TOKEN_AUTH", "gql_pubsub.auth.jwt_user"),
    # who is online: a dead server's members leave within two heartbeats
    "PRESENCE_HEARTBEAT": float(os.environ.get("PRESENCE_HEARTBEAT", "5")),
    "CHANNEL_POLICIES": {
        "correspondence:*": "example.chat.policies.participants_only",
        "news:*": "gql_pubsub.auth.policies.allow_authenticated",
    },
}
# --8<-- [end:gql_pubsub]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"gql_pubsub": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
