"""What a client asks for: one GraphQL operation, the same over every transport."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson


@dataclasses.dataclass(frozen=True, slots=True)
class OperationRequest:
    """One GraphQL operation a client asked for, whatever its transport: ``id`` names it on its
    connection."""

    id: str
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None

    def key(self) -> tuple[str, str, str | None]:
        """What makes two operations the same: document text, variables (key order aside),
        operation name."""
        # As text: orjson's bytes keep a 4 KB buffer each, and a group keeps its key.
        variables = (
            orjson.dumps(self.variables, option=orjson.OPT_SORT_KEYS).decode()
            if self.variables
            else ""
        )
        return self.query, variables, self.operation_name
