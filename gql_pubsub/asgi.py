"""One ASGI application: Django for HTTP, GraphQL over WebSocket, and the broker's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

from gql_pubsub.broker.backends import BrokerUnavailable
from gql_pubsub.broker.process import get_broker
from gql_pubsub.conf import get_settings
from gql_pubsub.core import metrics
from gql_pubsub.core.db import database_sync_to_async
from gql_pubsub.publishing.outbox.forwarder import pending, run_relay
from gql_pubsub.server.hooks import Hooks
from gql_pubsub.server.hub import SCOPE_KEY, Hub
from gql_pubsub.transports.websocket.endpoint import GraphQLWebSocket
from gql_pubsub.transports.websocket.servers import slow_websocket_path

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

    from gql_pubsub.core.asgi_types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("gql_pubsub.asgi")


class GraphQLApplication:
    """Route lifespan to the broker, the GraphQL WebSocket path to us, the rest to Django.

    It is the composition root: it builds the application's :class:`Hub` (engine, fan-out,
    hooks, sessions) and hands it to its WebSocket endpoint, and to the HTTP view through the
    request's scope (``scope["gql_pubsub.hub"]``), so both transports serve one set of rules.
    """

    def __init__(
        self,
        schema: BaseSchema,
        django_app: ASGIApp,
        *,
        path: str | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        settings = get_settings()
        self.path = path or settings.GRAPHQL_PATH
        self.django_app = django_app
        self.hub = Hub(schema, hooks)
        self.websocket = GraphQLWebSocket(schema, hub=self.hub)
        self.metrics_path = settings.METRICS_PATH
        self.metrics = metrics.enable() if self.metrics_path else None

    # Not mutated: mutmut's wrapper would not raise TypeError when uvicorn probes the app by
    # calling it with no arguments (to detect a factory).
    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:  # pragma: no mutate block
        kind = scope["type"]
        if kind == "http":
            if self.metrics is not None and scope["path"] == self.metrics_path:
                await self.metrics.serve(scope, receive, send)
                return
            scope[SCOPE_KEY] = self.hub  # for the HTTP view: the same sessions and groups
            await self.django_app(scope, receive, send)
        elif kind == "websocket":
            if scope["path"].rstrip("/") == self.path.rstrip("/"):
                await self.websocket(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1000})  # HTTP 403 to the handshake
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        stop_relay = asyncio.Event()
        relay: asyncio.Task[None] | None = None
        sampler: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await _check_configuration()
                except ImproperlyConfigured as error:  # the server logs the message
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                try:
                    broker = get_broker()  # its backend's modules imported before the freeze
                    _tune_gc()
                    await broker.hold()  # started; stopped when no application holds it
                except BrokerUnavailable as error:  # says where and what to do; the server logs it
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                except Exception as error:
                    logger.exception("gql_pubsub could not start its broker")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                relay = asyncio.create_task(run_relay(stop_relay), name="gql_pubsub relay")
                if self.metrics is not None:
                    backlog = database_sync_to_async(pending)
                    sample = self.metrics.sample(self.websocket, backlog)
                    sampler = asyncio.create_task(sample, name="gql_pubsub metrics")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stop_relay.set()
                if relay is not None:
                    await relay
                if sampler is not None:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
                if self.metrics is not None:
                    self.metrics.process_ended()
                await get_broker().release()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _check_configuration() -> None:
    """Refuse to serve what ``manage.py check`` refuses (a forgeable secret with DEBUG off); warn
    of what it warns of, and of a WebSocket path measured slower than uvicorn's default."""
    from gql_pubsub.checks import check_before_serving  # needs Django's apps: imported late

    for message in await database_sync_to_async(check_before_serving)():
        logger.warning("%s", message)
    slow = slow_websocket_path()
    if slow is not None:
        logger.warning("%s", slow)


def _tune_gc() -> None:
    """Keep the cyclic collector's full passes rare and short: they stall every socket."""
    settings = get_settings()
    if settings.GC_FREEZE_ON_STARTUP:
        # Everything imported so far lives as long as the process: keep it out of full passes,
        # which otherwise took 50-120 ms with 1,000 sockets (measured, rooms benchmark).
        gc.collect()
        gc.freeze()
    if settings.GC_THRESHOLD is not None:
        # Per delivery a few short-lived containers are made; Python's default (700, 10, 10)
        # then runs a full pass every few seconds under load.
        gc.set_threshold(*settings.GC_THRESHOLD)


def get_asgi_application(
    schema: BaseSchema | str, *, path: str | None = None, hooks: Hooks | None = None
) -> GraphQLApplication:
    """Build the project's ASGI app (call it in ``asgi.py`` instead of Django's).

    ``schema`` may be a dotted path (``"myproject.schema.schema"``), imported after Django is
    set up so that the schema's model types can load. ``hooks`` (a ``gql_pubsub.hooks.Hooks``)
    changes what the socket does on connect, subscribe and complete. With ``DEBUG`` on and
    ``django.contrib.staticfiles`` installed, ``STATIC_URL`` is served from the apps' static
    directories, as ``runserver`` does; in production, serve static files with ServeStatic's
    async middleware (or a web server or CDN).
    """
    from django.apps import apps
    from django.conf import settings
    from django.core.asgi import get_asgi_application as django_asgi_application
    from django.utils.module_loading import import_string

    handler = django_asgi_application()  # sets Django up
    if settings.DEBUG and apps.is_installed("django.contrib.staticfiles"):
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        handler = ASGIStaticFilesHandler(handler)
    django_app: ASGIApp = handler  # type: ignore[assignment]
    resolved: BaseSchema = import_string(schema) if isinstance(schema, str) else schema
    return GraphQLApplication(resolved, django_app, path=path, hooks=hooks)
