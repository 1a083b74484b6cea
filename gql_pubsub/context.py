"""What resolvers see as ``info.context``, over HTTP and over the WebSocket alike."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from strawberry.django.context import StrawberryDjangoContext

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from strawberry.types import Info


@dataclasses.dataclass
class WebSocketRequest:
    """The WebSocket handshake as a request-like object (``request.user`` works as in Django)."""

    scope: dict[str, Any]
    user: AbstractBaseUser | AnonymousUser
    connection_params: dict[str, Any]

    async def auser(self) -> AbstractBaseUser | AnonymousUser:
        """The connection's user (mirrors ``HttpRequest.auser``)."""
        return self.user

    @property
    def headers(self) -> dict[str, str]:
        """The handshake's headers, lower-cased names."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope.get("headers", [])}


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
