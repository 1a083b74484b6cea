"""README promises nothing else tests: the view's CSRF rule, error logging, parsing, policies.

- "The view checks CSRF only for session-authenticated requests": a browser logged in through
  the admin of a live server, a bearer-token client and an anonymous one, over real HTTP.
- ``gql_pubsub.schema.Schema``'s error log: ``expected_errors`` at INFO without a traceback,
  others at ERROR with one, and never the document's source (where a password may be inline).
- "Documents are parsed and validated once per distinct text", read from the server's cache.
- ``@gql_pubsub.policies.register(pattern)`` policies, through ``check_access`` and the
  example's ``subscribe`` mutation.
- "Schemas with Strawberry extensions … keep Strawberry's per-subscriber pipeline", on a real
  uvicorn serving such a schema.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import strawberry
import uvicorn
from django.conf import settings
from django.test import AsyncClient, override_settings
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from gql_pubsub import Event, apublish, stream
from gql_pubsub.asgi import GraphQLApplication, get_asgi_application
from gql_pubsub.auth.policies import AccessDenied, check_access, may_read, register
from gql_pubsub.broker.process import get_broker
from gql_pubsub.schema import Schema

from .conftest import InProcessServer, wait_numsub
from .gqlws import GraphQLWS
from .services import LiveServer, LogCapture, captured_log, free_port, scaled, to_thread

# -- helpers ----------------------------------------------------------------------------------


def unique(name: str) -> str:
    return f"promises-http-{name}-{uuid.uuid4().hex[:10]}"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Poll ``predicate`` on the event loop; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + scaled(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def acked(url: str, token: str) -> GraphQLWS:
    client = await GraphQLWS.connect(url)
    await client.init({"token": token})
    return client


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Callable[[Any], str]) -> str:
    return token_for(make_user("http"))


# -- 1. CSRF only for session-authenticated requests --------------------------------------------

PASSWORD = "staff-password-for-the-admin"
CREATE = """
mutation ($t: String!) {
  createCorrespondence(title: $t, participantUsernames: []) { title participants { username } }
}
"""
LOGIN = "mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
CSRF_FORM_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def staff(make_user: Callable[..., Any]) -> Any:
    """A user who can log in to the admin (and so hold a session)."""
    return make_user("staff", password=PASSWORD, is_staff=True)


@pytest.fixture
async def browser(server: LiveServer, staff: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A real browser-like client logged in through the live server's /admin/login/ form."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as client:
        page = await client.get("/admin/login/")
        found = CSRF_FORM_FIELD.search(page.text)
        assert found is not None, page.text
        login = await client.post(
            "/admin/login/",
            data={
                "csrfmiddlewaretoken": found.group(1),
                "username": staff.username,
                "password": PASSWORD,
                "next": "/admin/",
            },
        )
        assert login.status_code == 302, login.text
        assert settings.SESSION_COOKIE_NAME in client.cookies
        yield client


async def correspondence_exists(title: str) -> bool:
    from example.chat.models import Correspondence

    return await Correspondence.objects.filter(title=title).aexists()


async def test_a_session_authenticated_post_without_the_csrf_header_is_refused(
    browser: httpx.AsyncClient,
) -> None:
    """A logged-in browser's mutation without (or with a wrong) X-CSRFToken: 403, no effect."""
    title = unique("no-csrf")
    missing = await browser.post("/graphql/", json={"query": CREATE, "variables": {"t": title}})
    wrong = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": title}},
        headers={"X-CSRFToken": "x" * 32},
    )
    assert missing.status_code == 403, missing.text
    assert wrong.status_code == 403, wrong.text
    assert not await correspondence_exists(title)


