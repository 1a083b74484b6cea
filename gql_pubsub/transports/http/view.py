"""The GraphQL HTTP view: Strawberry's async Django view with the library's context."""

from __future__ import annotations

from typing import Any, Literal, cast

from cross_web import HTTPException
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils.decorators import classonlymethod
from django.views.decorators.csrf import csrf_exempt
from graphql import OperationType, get_operation_ast
from strawberry.django.views import AsyncGraphQLView
from strawberry.http import GraphQLRequestData
from strawberry.http.ides import GraphQL_IDE
from strawberry.schema import BaseSchema
from strawberry.types import ExecutionResult

from gql_pubsub.conf import get_settings
from gql_pubsub.execution.context import Context
from gql_pubsub.server.hooks import Hooks
from gql_pubsub.server.hub import SCOPE_KEY, Hub
from gql_pubsub.transports.http.graphiql import graphiql_page
from gql_pubsub.transports.http.streams import stream_response

SUBSCRIPTION_OVER_HTTP = (
    "Subscriptions are served over WebSocket (the graphql-transport-ws protocol, e.g. the "
    "graphql-ws client) at this path, or over HTTP as a stream: send Accept: "
    'multipart/mixed;subscriptionSpec="1.0" (Apollo Client) or text/event-stream (graphql-sse).'
)


