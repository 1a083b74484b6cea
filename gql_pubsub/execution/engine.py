"""The one execution engine of the WebSocket side: with ``splice`` and ``plans``, the only
modules that reach into graphql-core's executor and Strawberry's private schema.

It parses and validates a document once per distinct text (for HTTP and WebSocket alike, with
the same rules and the same error processing as Strawberry's pipeline), builds an operation's
executor with the schema's executor class, starts its source stream, executes one event's
selection set, and encodes the result once. Operations it does not run itself (queries,
mutations, and everything of a schema with extensions or custom directives) go through
Strawberry's own pipeline, ``Engine.stream``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Collection
from typing import TYPE_CHECKING, Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
    OperationType,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution import (
    Executor,
    create_source_event_stream,
    execute_subscription_event,
    map_source_to_response_event,
)
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from gql_pubsub.conf import get_settings
from gql_pubsub.execution.executors import per_event_executor_class
from gql_pubsub.execution.limits import operation_limits_rule
from gql_pubsub.execution.plans import encode_planned
from gql_pubsub.execution.results import Errors, encode_result
from gql_pubsub.execution.splice import Body, executor_with_holes, template
from gql_pubsub.execution.viewers import PerViewer, per_viewer_fields

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

    from gql_pubsub.execution.request import OperationRequest

MAX_TOKENS = 10_000
"""Tokens a document may have: parsing stops there (a cheap guard before validation)."""

DOCUMENT_CACHE_SIZE = 1024
"""Distinct document texts an engine keeps parsed and validated."""

"""GraphQL errors, formatted for the wire."""


def validation_rules() -> list[type[ASTValidationRule]]:
    """The rules of every document, over HTTP and WebSocket: GraphQL's, Strawberry's own (OneOf
    inputs, ``Maybe``), ``MAX_QUERY_DEPTH``/``MAX_QUERY_FIELDS``, and ``INTROSPECTION``."""
    settings = get_settings()
    return [
        *specified_rules,
        MaybeNullValidationRule,
        OneOfInputValidationRule,
        operation_limits_rule(settings.MAX_QUERY_DEPTH, settings.MAX_QUERY_FIELDS),
        *(() if settings.introspection else (NoSchemaIntrospectionCustomRule,)),
    ]


class Engine:
    """Runs a schema's operations: validation for both transports, execution for WebSocket."""

    def __init__(
        self, schema: BaseSchema, rules: Collection[type[ASTValidationRule]], cache_size: int
    ) -> None:
        self.schema = schema
        self.graphql_schema = schema._schema  # type: ignore[attr-defined]
        self.executor_class = per_event_executor_class(
            getattr(schema, "execution_context_class", None) or Executor
        )
        if hasattr(schema, "execution_context_class"):  # Strawberry's pipeline builds it too
            schema.execution_context_class = self.executor_class
        self.rules = list(rules)
        self.per_subscriber_reason = _per_subscriber_reason(schema)
        """Why this schema's subscriptions cannot be grouped (None: they can)."""
        self.grouping = self.per_subscriber_reason is None
        self._viewing: dict[tuple[str, str | None], tuple[DocumentNode, PerViewer | None]] = {}
        self._cache_size = cache_size
        self.prepare = functools.lru_cache(maxsize=cache_size)(self._prepare)
        """The document of a text, parsed and validated once while cached; or its errors (not
        yet reported: see :meth:`report`)."""

    def _prepare(self, query: str) -> DocumentNode | list[GraphQLError]:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            return [error]
        errors = validate(self.graphql_schema, document, self.rules)
        return errors or document

    def viewing(self, op: OperationRequest, document: DocumentNode) -> PerViewer | None:
        """The fields of the operation whose values can depend on its viewer (see ``viewers``;
        empty: none, so subscribers of any users share its results; None: it runs per
        viewer): found once per document while cached."""
        if not get_settings().SHARE_WHEN_SAFE:
            return None
        key = (op.query, op.operation_name)
        known = self._viewing.get(key)
        if known is None or known[0] is not document:  # nodes are known by id: this document's
            if len(self._viewing) >= self._cache_size:
                self._viewing.clear()
            known = self._viewing[key] = (
                document,
                per_viewer_fields(self.graphql_schema, document, op.operation_name),
            )
        return known[1]

    def report(self, errors: list[GraphQLError]) -> Errors:
        """Errors for the wire, after the schema's own error processing (its log, and
        ``disable_field_suggestions``), as Strawberry's pipeline does for every error."""
        process = getattr(self.schema, "_process_errors", None) or self.schema.process_errors
        process(errors)
        return [error.formatted for error in errors]

    def groupable(self, document: DocumentNode, operation_name: str | None) -> bool:
        """Whether the operation is a subscription this engine runs itself (else Strawberry)."""
        operation = get_operation_ast(document, operation_name)
        return (
            self.grouping
            and operation is not None
            and operation.operation is OperationType.SUBSCRIPTION
        )

    def build(
        self,
        document: DocumentNode,
        context: Any,
        op: OperationRequest,
        per_viewer: PerViewer | None = None,
    ) -> Executor[Any] | Errors:
        """The operation's executor, or the errors of its variables and operation name; with
        ``per_viewer``, one that leaves those fields as holes (see ``splice``)."""
        # Strawberry's executor class takes the operation's extensions (info.input_extensions).
        custom: dict[str, Any] = {}
        if self.executor_class is not Executor:
            custom["operation_extensions"] = op.extensions
        executor_class = self.executor_class
        if per_viewer:
            executor_class = executor_with_holes(executor_class)
        executor = executor_class.build(
            self.graphql_schema,
            document,
            context_value=context,
            raw_variable_values=op.variables,
            operation_name=op.operation_name,
            **custom,
        )
        if isinstance(executor, list):
            return self.report(executor)
        if per_viewer:
            executor.per_viewer = per_viewer  # type: ignore[attr-defined]
        return executor

    def anonymous_executor(
        self, document: DocumentNode, op: OperationRequest, per_viewer: PerViewer | None = None
    ) -> Executor[Any]:
        """The executor of a shared group: nobody's user, so no result can depend on one
        (``per_viewer`` fields are left as holes, for each member to fill)."""
        from django.contrib.auth.models import AnonymousUser

        from gql_pubsub.execution.context import Context, WebSocketRequest, WebSocketResponse

        # Nobody's handshake either: a request with the path only (no headers, cookies, client).
        scope = {"type": "websocket", "path": get_settings().GRAPHQL_PATH, "headers": []}
        user = AnonymousUser()
        context = Context(
            request=WebSocketRequest(scope, user),
            response=WebSocketResponse(),
            user=user,
            connection_params={},
        )
        executor = self.build(document, context, op, per_viewer)
        assert isinstance(executor, Executor)  # the same arguments built one for the first member
        return executor

    async def source(self, executor: Executor[Any]) -> AsyncIterable[Any] | Errors:
        """Run the subscription's resolver: the stream it returned, or its errors."""
        created = create_source_event_stream(executor)
        source: AsyncIterable[Any] | ExecutionResult = (
            await created if executor.is_awaitable(created) else created  # type: ignore[assignment]
        )
        if isinstance(source, ExecutionResult):
            return self.report(list(source.errors or ()))
        return source

    def results(self, executor: Executor[Any], source: AsyncIterable[Any]) -> Any:
        """The results of a stream that no group serves, one execution per event."""
        return map_source_to_response_event(executor, source)

    async def stream(self, op: OperationRequest, context: Any) -> Any:
        """Run ``op`` through Strawberry's own pipeline: an async iterator of its results."""
        return await self.schema.stream(
            op.query,
            variable_values=op.variables,
            context_value=context,
            operation_name=op.operation_name,
        )

    async def execute_event(self, executor: Executor[Any], root: Any) -> str:
        """Execute the operation's selection set on one event's root value; the encoded
        payload. Its errors go through the schema's error processing, once per execution."""
        encoded = encode_planned(executor, root)
        if encoded is not None:
            return encoded
        result = execute_subscription_event(executor.build_per_event_executor(root))
        if executor.is_awaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        if result.errors:
            self.report(list(result.errors))
        return encode_result(result)

    async def execute_body(self, executor: Executor[Any], root: Any) -> str:
        """Like :meth:`execute_event`, without the payload's closing brace: a cursor follows.

        (graphql-core's execution, which groups use, never sets a result's extensions.)
        """
        return (await self.execute_event(executor, root))[:-1]

    async def execute_template(self, executor: Executor[Any], root: Any) -> Body:
        """Execute with an executor that leaves holes: the payload without its closing brace,
        or the :class:`~gql_pubsub.splice.Template` each member fills."""
        event_executor: Any = executor.build_per_event_executor(root)
        result = execute_subscription_event(event_executor)
        if executor.is_awaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        # With errors every member executes it all (and its errors are reported then).
        encoded = "" if result.errors else encode_result(result)[:-1]
        return template(result, encoded, event_executor)


def _per_subscriber_reason(schema: BaseSchema) -> str | None:
    """What makes every subscription of ``schema`` run through Strawberry's per-subscriber
    pipeline (its extensions and custom directives run there only), if anything does."""
    extensions = getattr(schema, "extensions", ())
    directives = getattr(schema, "directives", ())
    names = [
        *(f"extension {getattr(e, '__name__', type(e).__name__)}" for e in extensions),
        *(f"directive {getattr(d, 'graphql_name', None) or d.python_name}" for d in directives),
    ]
    return ", ".join(names) or None
