"""The import paths of modules that moved when the package took its layered shape (0.1.0):
each still imports, as the module at its new path, with a DeprecationWarning. They go in
0.2.0."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import Any

REMOVED_IN = "0.2.0"

MOVED = {  # (gql_pubsub.publishing and gql_pubsub.execution are folders now: not here)
    "gql_pubsub.backends": "gql_pubsub.broker.backends",
    "gql_pubsub.backends.base": "gql_pubsub.broker.backends.base",
    "gql_pubsub.backends.memory": "gql_pubsub.broker.backends.memory",
    "gql_pubsub.backends.redis": "gql_pubsub.broker.backends.redis",
    "gql_pubsub.backends.redis_clients": "gql_pubsub.broker.backends.redis.clients",
    "gql_pubsub.backends.redis_cluster": "gql_pubsub.broker.backends.redis.cluster",
    "gql_pubsub.backends.redis_delivery": "gql_pubsub.broker.backends.redis.delivery",
    "gql_pubsub.backends.redis_publisher": "gql_pubsub.broker.backends.redis.publisher",
    "gql_pubsub.backends.redis_pubsub": "gql_pubsub.broker.backends.redis.pubsub",
    "gql_pubsub.backends.redis_scripts": "gql_pubsub.broker.backends.redis.scripts",
    "gql_pubsub.backends.redis_shards": "gql_pubsub.broker.backends.redis.shards",
    "gql_pubsub.connection": "gql_pubsub.transports.websocket.connection",
    "gql_pubsub.context": "gql_pubsub.execution.context",
    "gql_pubsub.control": "gql_pubsub.core.control",
    "gql_pubsub.cursors": "gql_pubsub.broker.cursors",
    "gql_pubsub.db": "gql_pubsub.core.db",
    "gql_pubsub.events": "gql_pubsub.core.events",
    "gql_pubsub.fanout": "gql_pubsub.execution.fanout",
    "gql_pubsub.graphiql": "gql_pubsub.transports.http.graphiql",
    "gql_pubsub.grouping": "gql_pubsub.server.grouping",
    "gql_pubsub.hooks": "gql_pubsub.server.hooks",
    "gql_pubsub.http_streams": "gql_pubsub.transports.http.streams",
    "gql_pubsub.limits": "gql_pubsub.execution.limits",
    "gql_pubsub.listeners": "gql_pubsub.broker.listeners",
    "gql_pubsub.metrics": "gql_pubsub.core.metrics",
    "gql_pubsub.operations": "gql_pubsub.server.operations",
    "gql_pubsub.outbox": "gql_pubsub.transports.websocket.send_buffer",
    "gql_pubsub.outbox_health": "gql_pubsub.publishing.outbox.health",
    "gql_pubsub.outbox_rows": "gql_pubsub.publishing.outbox.rows",
    "gql_pubsub.outbox_write": "gql_pubsub.publishing.outbox.writer",
    "gql_pubsub.policies": "gql_pubsub.auth.policies",
    "gql_pubsub.protocol": "gql_pubsub.transports.websocket.protocol",
    "gql_pubsub.relay": "gql_pubsub.publishing.outbox.forwarder",
    "gql_pubsub.resume": "gql_pubsub.broker.replay",
    "gql_pubsub.splice": "gql_pubsub.execution.splice",
    "gql_pubsub.subscriptions": "gql_pubsub.streams.channels",
    "gql_pubsub.timers": "gql_pubsub.core.timers",
    "gql_pubsub.types": "gql_pubsub.server.peer",
    "gql_pubsub.user_streams": "gql_pubsub.streams.user_streams",
    "gql_pubsub.viewers": "gql_pubsub.execution.viewers",
    "gql_pubsub.views": "gql_pubsub.transports.http.view",
    "gql_pubsub.websocket": "gql_pubsub.transports.websocket.endpoint",
}
"""Old module path: new module path."""


class _Alias(types.ModuleType):
    """The old path: every attribute is the new module's."""

    def __init__(self, name: str, target: types.ModuleType) -> None:
        super().__init__(name, target.__doc__)
        self.__target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__target, name)

    def __dir__(self) -> list[str]:
        return dir(self.__target)


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in ``MOVED`` and loads each as an alias of its new module."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}: import from there "
            f"(the old path goes in gql_pubsub {REMOVED_IN}).",
            DeprecationWarning,
            stacklevel=2,
        )
        return _Alias(spec.name, importlib.import_module(new))

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the alias forwards to the module at the new path."""


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())  # before the path finder: no second copy