class GraphQLView(AsyncGraphQLView[Context, Any]):
    """Serve queries, mutations and GraphiQL over HTTP; ``info.context.user`` is resolved.

    CSRF is checked only where it matters: for requests authenticated by the session cookie.
    Bearer-token and anonymous requests carry no ambient credentials, so they need no token.
    GraphiQL and introspection follow the ``GRAPHIQL`` and ``INTROSPECTION`` settings (by
    default: on with ``DEBUG``, off without); ``graphql_ide=`` given to ``as_view`` wins.
    """

    def __init__(
        self,
        schema: BaseSchema,
        graphql_ide: GraphQL_IDE | Literal["from settings"] | None = "from settings",
        **kwargs: Any,
    ) -> None:
        if graphql_ide == "from settings":
            graphql_ide = "graphiql" if get_settings().graphiql else None
        super().__init__(schema, graphql_ide=graphql_ide, **kwargs)

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        """GraphiQL from the package's own static files (no CDN), unless the project overrides
        the ``graphql/graphiql.html`` template or asked for another IDE."""
        if self.graphql_ide != "graphiql":
            return await super().render_graphql_ide(request)
        try:
            content: str = render_to_string("graphql/graphiql.html", request=request)
        except TemplateDoesNotExist:
            content = graphiql_page()
        return HttpResponse(content)

    hooks: Hooks | None = None
    """What a stream over HTTP does on connect, subscribe and complete (``as_view(hooks=…)``);
    without it, the application's (``get_asgi_application(hooks=…)``), as on its sockets."""

    own_hub: OwnHub | None = None
    """The view's hub where no application hands it one (set by ``as_view``)."""

    @classonlymethod
    def as_view(cls, **initkwargs: Any) -> Any:
        initkwargs.setdefault("own_hub", OwnHub())
        return csrf_exempt(super().as_view(**initkwargs))

    def hub(self, request: HttpRequest) -> Hub:
        """The application's hub, for its schema (the same sessions, engine and groups as its
        sockets); else the view's own (Django's test client, WSGI, another schema)."""
        scope = getattr(request, "scope", None)
        hub = scope.get(SCOPE_KEY) if scope is not None else None
        if isinstance(hub, Hub) and hub.schema is self.schema:
            return hub
        if self.own_hub is None:  # a view made without as_view: one hub for its requests
            self.own_hub = OwnHub()
        return self.own_hub.get(self.schema, self.hooks)

    async def dispatch(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        user = await request.auser()
        if user.is_authenticated and not getattr(request, "_dont_enforce_csrf_checks", False):
            reason = _csrf_failure(request)
            if reason is not None:  # a GraphQL-shaped answer: Django's 403 page drops the text
                message = (
                    f"CSRF check failed: {reason} "
                    "Send the X-CSRFToken header (the csrftoken cookie's value)."
                )
                return JsonResponse({"errors": [{"message": message}]}, status=403)
        hub = self.hub(request)
        streamed = await stream_response(hub, self.hooks or hub.hooks, request, user)
        if streamed is not None:  # a subscription over HTTP (multipart, graphql-sse)
            return streamed
        return await super().dispatch(request, *args, **kwargs)

    async def get_context(self, request: HttpRequest, response: HttpResponse) -> Context:
        return Context(request=request, response=response, user=await request.auser())

    async def execute_operation(  # type: ignore[override]
        self, *, request_data: GraphQLRequestData | list[GraphQLRequestData], **kwargs: Any
    ) -> Any:
        """Refuse what this endpoint does not run, before Strawberry runs it.

        A subscription in a plain request would run as a query (a null-field error and a
        traceback); introspection is a validation error when ``INTROSPECTION`` is off.
        """
        batch = request_data if isinstance(request_data, list) else [request_data]
        request: HttpRequest = kwargs["request"]
        sub_response: HttpResponse = kwargs["sub_response"]
        negotiated = not isinstance(request_data, list) and _wants_graphql_response(request)
        if negotiated:
            sub_response["Content-Type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
        result = await self._refuse_or_execute(batch, request_data, kwargs)
        if negotiated and _is_request_error(result):
            # The request was not executed (syntax, validation, variables): 400, and no data.
            sub_response.status_code = 400
            request._gql_pubsub_request_error = True  # type: ignore[attr-defined]
        return result

    async def process_result(self, request: HttpRequest, result: Any) -> Any:
        processed = await super().process_result(request, result)
        if getattr(request, "_gql_pubsub_request_error", False):
            processed.pop("data", None)
        return processed

    async def _refuse_or_execute(
        self,
        batch: list[GraphQLRequestData],
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        kwargs: dict[str, Any],
    ) -> Any:
        engine = self.hub(kwargs["request"]).engine
        for data in batch:
            if not data.query:
                continue  # Strawberry answers a request without a query itself
            document = engine.prepare(data.query)
            if isinstance(document, list):  # the socket's rules, limits and error processing
                engine.report(document)
                if len(batch) > 1:
                    raise HTTPException(400, document[0].message)
                return ExecutionResult(data=None, errors=document)
            operation = get_operation_ast(document, data.operation_name)
            kind = operation.operation if operation is not None else None
            if kind is OperationType.SUBSCRIPTION:  # streams were served before this point
                raise HTTPException(400, SUBSCRIPTION_OVER_HTTP)
        return await super().execute_operation(request_data=request_data, **kwargs)


GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
"""The GraphQL-over-HTTP media type: request errors get 400 and no ``data`` under it."""


def _wants_graphql_response(request: HttpRequest) -> bool:
    """Whether ``Accept`` prefers application/graphql-response+json to application/json (which
    wins ties: ``*/*``, no header)."""
    preferred = request.get_preferred_type(["application/json", GRAPHQL_RESPONSE_JSON])
    return preferred == GRAPHQL_RESPONSE_JSON


def _is_request_error(result: Any) -> bool:
    """Whether ``result`` refused the request before execution: no data, and errors none of
    which has a path (parse, validation and variable errors have none; field errors do)."""
    errors = getattr(result, "errors", None) or ()
    return (
        getattr(result, "data", None) is None
        and bool(errors)
        and all(getattr(error, "path", None) is None for error in errors)
    )


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering with its reason instead of a 403 page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    """Why Django's CSRF check refuses ``request`` (e.g. "CSRF token missing."), or None."""
    check = _CsrfCheck(lambda request: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, lambda request: HttpResponse(), (), {})
    return cast("str | None", reason)  # our _reject's reason, or None: the check passed


class OwnHub:
    """A view's own hub, built at its first use."""

    __slots__ = ("_hub",)

    def __init__(self) -> None:
        self._hub: Hub | None = None

    def get(self, schema: BaseSchema, hooks: Hooks | None) -> Hub:
        """The hub (built now, the first time)."""
        if self._hub is None or self._hub.schema is not schema:
            self._hub = Hub(schema, hooks)
        return self._hub
