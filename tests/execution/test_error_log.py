"""``gql_pubsub.schema.Schema``'s error log: ``expected_errors`` at INFO without a traceback,
others at ERROR with one, and never the document's source (where a password may be inline)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import strawberry
from graphql import GraphQLError

from gql_pubsub.schema import Schema

from ..services import LiveServer, LogCapture, captured_log, scaled, to_thread, until

# -- 2. expected_errors and the error log -------------------------------------------------------

SECRET = "hunter2-inline-password-7Qz"


class Refused(Exception):
    """An error raised on purpose, listed in expected_errors."""


@strawberry.type
class LoggingQuery:
    @strawberry.field
    def refused(self) -> str:
        raise Refused("not for you")

    @strawberry.field
    def deliberate(self) -> str:
        raise GraphQLError("bad input")

    @strawberry.field
    def denied(self) -> str:
        raise PermissionError("no permission")

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("something went wrong")

    @strawberry.field
    def login(self, password: str) -> str:
        raise Refused("wrong password")

    @strawberry.field
    def crash(self, password: str) -> str:
        raise ZeroDivisionError("crashed while checking")


logging_schema = Schema(query=LoggingQuery, expected_errors=(Refused,))
plain_schema = Schema(query=LoggingQuery)  # the same fields, nothing listed


def error_log() -> Any:
    """Capture the ``gql_pubsub.errors`` logger (the example stops it from propagating)."""
    return captured_log("gql_pubsub.errors", logging.INFO)


def run(schema: Schema, query: str) -> LogCapture:
    with error_log() as log:
        result = schema.execute_sync(query)
    assert result.errors, result
    return log


def test_errors_raised_on_purpose_are_logged_at_info_without_a_traceback() -> None:
    """A class in expected_errors, a GraphQLError and a PermissionError: one INFO line each."""
    for field, message in [
        ("refused", "not for you"),
        ("deliberate", "bad input"),
        ("denied", "no permission"),
    ]:
        log = run(logging_schema, f"{{ {field} }}")
        assert [(r.levelno, r.getMessage(), r.exc_info) for r in log.records] == [
            (logging.INFO, f"GraphQL error at {field}: {message}", None)
        ], field
        assert "Traceback" not in log.text()


def test_expected_errors_is_what_keeps_a_listed_class_at_info() -> None:
    """The same error from a schema that does not list its class: ERROR, with its traceback."""
    log = run(plain_schema, "{ refused }")
    [record] = log.records
    assert (record.levelno, record.getMessage()) == (
        logging.ERROR,
        "GraphQL error at refused: not for you",
    )
    assert record.exc_info is not None and isinstance(record.exc_info[1], Refused)


def test_unexpected_errors_are_logged_at_error_with_their_traceback() -> None:
    """Any other exception: ERROR, by message and path, with the exception's traceback."""
    log = run(logging_schema, "{ broken }")
    [record] = log.records
    assert (record.levelno, record.getMessage()) == (
        logging.ERROR,
        "GraphQL error at broken: something went wrong",
    )
    text = log.text()
    assert "Traceback (most recent call last)" in text
    assert "ValueError: something went wrong" in text


def test_a_password_written_inline_in_the_document_never_reaches_the_error_log() -> None:
    """Expected, unexpected, validation and syntax errors of a document holding a password."""
    documents = [
        f'{{ login(password: "{SECRET}") }}',  # expected error
        f'{{ crash(password: "{SECRET}") }}',  # unexpected: ERROR with a traceback
        f'{{ login(password: "{SECRET}") nope }}',  # validation error
        f'{{ login(password: "{SECRET}" }}',  # syntax error
    ]
    with error_log() as log:
        for document in documents:
            assert logging_schema.execute_sync(document).errors
    text = log.text()
    assert len(log.records) == len(documents), text  # something was logged for each
    assert "Traceback" in text and "ZeroDivisionError" in text
    assert SECRET not in text


async def test_the_example_servers_log_never_shows_an_inline_password(
    server: LiveServer, make_user: Callable[..., Any]
) -> None:
    """A failed login with the password in the document: logged by message, password absent."""
    staff = await to_thread(make_user, "staff", password=f"right-{uuid.uuid4().hex}")
    before = len(server.log.read_bytes())
    wrong = f"{SECRET}-{uuid.uuid4().hex[:6]}"
    document = (
        f'mutation {{ login(username: "{staff.username}", password: "{wrong}") {{ token }} }}'
    )
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as client:
        response = await client.post("/graphql/", json={"query": document})
    assert response.json()["errors"][0]["message"] == "Wrong username or password."

    def new_log() -> str:
        return server.log.read_bytes()[before:].decode(errors="replace")

    await until(lambda: "GraphQL error at login" in new_log(), "the error's log line")
    assert "INFO gql_pubsub.errors: GraphQL error at login: Wrong username or password." in (
        new_log()
    )
    assert wrong not in new_log()
