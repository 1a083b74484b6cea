"""The one execution engine of the WebSocket side: the only module that reaches into
graphql-core's executor and Strawberry's private schema.

It parses and validates a document once per distinct text, builds an operation's executor,
starts its source stream, executes one event's selection set, and encodes the result once.
Operations it does not run itself (queries, mutations, and everything of a schema with
extensions or custom directives) go through Strawberry's own pipeline, ``Engine.stream``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, Collection
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLFormattedError,
    OperationType,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution import (
    Executor,
    create_source_event_stream,
    execute_subscription_event,
    map_source_to_response_event,
)
from strawberry.types.execution import ExecutionResult as StrawberryResult
from strawberry.types.execution import PreExecutionError

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

    from .protocol import Subscribe

logger = logging.getLogger("gql_pubsub.execution")

MAX_TOKENS = 10_000
"""Tokens a document may have: parsing stops there (a cheap guard before validation)."""

Errors = list[GraphQLFormattedError]
"""GraphQL errors, formatted for the wire."""


class Engine:
    """Runs a schema's operations for the WebSocket endpoint."""

    def __init__(
        self, schema: BaseSchema, rules: Collection[type[ASTValidationRule]], cache_size: int
    ) -> None:
        self.schema = schema
        self.graphql_schema = schema._schema  # type: ignore[attr-defined]
        self.rules = list(rules)
        # Grouped execution runs graphql-core directly; Strawberry extensions and custom
        # directives need Strawberry's own pipeline, so such schemas keep it for everything.
        self.grouping = not getattr(schema, "extensions", ()) and not getattr(
            schema, "directives", ()
        )
        self.prepare = functools.lru_cache(maxsize=cache_size)(self._prepare)
        """The document of a text, parsed and validated once while cached; or its errors."""

    def _prepare(self, query: str) -> DocumentNode | list[GraphQLError]:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            return [error]
        errors = validate(self.graphql_schema, document, self.rules)
        return errors or document

    def groupable(self, document: DocumentNode, operation_name: str | None) -> bool:
        """Whether the operation is a subscription this engine runs itself (else Strawberry)."""
        operation = get_operation_ast(document, operation_name)
        return (
            self.grouping
            and operation is not None
            and operation.operation is OperationType.SUBSCRIPTION
        )

    def build(self, document: DocumentNode, context: Any, op: Subscribe) -> Executor[Any] | Errors:
        """The operation's executor, or the errors of its variables and operation name."""
        executor = Executor.build(
            self.graphql_schema,
            document,
            context_value=context,
            raw_variable_values=op.variables,
            operation_name=op.operation_name,
        )
        if isinstance(executor, list):
            return [error.formatted for error in executor]
        return executor

    async def source(self, executor: Executor[Any]) -> AsyncIterable[Any] | Errors:
        """Run the subscription's resolver: the stream it returned, or its errors."""
        created = create_source_event_stream(executor)
        source: AsyncIterable[Any] | ExecutionResult = (
            await created if executor.is_awaitable(created) else created  # type: ignore[assignment]
        )
        if isinstance(source, ExecutionResult):
            return [error.formatted for error in source.errors or ()]
        return source

    def results(self, executor: Executor[Any], source: AsyncIterable[Any]) -> Any:
        """The results of a stream that no group serves, one execution per event."""
        return map_source_to_response_event(executor, source)

    async def stream(self, op: Subscribe, context: Any) -> Any:
        """Run ``op`` through Strawberry's own pipeline: an async iterator of its results."""
        return await self.schema.stream(
            op.query,
            variable_values=op.variables,
            context_value=context,
            operation_name=op.operation_name,
        )


def refused(result: Any) -> Errors | None:
    """The errors of a result that refuses the whole operation (Strawberry's pre-execution)."""
    if isinstance(result, PreExecutionError):
        return [error.formatted for error in result.errors or ()]
    return None


def payload_of(result: Any) -> str | None:
    """A result's encoded ``next`` payload; None for frames graphql-transport-ws cannot carry
    (incremental delivery's)."""
    if not isinstance(result, ExecutionResult | StrawberryResult):
        return None
    return encode_result(result)  # type: ignore[arg-type]


def encode_result(result: ExecutionResult) -> str:
    """The ``payload`` of a ``next`` message, encoded once."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return orjson.dumps(payload).decode()


async def execute_event(executor: Executor[Any], root: Any) -> str:
    """Execute the operation's selection set on one event's root value; the encoded payload."""
    result = execute_subscription_event(executor.build_per_event_executor(root))
    if executor.is_awaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    for error in result.errors or ():
        if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
            logger.warning("Subscription field %s raised %r", error.path, error.original_error)
    return encode_result(result)


async def execute_body(executor: Executor[Any], root: Any) -> str:
    """Like :func:`execute_event`, without the payload's closing brace: a cursor follows.

    (graphql-core's execution, which groups use, never sets a result's extensions.)
    """
    return (await execute_event(executor, root))[:-1]
