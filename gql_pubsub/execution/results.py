"""An operation's results as graphql-transport-ws carries them: a ``next`` payload encoded
once, or the errors that refuse the whole operation."""

from __future__ import annotations

from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLFormattedError
from strawberry.types.execution import ExecutionResult as StrawberryResult
from strawberry.types.execution import PreExecutionError

Errors = list[GraphQLFormattedError]


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