async def test_the_csrf_refusal_tells_the_client_to_send_the_x_csrftoken_header(
    browser: httpx.AsyncClient,
) -> None:
    """A session request's 403 says why Django refused it, and to send the X-CSRFToken header."""
    response = await browser.post(
        "/graphql/", json={"query": CREATE, "variables": {"t": unique("no-csrf")}}
    )
    wrong = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": unique("no-csrf")}},
        headers={"X-CSRFToken": "x" * 32},
    )
    assert response.status_code == wrong.status_code == 403
    assert response.json()["errors"][0]["message"] == (
        "CSRF check failed: CSRF token missing. "
        "Send the X-CSRFToken header (the csrftoken cookie's value)."
    )
    assert wrong.json()["errors"][0]["message"] == (
        "CSRF check failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect. "
        "Send the X-CSRFToken header (the csrftoken cookie's value)."
    )


async def test_a_session_authenticated_post_with_the_csrf_token_succeeds(
    browser: httpx.AsyncClient, staff: Any
) -> None:
    """The same browser sending its CSRF cookie's token in X-CSRFToken runs the mutation."""
    title = unique("csrf")
    response = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": title}},
        headers={"X-CSRFToken": browser.cookies["csrftoken"]},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {
            "createCorrespondence": {"title": title, "participants": [{"username": staff.username}]}
        }
    }
    assert await correspondence_exists(title)


