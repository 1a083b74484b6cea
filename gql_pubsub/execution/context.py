"""What resolvers see as ``info.context``, over HTTP and over the WebSocket alike."""

from __future__ import annotations

import dataclasses
import io
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from strawberry.django.context import StrawberryDjangoContext

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from strawberry.types import Info

    from gql_pubsub.core.asgi_types import Scope


class WebSocketRequest(ASGIRequest):
    """The WebSocket handshake as a Django request: ``headers``, ``META``, ``COOKIES``, ``GET``,
    ``path``, ``session`` and ``user`` work as over HTTP; ``scope`` is the socket's ASGI scope.

    Django's parsing of the handshake (about 2.6 KB a socket) waits for a resolver's first use.
    """

    def __init__(
        self,
        scope: Scope,
        user: AbstractBaseUser | AnonymousUser,
        connection_params: dict[str, Any] | None = None,
    ) -> None:
        self.scope = scope
        self.user = user  # type: ignore[assignment]  # the stubs' user is the configured model
        self.connection_params = connection_params or {}

    def __getattr__(self, name: str) -> Any:  # only for what __init__ has not set
        if self.__dict__.get("_parsed"):
            raise AttributeError(name)
        self.__dict__["_parsed"] = True
        scope, user = self.scope, self.user
        super().__init__({**scope, "method": "GET"}, io.BytesIO())
        self.scope, self.user = scope, user
        if apps.is_installed("django.contrib.sessions"):
            engine = import_module(settings.SESSION_ENGINE)
            self.session = engine.SessionStore(self.COOKIES.get(settings.SESSION_COOKIE_NAME))
        return getattr(self, name)

    async def auser(self) -> Any:  # the stubs' user is the configured model
        """The connection's user (mirrors ``HttpRequest.auser``)."""
        return self.user


class WebSocketResponse(HttpResponse):
    """``info.context.response`` over the WebSocket: there for resolvers written for HTTP, but a
    socket has no response per operation, so what is set on it (cookies, headers) is not sent.

    Django's response state (about 0.9 KB a socket) is made on a resolver's first use.
    """

    def __init__(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # only for what is not set yet
        if self.__dict__.get("_made"):
            raise AttributeError(name)
        self.__dict__["_made"] = True
        already = dict(self.__dict__)  # what was set before (kept: e.g. a status code)
        super().__init__()
        self.__dict__.update(already)
        return getattr(self, name)


@dataclasses.dataclass
class Context(StrawberryDjangoContext):
    """``info.context``: the request (HTTP or WebSocket), its authenticated user, the response."""

    user: AbstractBaseUser | AnonymousUser | None = None
    connection_params: dict[str, Any] | None = None


def get_user(info: Info[Any, Any]) -> AbstractBaseUser | AnonymousUser:
    """The authenticated user of the operation (``AnonymousUser`` when there is none)."""
    context = info.context
    user = getattr(context, "user", None)
    if user is None:
        from django.contrib.auth.models import AnonymousUser

        return AnonymousUser()
    return user  # type: ignore[no-any-return]
