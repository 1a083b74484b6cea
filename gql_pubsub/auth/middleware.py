"""Django middleware: requests with ``Authorization: Bearer <token>`` are the token's user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from gql_pubsub.auth.tokens import (
    TokenRejected,
    aauthenticate_token,
    authenticate_token,
)

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


def _unauthorized(refusal: TokenRejected) -> JsonResponse:
    reason = str(refusal)
    response = JsonResponse(
        {"errors": [{"message": f"{reason[:1].upper()}{reason[1:]}: log in again for a new one."}]},
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def _authenticate_request(request: HttpRequest, user: AbstractBaseUser) -> None:
    async def auser() -> AbstractBaseUser:
        return user

    request.user = user  # type: ignore[assignment]
    request.auser = auser  # type: ignore[assignment]
    request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]  # no cookie, no CSRF


def _bearer(request: HttpRequest) -> str | None:
    """The request's Bearer token ("" for ``Bearer`` with none); None for no header or another
    scheme (Basic, DRF's ``Token``…), which is left to whatever else authenticates it."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def TokenAuthenticationMiddleware(get_response: Any) -> Any:
    """Authenticate ``Authorization: Bearer`` requests; an invalid token gets a 401. Other
    schemes pass through untouched."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            token = _bearer(request)
            if token is not None:
                try:
                    user = await aauthenticate_token(token)
                except TokenRejected as refusal:
                    return _unauthorized(refusal)
                _authenticate_request(request, user)
            response: HttpResponseBase = await get_response(request)
            return response

        markcoroutinefunction(async_middleware)
        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        token = _bearer(request)
        if token is not None:
            try:
                user = authenticate_token(token)
            except TokenRejected as refusal:
                return _unauthorized(refusal)
            _authenticate_request(request, user)
        response: HttpResponseBase = get_response(request)
        return response

    return middleware


TokenAuthenticationMiddleware.sync_capable = True  # type: ignore[attr-defined]
TokenAuthenticationMiddleware.async_capable = True  # type: ignore[attr-defined]
