"""The library's settings: one ``GQL_PUBSUB`` dict in Django settings, read lazily."""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved ``GQL_PUBSUB`` settings: each key, its default and what it does."""

    BROKER_URL: str | None = None
    """Where events go: `redis://`, `rediss://`, `unix://`, `redis+sentinel://`,
    `redis+cluster://`, `rediss+cluster://`, or `memory://`. `None` (the default) is the
    in-memory broker: one process only, so writes from a shell, a management command, a worker
    or another server process never reach subscribers (a system check warns when `DEBUG` is
    off)."""
    BACKEND: str | None = None
    """A broker backend class of your own, as a dotted path
    (`"yourpackage.backends.NatsBackend"`), built with `BROKER_URL`. `None`: chosen by
    `BROKER_URL`'s scheme."""
    CHANNEL_PREFIX: str | None = None
    """Prefix of the Redis channel and key names. `None`: `"gql_pubsub:<db>:"`, with the
    database number of `BROKER_URL` (pub/sub alone ignores the database, so two databases of
    one Redis would otherwise hear each other)."""
    SUBSCRIBER_BUFFER: int = 1000
    """Events one subscriber may fall behind before it is ended (`SubscriberOverflow`)."""
    TOKEN_AUTH: str = "gql_pubsub.auth.jwt_user"
    """Dotted path of a function `token -> user or None` that authenticates the token of
    `connection_init` and of `Authorization: Bearer`; it refuses a token by raising or
    returning `None`. `"gql_pubsub.auth.drf_token_user"` takes Django REST framework tokens."""
    JWT_SECRET: str | None = None
    """The key that signs and verifies JWTs (the public key for RS/ES algorithms). `None`:
    `SECRET_KEY`."""
    JWT_ALGORITHMS: tuple[str, ...] = ("HS256",)
    """The JWT algorithms accepted; the first signs `create_jwt`."""
    JWT_AUDIENCE: str | None = None
    """When set, a JWT must carry this `aud`."""
    JWT_ISSUER: str | None = None
    """When set, a JWT must carry this `iss`."""
    JWT_LEEWAY: float = 0.0
    """Seconds of clock skew allowed on a JWT's `exp` and `nbf`."""
    JWT_LIFETIME: float = 3600.0
    """Seconds a token made by `create_jwt` (and `manage.py gql_pubsub_token`) lives."""
    GRAPHQL_PATH: str = "/graphql/"
    """The path of the WebSocket endpoint (and of the HTTP streams) in
    `get_asgi_application()`. Read once, when the application is built."""
    METRICS_PATH: str | None = None
    """Serve Prometheus metrics at this path (`pip install 'gql_pubsub[metrics]'`). `None`: no
    metrics endpoint."""
    METRICS_TOKEN: str | None = None
    """When set, the metrics endpoint answers only `Authorization: Bearer <METRICS_TOKEN>`."""
    METRICS_INTERVAL: float = 5.0
    """Seconds between two samples of the metrics' gauges."""
    SHARE_WHEN_SAFE: bool = True
    """Subscribers of different users share one execution of each event, and only the fields
    that can read the viewer are resolved per subscriber. `False`: one execution per user."""
    GRAPHIQL: bool | None = None
    """Whether `GraphQLView` serves GraphiQL (`graphql_ide=` given to `as_view` wins). `None`:
    `DEBUG`."""
    INTROSPECTION: bool | None = None
    """Whether `__schema` and `__type` may be queried, over HTTP and the WebSocket. `None`:
    `DEBUG`. Read once, when the application is built."""
    CONNECTION_INIT_TIMEOUT: float = 3.0
    """Seconds a new socket has to send `connection_init` before it is closed with 4408."""
    ALLOWED_ORIGINS: tuple[str, ...] = ()
    """Origins besides the site's own that may open a socket (`"*"`: any). A browser handshake
    from another origin gets HTTP 403, and only these origins' session cookies authenticate."""
    TOKEN_EXPIRY: str = "gql_pubsub.auth.jwt_expiry"
    """Dotted path of a function `token -> Unix time or None`: a socket is closed with 4403
    when its token expires."""
    KEEPALIVE_INTERVAL: float = 20.0
    """Seconds between the server's `ping` messages on an idle socket (0: none)."""
    KEEPALIVE_TIMEOUT: float = 10.0
    """Seconds to wait for the client's `pong` before the socket is closed with 1001."""
    MAX_OPERATIONS_PER_CONNECTION: int = 500
    """Operations one socket may run at once; more get an `error` message."""
    MAX_CONNECTIONS_PER_USER: int = 1000
    """Connections of one user per server process, WebSockets and HTTP streams together (0: no
    limit); more are refused with 4403 (over HTTP, the stream's one result says so)."""
    MAX_MESSAGE_SIZE: int = 65536
    """Bytes (UTF-8) of one client frame; a larger one closes the socket with 1009."""
    MAX_QUERY_DEPTH: int = 15
    """Nesting depth of a GraphQL document, over HTTP and the socket; a deeper one is a GraphQL
    error. Read once, when the application is built."""
    MAX_QUERY_FIELDS: int = 500
    """Fields in a GraphQL document, over HTTP and the socket; more is a GraphQL error. Read
    once, when the application is built."""
    OPERATION_RATE: float = 100.0
    """Operations per second one socket may start, on average (a token bucket); beyond, an
    `error` message."""
    OPERATION_BURST: int = 500
    """Operations one socket may start at once before `OPERATION_RATE` applies (the bucket's
    size)."""
    MAX_EVENT_SIZE: int = 1_048_576
    """Bytes of one encoded event; publishing a larger one raises `EventTooLarge`."""
    REDIS_HEALTH_CHECK_INTERVAL: float = 15.0
    """Seconds between PINGs on the subscription connection; a connection that stays silent is
    replaced."""
    GC_FREEZE_ON_STARTUP: bool = True
    """Run `gc.freeze()` after the imports, at ASGI startup, so that full collections skip the
    code's objects."""
    GC_THRESHOLD: tuple[int, int, int] | None = (5_000, 20, 20)
    """`gc.set_threshold(...)` at ASGI startup: shorter young-generation passes, and more
    garbage held between full passes. `None`: keep Python's."""
    SEND_BUFFER: int = 1000
    """Frames one socket may have waiting for a slow client before it is closed with 1013."""
    CHANNEL_POLICIES: tuple[tuple[str, Any], ...] = ()
    """Channel name pattern (fnmatch) → access policy (a dotted path or a callable): who may
    subscribe to and receive from the channels it matches."""
    REVOCATION_CONFIRM_TIMEOUT: float = 5.0
    """Seconds after which an announced but not yet committed revocation of access is read
    again from the database."""
    PUBLISH_TIMEOUT: float = 1.0
    """Seconds the after-commit publish waits for Redis before it leaves the event to the
    relay."""
    HISTORY_LENGTH: int = 1000
    """Events kept per channel for resuming clients (Redis trims in blocks: at least this many;
    exact below 100)."""
    HISTORY_AGE: float = 600.0
    """Seconds a channel's history lives after its last event; a client resuming from an older
    cursor gets `REFETCH`. Every channel that receives an event gets a history: budget Redis
    memory for the events of `HISTORY_AGE` seconds (~0.3 KB per event and channel)."""
    PRESENCE_HEARTBEAT: float = 5.0
    """Seconds between two renewals of this process's presence connections. A connection not
    renewed for 1.5 heartbeats expires, and a process that tracks or watches its channel lets it
    go within half a heartbeat more: the members of a server that died leave within 2
    heartbeats."""
    EPHEMERAL_RATE: int = 5
    """Ephemeral events (`gql_pubsub.presence.broadcast`: "typing") one sender may send to one
    channel per second, across servers; more are refused with `EphemeralRefused`. 0: no
    limit."""
    EPHEMERAL_MAX_SIZE: int = 1024
    """Bytes of one encoded ephemeral event; a larger one is refused."""
    RELAY_INTERVAL: float = 1.0
    """Seconds between the relay's looks at the outbox (0.25 while Redis is unreachable)."""
    RELAY_CLAIM_TIMEOUT: float = 30.0
    """Seconds after which an event that its writer (a dead process) never published, or the
    relay's lease, is taken over."""

    @property
    def graphiql(self) -> bool:
        """Whether the GraphQL view serves GraphiQL (``GRAPHIQL``, else ``DEBUG``)."""
        return bool(django_settings.DEBUG if self.GRAPHIQL is None else self.GRAPHIQL)

    @property
    def introspection(self) -> bool:
        """Whether ``__schema`` and ``__type`` may be asked (``INTROSPECTION``, else ``DEBUG``)."""
        return bool(django_settings.DEBUG if self.INTROSPECTION is None else self.INTROSPECTION)

    @property
    def jwt_secret(self) -> str:
        """The key that signs and verifies tokens (``JWT_SECRET``, else ``SECRET_KEY``)."""
        return self.JWT_SECRET or str(django_settings.SECRET_KEY)


