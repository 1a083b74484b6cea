"""Prometheus metrics (``prometheus-client``), off unless ``METRICS_PATH`` is set.

What the server holds (sockets, operations, groups, frames waiting for slow clients, the
outbox's backlog) is sampled every ``METRICS_INTERVAL`` seconds, not counted on the hot path;
what happens is counted once per event, per group or per incident (events received,
deliveries, sockets closed by code, overflows, Redis reconnects), and publishing is timed.
With ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus-client's multiprocess mode) every worker of
a uvicorn or gunicorn server writes there and any worker's scrape reports them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

from django.core.exceptions import ImproperlyConfigured

from gql_pubsub.conf import get_settings

if TYPE_CHECKING:
    from gql_pubsub.core.asgi_types import Receive, Scope, Send

logger = logging.getLogger("gql_pubsub.metrics")

BACKLOG_EVERY = 3
"""Samples between two counts of the outbox's backlog (a database query)."""


class Stats(Protocol):
    """What the endpoint counts: sockets, operations, groups and their members."""

    @property
    def connections(self) -> int: ...
    @property
    def operations(self) -> int: ...
    @property
    def groups(self) -> int: ...
    @property
    def group_members(self) -> int: ...


class Sampled(Protocol):
    """What the sampler reads of the WebSocket endpoint."""

    def stats(self) -> Stats: ...
    def queued_frames(self) -> int: ...


class Metrics:
    """The library's metrics, in one registry (the default one, or the multiprocess one)."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:  # pragma: no cover - the extra is installed in the suite
            raise ImproperlyConfigured(
                "GQL_PUBSUB['METRICS_PATH'] is set but prometheus-client is not installed: "
                "pip install 'gql_pubsub[metrics]' (or unset METRICS_PATH)."
            ) from None
        self.prom = prom
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = prom.CollectorRegistry(auto_describe=True)

        def gauge(name: str, doc: str, mode: Literal["livesum", "max"] = "livesum") -> Any:
            return prom.Gauge(name, doc, registry=self.registry, multiprocess_mode=mode)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return prom.Counter(name, doc, labels, registry=self.registry)

        self.connections = gauge("gql_pubsub_connections", "Open WebSocket connections.")
        self.operations = gauge("gql_pubsub_operations", "Operations running on them.")
        self.groups = gauge("gql_pubsub_groups", "Fan-out groups (one execution per event).")
        self.group_members = gauge("gql_pubsub_group_members", "Operations served by groups.")
        self.queued_frames = gauge(
            "gql_pubsub_queued_frames", "Frames waiting in the outboxes of slow clients."
        )
        self.outbox_backlog = gauge(
            "gql_pubsub_outbox_backlog", "Outbox rows waiting for the relay.", "max"
        )
        self.events = counter(
            "gql_pubsub_events_received", "Events the broker received and dispatched."
        )
        self.deliveries = counter(
            "gql_pubsub_deliveries", "Frames fan-out groups handed to their subscribers."
        )
        self.closed = counter(
            "gql_pubsub_sockets_closed", "Sockets the server closed, by close code.", ("code",)
        )
        self.overflows = counter(
            "gql_pubsub_subscriber_overflows", "Groups or streams ended for falling behind."
        )
        self.reconnects = counter("gql_pubsub_redis_reconnects", "Redis reconnections.")
        self.publish_seconds = prom.Histogram(
            "gql_pubsub_publish_seconds",
            "Time to publish one event to the broker.",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type (every worker's, in multiprocess mode)."""
        prom = self.prom
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST

    async def sample(self, websocket: Sampled, backlog: Callable[[], Awaitable[int]]) -> None:
        """Set the gauges from what the endpoint holds, and the outbox's ``backlog``, every
        ``METRICS_INTERVAL`` seconds, until cancelled."""
        n = 0
        while True:
            stats = websocket.stats()
            self.connections.set(stats.connections)
            self.operations.set(stats.operations)
            self.groups.set(stats.groups)
            self.group_members.set(stats.group_members)
            self.queued_frames.set(websocket.queued_frames())
            if n % BACKLOG_EVERY == 0:
                with contextlib.suppress(Exception):  # the database may be away: try again
                    self.outbox_backlog.set(await backlog())
            n += 1
            await asyncio.sleep(get_settings().METRICS_INTERVAL)

    def process_ended(self) -> None:
        """In multiprocess mode, drop this worker's live gauges (it is shutting down)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a scrape (``METRICS_TOKEN``, if set, as ``Authorization: Bearer …``)."""
        token = get_settings().METRICS_TOKEN
        if token:
            given = dict(scope.get("headers") or ()).get(b"authorization", b"").decode()
            if not hmac.compare_digest(given, f"Bearer {token}"):
                await _respond(
                    send, 401, b"Unauthorized: send the METRICS_TOKEN as a bearer token\n"
                )
                return
        body, content_type = self.exposition()
        await _respond(send, 200, body, content_type)


async def _respond(send: Send, status: int, body: bytes, content_type: str = "text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


METRICS: Metrics | None = None
"""The process's metrics while enabled (``enable()``), else None: the hot path tests this."""


@contextlib.contextmanager
def timed_publish() -> Iterator[None]:
    """Time one publish into ``gql_pubsub_publish_seconds`` (nothing while metrics are off)."""
    if METRICS is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        METRICS.publish_seconds.observe(time.perf_counter() - start)


def enable() -> Metrics:
    """The process's metrics, created on first use (``METRICS_PATH`` is set)."""
    global METRICS
    if METRICS is None:
        METRICS = Metrics()
    return METRICS
