"""Who a WebSocket handshake comes from: its Origin, and the user of its session cookie."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings as django_settings

from gql_pubsub.conf import get_settings

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from gql_pubsub.core.asgi_types import Scope


def origin_allowed(scope: Scope, *, required: bool) -> bool:
    """Whether the handshake's Origin is this site's own or in ALLOWED_ORIGINS.

    Clients that are not browsers send no Origin: allowed, unless ``required``.
    """
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin-1")
    if not origin:
        return not required
    allowed = get_settings().ALLOWED_ORIGINS
    if origin in allowed or "*" in allowed:
        return True
    return bool(urlsplit(origin).netloc == headers.get(b"host", b"").decode("latin-1"))


def session_user(scope: Scope) -> AbstractBaseUser | None:
    """The user logged in through Django's session cookie on the handshake, if any."""
    from http.cookies import SimpleCookie
    from importlib import import_module
    from types import SimpleNamespace

    from django.contrib.auth import get_user

    cookie_header = dict(scope.get("headers", [])).get(b"cookie", b"").decode("latin-1")
    cookies = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except Exception:
        return None
    morsel = cookies.get(django_settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return None
    engine = import_module(django_settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(morsel.value))
    user = get_user(request)  # type: ignore[arg-type]  # get_user only reads request.session
    if not user.is_authenticated or not user.is_active:
        return None
    return user
