"""Token authentication: which user a token names (JWT by default, DRF tokens optionally)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import jwt
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from gql_pubsub.conf import get_settings
from gql_pubsub.core.db import database_sync_to_async

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

TokenAuth = Callable[[str], "AbstractBaseUser | Awaitable[AbstractBaseUser | None] | None"]
"""The ``TOKEN_AUTH`` contract: a token in, an active user out; sync or ``async def``.

Refuse a token by raising ``TokenRejected("why")`` (or by returning None: "invalid token").
"""


class TokenRejected(Exception):
    """A token names no user; the message says why (never the token itself).

    The reason reaches the client (HTTP 401 body, WebSocket close reason) and the server's log;
    ``fix``, if given, only the log (a close reason holds 123 bytes).
    """

    def __init__(self, *args: object, fix: str | None = None) -> None:
        super().__init__(*args)
        self.fix = fix


_JWT_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidIssuedAtError, "token malformed: bad iat claim"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm not accepted"),
    (jwt.DecodeError, "token malformed"),
)
_NUMERIC_DATES = ("exp", "nbf", "iat")


def create_jwt(user: AbstractBaseUser, *, lifetime: float | None = None) -> str:
    """Sign a JWT naming ``user``, valid for ``lifetime`` seconds (``JWT_LIFETIME``)."""
    settings = get_settings()
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user.pk),
        "iat": now,
        "nbf": now,
        "exp": now + int(lifetime if lifetime is not None else settings.JWT_LIFETIME),
    }
    if settings.JWT_AUDIENCE:
        claims["aud"] = settings.JWT_AUDIENCE
    if settings.JWT_ISSUER:
        claims["iss"] = settings.JWT_ISSUER
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.JWT_ALGORITHMS[0])


def jwt_user(token: str) -> AbstractBaseUser:
    """The active user a valid JWT names; raises ``TokenRejected`` saying why not."""
    settings = get_settings()
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=list(settings.JWT_ALGORITHMS),
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            leeway=settings.JWT_LEEWAY,
            options={"require": ["exp", "sub"]},
        )
    except jwt.MissingRequiredClaimError as error:
        raise TokenRejected(f"token lacks the {error.claim!r} claim") from None
    except jwt.InvalidTokenError as error:
        reason = next((r for kind, r in _JWT_REFUSALS if isinstance(error, kind)), None)
        raise TokenRejected(reason or "token invalid") from None
    for claim in _NUMERIC_DATES:
        # RFC 7519 dates are JSON numbers. PyJWT also takes "123" for exp; the socket's expiry
        # timer reads the same claims, so a string date is refused here rather than ignored there.
        if claim in claims and not _is_number(claims[claim]):
            raise TokenRejected(f"token malformed: {claim} must be a number")
    return _active_user(claims["sub"])


def jwt_expiry(token: str) -> float | None:
    """When an (already verified) JWT expires, as a Unix time; None if it never does.

    A token that is no JWT (a DRF token, say) has no expiry here; a JWT whose ``exp`` is no
    number expires at once rather than never.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    expires = claims.get("exp")
    if expires is None:
        return None
    return float(expires) if _is_number(expires) else 0.0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def token_expiry(token: str) -> float | None:
    """When ``token`` stops being valid, by the ``TOKEN_EXPIRY`` function (None: never)."""
    path = get_settings().TOKEN_EXPIRY
    if not path:
        return None
    function: Callable[[str], float | None] = import_string(path)
    return function(token)


def drf_token_user(token: str) -> AbstractBaseUser:
    """The active user of a Django REST framework ``Token``; raises ``TokenRejected``."""
    try:
        from rest_framework.authtoken.models import Token
    except ImportError as error:  # pragma: no cover - depends on the project
        raise ImportError(
            "TOKEN_AUTH 'gql_pubsub.auth.drf_token_user' needs djangorestframework with "
            "'rest_framework.authtoken' in INSTALLED_APPS."
        ) from error
    found = Token.objects.select_related("user").filter(key=token).first()
    if found is None:
        raise TokenRejected("unknown token")
    user: AbstractBaseUser = found.user
    if not user.is_active:
        raise TokenRejected("user deactivated")
    return user


def _active_user(pk: Any) -> AbstractBaseUser:
    user_model = get_user_model()
    try:
        user: AbstractBaseUser | None = user_model._default_manager.filter(pk=pk).first()
    except (ValueError, TypeError, ValidationError):
        user = None
    if user is None:
        raise TokenRejected("unknown user")
    if not user.is_active:
        raise TokenRejected("user deactivated")
    return user


@cache
def _token_auth(path: str) -> TokenAuth:
    function: TokenAuth = import_string(path)
    return function


def authenticate_token(token: str) -> AbstractBaseUser:
    """The user of a token by the ``TOKEN_AUTH`` function, from sync code; or ``TokenRejected``."""
    if not token:
        raise TokenRejected("missing token")
    function = _token_auth(get_settings().TOKEN_AUTH)
    if iscoroutinefunction(function):
        return _accepted(async_to_sync(function)(token))
    return _accepted(function(token))


async def aauthenticate_token(token: str) -> AbstractBaseUser:
    """The user of a token by the ``TOKEN_AUTH`` function, from async code; or ``TokenRejected``.

    An ``async def`` function is awaited in place; a sync one runs in a thread (it may query
    the database), which costs about 0.1 ms per call.
    """
    if not token:
        raise TokenRejected("missing token")
    function = _token_auth(get_settings().TOKEN_AUTH)
    if iscoroutinefunction(function):
        return _accepted(await function(token))
    return _accepted(await database_sync_to_async(function)(token))


def _accepted(user: Any) -> AbstractBaseUser:
    if user is None:
        raise TokenRejected("invalid token")
    return user  # type: ignore[no-any-return]


def token_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_from_connection_params(params: dict[str, Any]) -> str | None:
    """The token of a ``connection_init`` payload: ``{"token": t}`` or ``{"Authorization": …}``."""
    token = params.get("token")
    if isinstance(token, str) and token:
        return token
    for key, value in params.items():
        if key.lower() == "authorization" and isinstance(value, str):
            return token_from_header(value)
    headers = params.get("headers")
    if isinstance(headers, dict):
        return token_from_connection_params({k: v for k, v in headers.items() if k != "headers"})
    return None
