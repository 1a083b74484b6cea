"""``manage.py gql_pubsub_token <username>``: a JWT for a quick start, alone on stdout (so that
``TOKEN=$(python manage.py gql_pubsub_token alice)`` works), refused with the fix when it could
not be used. The first test runs a real ``python -m django`` process, the others call the
command in this one."""

from __future__ import annotations

import io
import os
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from gql_pubsub.auth.tokens import jwt_user
from gql_pubsub.conf import get_settings

from ..gqlws import GraphQLWS
from ..services import LiveServer, example_process, to_thread


def token_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m django gql_pubsub_token …`` on the example's settings."""
    return example_process(
        "-m", "django", "gql_pubsub_token", *args, redis_url=os.environ["REDIS_URL"], **env
    )


def run(*args: str) -> str:
    """The command's stdout, called in this process (a ``CommandError`` propagates)."""
    out = io.StringIO()
    call_command("gql_pubsub_token", *args, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    return lines[0]


def printed_token(done: subprocess.CompletedProcess[str]) -> str:
    """The token a successful run printed: its one line of stdout."""
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    return lines[0]


def claims_of(token: str) -> dict[str, Any]:
    settings = get_settings()
    found: dict[str, Any] = jwt.decode(
        token, settings.jwt_secret, algorithms=list(settings.JWT_ALGORITHMS)
    )
    return found


async def test_the_printed_token_authenticates_a_socket_as_its_user(
    server: LiveServer, make_user: Callable[..., Any]
) -> None:
    user = await to_thread(make_user, "cli")
    token = printed_token(await to_thread(token_command, user.username))
    async with await GraphQLWS.connect(server.ws_url) as client:
        assert (await client.init({"token": token}))["type"] == "connection_ack"
        await client.subscribe("me", "{ me { username } }")
        assert await client.next_payload("me") == {"data": {"me": {"username": user.username}}}


def test_the_token_lives_jwt_lifetime_unless_a_lifetime_is_asked(
    make_user: Callable[..., Any],
) -> None:
    user = make_user("cli")
    default = claims_of(run(user.username))
    assert default["sub"] == str(user.pk)
    assert default["exp"] - default["iat"] == int(get_settings().JWT_LIFETIME)
    asked = claims_of(run(user.username, "--lifetime", "90"))
    assert asked["exp"] - asked["iat"] == 90


def test_an_unknown_user_is_an_error_that_says_how_to_create_it() -> None:
    with pytest.raises(CommandError, match="No user") as refused:
        run(f"nobody-{uuid.uuid4().hex}")
    assert "python manage.py createsuperuser" in str(refused.value)
    assert "--create" in str(refused.value)


def test_create_makes_the_missing_user_without_a_usable_password() -> None:
    name = f"created-{uuid.uuid4().hex}"
    token = run(name, "--create")
    user = get_user_model().objects.get(username=name)
    assert not user.has_usable_password()
    assert jwt_user(token) == user
    again = run(name, "--create")  # it exists now: just a token
    assert jwt_user(again) == user
    assert get_user_model().objects.filter(username=name).count() == 1


def test_an_inactive_user_is_an_error_since_its_token_would_be_refused(
    make_user: Callable[..., Any],
) -> None:
    user = make_user("cli", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        run(user.username)


def test_a_lifetime_that_is_not_positive_is_an_error() -> None:
    with pytest.raises(CommandError, match="--lifetime"):
        run("anyone", "--lifetime", "0")


def test_the_command_refuses_when_token_auth_accepts_no_jwt() -> None:
    """With DRF tokens (or any TOKEN_AUTH but the JWT one) a JWT would be refused: say so."""
    config = {**django_settings.GQL_PUBSUB, "TOKEN_AUTH": "gql_pubsub.auth.drf_token_user"}
    with override_settings(GQL_PUBSUB=config), pytest.raises(CommandError) as refused:
        run("anyone")
    assert "TOKEN_AUTH" in str(refused.value)
    assert "'gql_pubsub.auth.jwt_user'" in str(refused.value)


def test_the_command_refuses_when_tokens_are_signed_elsewhere() -> None:
    """RS/ES algorithms: this server holds only the public key, so it can sign no token."""
    config = {**django_settings.GQL_PUBSUB, "JWT_ALGORITHMS": ["RS256"]}
    with (
        override_settings(GQL_PUBSUB=config),
        pytest.raises(CommandError, match="JWT_ALGORITHMS") as refused,
    ):
        run("anyone")
    assert "identity provider" in str(refused.value)
