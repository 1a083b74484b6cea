"""A Strawberry schema whose error log never prints the document or its variables."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError

logger = logging.getLogger("gql_pubsub.errors")


class Schema(strawberry.Schema):
    """``strawberry.Schema``, but errors are logged by message and path only.

    Strawberry's default log prints each error with the source line of the document, where a
    client may have written a password or a token inline. Errors raised on purpose (a
    GraphQLError, or an exception class listed in ``expected_errors``) are logged at INFO
    without a traceback; anything else at ERROR with its traceback.
    """

    expected_errors: tuple[type[BaseException], ...] = (PermissionError,)

    def __init__(
        self, *args: Any, expected_errors: tuple[type[BaseException], ...] = (), **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.expected_errors = (*type(self).expected_errors, *expected_errors)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            original = error.original_error
            where = ".".join(str(p) for p in error.path or ()) or "the document"
            if original is None or isinstance(original, (GraphQLError, *self.expected_errors)):
                logger.info("GraphQL error at %s: %s", where, error.message)
            else:
                logger.error("GraphQL error at %s: %s", where, error.message, exc_info=original)
