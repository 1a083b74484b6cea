"""Django settings of the benchmark server: no database, the Redis broker, no channel prefix."""

import os

SECRET_KEY = "benchmark-only-secret-not-for-deployment-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "gql_pubsub"]
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "benchmarks.urls"
MIDDLEWARE = ["gql_pubsub.auth.TokenAuthenticationMiddleware"]  # bearer tokens: bench_user
USE_TZ = True
GQL_PUBSUB = {
    "BROKER_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    # The harness probes and publishes on `room:<room>` as is.
    "CHANNEL_PREFIX": "",
    "TOKEN_AUTH": "benchmarks.app.bench_user",
    "JWT_SECRET": "benchmark-only-jwt-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "MAX_CONNECTIONS_PER_USER": 0,  # every benchmark socket is the same synthetic user
}

if os.environ.get("GQL_PUBSUB_BENCH_METRICS"):  # run.py --metrics: Prometheus metrics on
    GQL_PUBSUB["METRICS_PATH"] = "/metrics"

if os.environ.get("GQL_PUBSUB_BENCH_GC_THRESHOLD"):  # for experiments: "700,10,10"
    GQL_PUBSUB["GC_THRESHOLD"] = tuple(
        int(n) for n in os.environ["GQL_PUBSUB_BENCH_GC_THRESHOLD"].split(",")
    )
