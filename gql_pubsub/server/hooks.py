"""What the server does when a client connects, starts an operation and ends one, over
WebSocket and HTTP streams alike: override a method of ``Hooks`` and pass the instance to
``get_asgi_application(hooks=…)`` (in the spirit of graphql-ws's ``onConnect`` /
``onSubscribe`` / ``onComplete``)."""

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


NO_TOKEN_FIX = (
    'send {"token": "<token>"} or {"Authorization": "Bearer <token>"} in connection_init '
    "(`python manage.py gql_pubsub_token <username>` prints one), or connect from a page of "
    "this site (or of ALLOWED_ORIGINS) whose user is logged in"
)
"""How to fix a socket refused for want of a token (said in the server's log)."""


class OperationRefused(Exception):
    """Raised by ``Hooks.on_subscribe``: the client gets an ``error`` with this message."""


class Hooks:
    """The server's defaults; a subclass overrides what it changes (and may call ``super()``)."""

    async def on_connect(
        self, scope: Scope, payload: dict[str, Any], token: str | None
    ) -> AbstractBaseUser | AnonymousUser:
        """The user of a new connection; raise ``TokenRejected(reason)`` to refuse it with
        ``Forbidden: <reason>`` (a socket is closed with 4403, an HTTP stream answered 403).

        On a socket it is called with ``connection_init``'s payload, and ``token`` is the
        payload's (``{"token": …}`` or ``{"Authorization": "Bearer …"}``). For a subscription
        over HTTP (multipart, graphql-sse) the payload is empty, ``token`` is the
        ``Authorization`` header's, and ``scope["user"]`` is the request's user (its session's,
        or its bearer token's: the view has checked CSRF). The default takes that user over
        HTTP; on a socket, it checks the token with ``TOKEN_AUTH`` or, with none, takes the
        session cookie's user on a handshake from a trusted origin.
        """
        if scope.get("type") == "http":
            user = scope.get("user")
            if user is not None and user.is_authenticated:
                return user  # type: ignore[no-any-return]
            raise TokenRejected("no user: send Authorization: Bearer <token>, or log in")
        if token is not None:
            return await aauthenticate_token(token)
        if origin_allowed(scope, required=True):  # cookies: a browser, of a trusted origin
            user = await database_sync_to_async(session_user)(scope)
            if user is not None:
                return user
        raise TokenRejected(
            "no token in connection_init and no logged-in session", fix=NO_TOKEN_FIX
        )

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