_TUPLE_KEYS = {"JWT_ALGORITHMS", "ALLOWED_ORIGINS", "GC_THRESHOLD"}


@cache
def get_settings() -> Settings:
    """Return the ``GQL_PUBSUB`` settings, validated, with defaults filled in."""
    raw: dict[str, Any] = dict(getattr(django_settings, "GQL_PUBSUB", None) or {})
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"GQL_PUBSUB has unknown key(s) {unknown}; the known keys are {sorted(known)}."
        )
    if "CHANNEL_POLICIES" in raw:
        policies = raw["CHANNEL_POLICIES"]
        if not isinstance(policies, dict):
            raise ImproperlyConfigured(
                "GQL_PUBSUB['CHANNEL_POLICIES'] must be a dict of channel pattern → policy."
            )
        raw["CHANNEL_POLICIES"] = tuple(policies.items())
    for key in _TUPLE_KEYS & raw.keys():
        if raw[key] is None:  # GC_THRESHOLD = None: keep Python's thresholds
            continue
        if isinstance(raw[key], str):
            raise ImproperlyConfigured(f"GQL_PUBSUB[{key!r}] must be a list, not a string.")
        raw[key] = tuple(raw[key])
    result = Settings(**raw)
    if result.SUBSCRIBER_BUFFER < 1:
        raise ImproperlyConfigured("GQL_PUBSUB['SUBSCRIBER_BUFFER'] must be at least 1.")
    if result.HISTORY_LENGTH < 1 or result.HISTORY_AGE <= 0:
        raise ImproperlyConfigured(
            "GQL_PUBSUB['HISTORY_LENGTH'] must be at least 1 and ['HISTORY_AGE'] positive: "
            "reconnecting clients resume from that history."
        )
    if result.EPHEMERAL_RATE < 0 or result.EPHEMERAL_MAX_SIZE < 64:
        raise ImproperlyConfigured(
            "GQL_PUBSUB['EPHEMERAL_RATE'] must be 0 (no limit) or more, and "
            "['EPHEMERAL_MAX_SIZE'] at least 64 bytes."
        )
    if result.PRESENCE_HEARTBEAT <= 0:
        raise ImproperlyConfigured(
            "GQL_PUBSUB['PRESENCE_HEARTBEAT'] must be positive: the seconds between two "
            "renewals of a server's presence (its members leave 2 heartbeats after it dies)."
        )
    if not result.GRAPHQL_PATH.startswith("/"):
        raise ImproperlyConfigured("GQL_PUBSUB['GRAPHQL_PATH'] must start with '/'.")
    if result.METRICS_INTERVAL <= 0:
        raise ImproperlyConfigured(
            "GQL_PUBSUB['METRICS_INTERVAL'] must be positive: seconds between two samples."
        )
    return result


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("GQL_PUBSUB", "SECRET_KEY"):
        get_settings.cache_clear()


setting_changed.connect(_reset)
