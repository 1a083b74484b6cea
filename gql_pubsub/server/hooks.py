"""What the WebSocket server does when a client connects, starts an operation and ends one:
override a method of ``Hooks`` and pass the instance to ``get_asgi_application(hooks=…)``
(in the spirit of graphql-ws's ``onConnect`` / ``onSubscribe`` / ``onComplete``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gql_pubsub.auth.handshake import origin_allowed, session_user
from gql_pubsub.auth.tokens import TokenRejected, aauthenticate_token
from gql_pubsub.core.db import database_sync_to_async

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    from gql_pubsub.core.asgi_types import Scope
    from gql_pubsub.execution.context import Context
    from gql_pubsub.execution.request import OperationRequest


class OperationRefused(Exception):
    """Raised by ``Hooks.on_subscribe``: the client gets an ``error`` with this message."""


class Hooks:
    """The server's defaults; a subclass overrides what it changes (and may call ``super()``)."""

    async def on_connect(
        self, scope: Scope, payload: dict[str, Any], token: str | None
    ) -> AbstractBaseUser | AnonymousUser:
        """The user of a ``connection_init``; raise ``TokenRejected(reason)`` to close the
        socket with 4403 and ``Forbidden: <reason>``.

        ``token`` is the payload's (``{"token": …}`` or ``{"Authorization": "Bearer …"}``).
        The default checks it with ``TOKEN_AUTH``; with none, it takes the session cookie's
        user on a handshake from a trusted origin.
        """
        if token is not None:
            return await aauthenticate_token(token)
        if origin_allowed(scope, required=True):  # cookies: a browser, of a trusted origin
            user = await database_sync_to_async(session_user)(scope)
            if user is not None:
                return user
        raise TokenRejected("no token in connection_init and no logged-in session")

    async def on_subscribe(self, context: Context, operation: OperationRequest) -> None:
        """Called before ``operation`` starts; raise ``OperationRefused(message)`` to refuse it
        (the default accepts every operation: the schema's resolvers check access)."""

    async def on_complete(self, context: Context, operation: OperationRequest) -> None:
        """Called once when an operation that started ends: completed by the server or the
        client, failed, or its socket closed. An exception here is logged and ignored."""


def completes(hooks: Hooks) -> bool:
    """Whether ``hooks`` has an ``on_complete`` of its own (else a started operation need not
    be remembered until it ends)."""
    return type(hooks).on_complete is not Hooks.on_complete


__all__ = ["Hooks", "OperationRefused"]
