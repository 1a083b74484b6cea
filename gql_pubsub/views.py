"""The GraphQL HTTP view: Strawberry's async Django view with the library's context."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import classonlymethod
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.views import AsyncGraphQLView

from .context import Context


class GraphQLView(AsyncGraphQLView[Context, Any]):
    """Serve queries, mutations and GraphiQL over HTTP; ``info.context.user`` is resolved.

    CSRF is checked only where it matters: for requests authenticated by the session cookie.
    Bearer-token and anonymous requests carry no ambient credentials, so they need no token.
    """

    @classonlymethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return csrf_exempt(super().as_view(**initkwargs))

    async def dispatch(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        user = await request.auser()
        if user.is_authenticated and not getattr(request, "_dont_enforce_csrf_checks", False):
            reason = _csrf_failure(request)
            if reason is not None:
                raise PermissionDenied(
                    f"CSRF check failed ({reason}): send the X-CSRFToken header."
                )
        return await super().dispatch(request, *args, **kwargs)

    async def get_context(self, request: HttpRequest, response: HttpResponse) -> Context:
        return Context(request=request, response=response, user=await request.auser())


def _csrf_failure(request: HttpRequest) -> str | None:
    check = CsrfViewMiddleware(lambda request: HttpResponse())
    check.process_request(request)
    response = check.process_view(request, lambda request: HttpResponse(), (), {})
    if response is None:
        return None
    return getattr(response, "reason_phrase", "rejected")