async def test_a_bearer_token_post_needs_no_csrf_token(
    server: LiveServer, browser: httpx.AsyncClient, token: str
) -> None:
    """Bearer requests run without X-CSRFToken: alone, and beside a browser's session cookie."""
    titles = [unique("bearer"), unique("bearer-and-cookie")]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as bare:
        alone = await bare.post(
            "/graphql/",
            json={"query": CREATE, "variables": {"t": titles[0]}},
            headers={"Authorization": f"Bearer {token}"},
        )
    with_cookie = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": titles[1]}},
        headers={"Authorization": f"Bearer {token}"},
    )
    for response, title in zip([alone, with_cookie], titles, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["data"]["createCorrespondence"]["title"] == title
        assert await correspondence_exists(title)


async def test_an_anonymous_post_needs_no_csrf_token(server: LiveServer, staff: Any) -> None:
    """Anonymous mutations run without X-CSRFToken, even from a client holding a CSRF cookie."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as anonymous:
        await anonymous.get("/admin/login/")  # a visitor with a CSRF cookie, not logged in
        assert "csrftoken" in anonymous.cookies
        response = await anonymous.post(
            "/graphql/", json={"query": LOGIN, "variables": {"u": staff.username, "p": PASSWORD}}
        )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["login"]["token"]


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
    server: LiveServer, staff: Any
) -> None:
    """A failed login with the password in the document: logged by message, password absent."""
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


# -- 3. parsed and validated once per distinct text ----------------------------------------------

ITEMS = "subscription ($c: String!) { items(channel: $c) { n } }"
ITEMS_WITH_SIZE = "subscription ($c: String!) { items(channel: $c) { n size } }"


async def test_a_document_is_parsed_and_validated_once_per_distinct_text(
    app_server: InProcessServer, redis_client: redis.Redis, token: str
) -> None:
    """Four subscriptions of one text (two variable sets): one cache miss; a new text: another."""
    app: GraphQLApplication = app_server.app  # type: ignore[assignment]
    stats = app.websocket.stats
    channels = [unique("parse-a"), unique("parse-b")]
    before = stats()
    clients = [await acked(app_server.ws_url, token) for _ in range(3)]
    try:
        for client in clients:
            await client.subscribe("1", ITEMS, {"c": channels[0]})
        await clients[0].subscribe("2", ITEMS, {"c": channels[1]})

        def lookups() -> int:
            now = stats()
            return (
                now.documents_parsed
                + now.document_cache_hits
                - before.documents_parsed
                - before.document_cache_hits
            )

        await until(lambda: lookups() == 4, "four document lookups")
        after_same = stats()
        assert after_same.documents_parsed - before.documents_parsed == 1
        assert after_same.document_cache_hits - before.document_cache_hits == 3
        assert after_same.documents_cached == before.documents_cached + 1

        # The cached document serves real operations: every one of them gets its event.
        await until(lambda: app.websocket.stats().group_members == 4, "four members")
        for channel in channels:
            await to_thread(wait_numsub, redis_client, channel, 1)
            await apublish(channel, "custom", {"n": channel})
        for client in clients:
            assert await client.next_payload("1") == {"data": {"items": {"n": channels[0]}}}
        assert await clients[0].next_payload("2") == {"data": {"items": {"n": channels[1]}}}

        await clients[1].subscribe("3", ITEMS_WITH_SIZE, {"c": channels[0]})
        await clients[2].subscribe("3", ITEMS_WITH_SIZE, {"c": channels[0]})
        await until(lambda: lookups() == 6, "two more document lookups")
        after_other = stats()
        assert after_other.documents_parsed - before.documents_parsed == 2
        assert after_other.document_cache_hits - before.document_cache_hits == 4
    finally:
        await asyncio.gather(*(client.close() for client in clients))


# -- 4. registered access policies ---------------------------------------------------------------
# The registry has no way to unregister: every test registers a pattern of its own.


def test_a_registered_policy_decides_who_may_read_the_channels_it_covers(
    make_user: Callable[..., Any],
) -> None:
    """Allowed users pass check_access; others get AccessDenied naming the channel."""
    root = unique("testpolicy")
    member, outsider = make_user("member"), make_user("outsider")
    asked: list[tuple[Any, str]] = []

    def members_only(user: Any, channel: str) -> bool:
        asked.append((user.pk, channel))
        return bool(user.pk == member.pk)

    assert register(f"{root}:*")(members_only) is members_only
    channel = f"{root}:room-1"
    check_access(member, channel)
    with pytest.raises(AccessDenied) as denied:
        check_access(outsider, channel)
    assert str(denied.value) == f"You may not read channel {channel!r}."
    assert may_read(member, channel) and not may_read(outsider, channel)
    assert asked == [(member.pk, channel), (outsider.pk, channel)] * 2
    # Outside the pattern the policy decides nothing: nobody may read that channel.
    assert not may_read(member, f"{root}-elsewhere:room-1")
    assert len(asked) == 4


def test_a_policy_may_refuse_with_its_own_reason(make_user: Callable[..., Any]) -> None:
    """A policy raising AccessDenied("why") makes check_access raise that reason."""
    root = unique("testpolicy-reason")

    @register(f"{root}:*")
    def editors_only(user: Any, channel: str) -> bool:
        raise AccessDenied("Only editors may read drafts.")

    with pytest.raises(AccessDenied, match=r"^Only editors may read drafts\.$"):
        check_access(make_user("writer"), f"{root}:draft")


def test_a_channel_no_policy_covers_is_readable_by_nobody(make_user: Callable[..., Any]) -> None:
    """Not even a superuser may read a channel that no pattern (settings or registered) covers."""
    admin = make_user("root", is_staff=True, is_superuser=True)
    channel = unique("uncovered")
    with pytest.raises(AccessDenied, match="No access policy covers channel"):
        check_access(admin, channel)
    assert not may_read(admin, channel)


def test_the_built_in_policies_deny_everyone_or_allow_the_logged_in(
    make_user: Callable[..., Any],
) -> None:
    """deny refuses even a superuser; allow_authenticated lets any logged-in user in, not others."""
    from django.contrib.auth.models import AnonymousUser

    from gql_pubsub.auth.policies import allow_authenticated, deny

    root = unique("testpolicy-builtin")
    admin = make_user("root", is_staff=True, is_superuser=True)
    register(f"{root}-closed:*")(deny)
    register(f"{root}-members:*")(allow_authenticated)
    assert not may_read(admin, f"{root}-closed:x")
    assert may_read(make_user("member"), f"{root}-members:x")
    assert not may_read(AnonymousUser(), f"{root}-members:x")
    assert not may_read(make_user("gone", is_active=False), f"{root}-members:x")


SUBSCRIBE = "mutation ($c: String!) { subscribe(channel: $c) { channel active } }"


@pytest.fixture
def policy_users(
    make_user: Callable[..., Any], token_for: Callable[[Any], str]
) -> tuple[str, str, str]:
    """A unique registered pattern, with the tokens of a user it allows and one it refuses."""
    root = unique("testpolicy-view")
    allowed = make_user("allowed")

    @register(f"{root}:*")
    def only_allowed(user: Any, channel: str) -> bool:
        return bool(user.pk == allowed.pk)

    return root, token_for(allowed), token_for(make_user("refused"))


async def test_the_example_subscribe_mutation_obeys_a_registered_policy(
    policy_users: tuple[str, str, str],
) -> None:
    """Through the example's view: the allowed user subscribes, the other gets the reason."""
    root, allowed, refused = policy_users
    channel = f"{root}:news"
    client = AsyncClient()
    bodies = []
    for token in (allowed, refused):
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            response = await client.post(
                "/graphql/",
                {"query": SUBSCRIBE, "variables": {"c": channel}},
                "application/json",
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.content
        bodies.append(response.json())
    assert bodies[0] == {"data": {"subscribe": {"channel": channel, "active": True}}}
    assert bodies[1]["data"] is None
    assert bodies[1]["errors"][0]["message"] == f"You may not read channel {channel!r}."


# -- 5. Strawberry extensions keep the per-subscriber pipeline -----------------------------------

on_execute: collections.Counter[str] = collections.Counter()
"""``on_execute`` calls of the counting extension, by the operation's ``c`` variable."""
resolutions: collections.Counter[str] = collections.Counter()
"""Executions of ``ExtItem.resolved``, by event."""


class CountingExtension(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        variables = self.execution_context.variables or {}
        on_execute[str(variables.get("c"))] += 1
        yield


@strawberry.type
class ExtItem:
    n: str

    @strawberry.field
    def resolved(self) -> bool:
        resolutions[self.n] += 1
        return True


def to_ext_item(event: Event) -> ExtItem:
    return ExtItem(n=str(event.data["n"]))


@strawberry.type
class ExtQuery:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class ExtSubscription:
    @strawberry.subscription
    async def items(self, c: str) -> AsyncGenerator[ExtItem, None]:
        return stream(c, map=to_ext_item)  # type: ignore[return-value]


extension_schema = strawberry.Schema(
    query=ExtQuery, subscription=ExtSubscription, extensions=[CountingExtension]
)
EXT_ITEMS = "subscription ($c: String!) { items(c: $c) { n resolved } }"


@contextlib.asynccontextmanager
async def serving(schema: strawberry.Schema) -> AsyncIterator[str]:
    """uvicorn serving ``get_asgi_application(schema)`` on this loop; yields the socket URL."""
    port = free_port()
    config = uvicorn.Config(
        get_asgi_application(schema),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or task.done(), "uvicorn to start", 20)
        assert server.started, "in-process uvicorn did not start"
        yield f"ws://127.0.0.1:{port}/graphql/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, scaled(20))


async def test_a_schema_with_an_extension_runs_it_for_each_subscriber(
    redis_client: redis.Redis, token: str
) -> None:
    """Two sockets, one document, one event: both receive it, executed once per subscriber."""
    channel = unique("extension")
    async with serving(extension_schema) as url:
        clients = [await acked(url, token) for _ in range(2)]
        try:
            for client in clients:
                await client.subscribe("1", EXT_ITEMS, {"c": channel})
            await to_thread(wait_numsub, redis_client, channel, 1)
            await until(
                lambda: on_execute[channel] == 2 and get_broker().subscriber_count(channel) == 2,
                f"the extension's on_execute for both subscribers (now {on_execute[channel]})",
            )
            await apublish(channel, "custom", {"n": channel})
            payloads = [await client.next_payload("1") for client in clients]
        finally:
            await asyncio.gather(*(client.close() for client in clients))
    assert payloads == [{"data": {"items": {"n": channel, "resolved": True}}}] * 2
    assert on_execute[channel] == 2
    assert resolutions[channel] == 2  # the selection set ran for each subscriber
