"""Token authentication: the JWT checks and the token shapes accepted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from django.test import override_settings

from gql_pubsub.auth import (
    authenticate_token,
    create_jwt,
    jwt_user,
    token_from_connection_params,
    token_from_header,
)
from gql_pubsub.conf import get_settings


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user("auth")


def sign(claims: dict[str, Any], key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or get_settings().jwt_secret, algorithm=algorithm)


def test_a_created_token_names_its_user(user: Any) -> None:
    assert jwt_user(create_jwt(user)) == user
    assert authenticate_token(create_jwt(user)) == user


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 1},  # long expired
        {},  # no exp: required
        {"exp": 4_000_000_000, "nbf": 4_000_000_000},  # not yet valid
    ],
    ids=["expired", "no-exp", "not-before"],
)
def test_tokens_with_bad_time_claims_are_refused(user: Any, claims: dict[str, Any]) -> None:
    assert jwt_user(sign({"sub": str(user.pk), **claims})) is None


def test_an_unsigned_token_is_refused(user: Any) -> None:
    """alg=none is never accepted."""
    token = jwt.encode({"sub": str(user.pk), "exp": 4_000_000_000}, None, algorithm="none")
    assert jwt_user(token) is None


def test_a_token_for_an_inactive_or_missing_user_is_refused(user: Any) -> None:
    user.is_active = False
    user.save()
    assert jwt_user(sign({"sub": str(user.pk), "exp": 4_000_000_000})) is None
    assert jwt_user(sign({"sub": "999999999", "exp": 4_000_000_000})) is None
    assert jwt_user(sign({"sub": "not-a-pk", "exp": 4_000_000_000})) is None


def test_audience_issuer_and_leeway_are_settings(user: Any) -> None:
    config = {"JWT_SECRET": "s" * 40, "JWT_AUDIENCE": "chat", "JWT_ISSUER": "us", "JWT_LEEWAY": 30}
    with override_settings(GQL_PUBSUB=config):
        good = create_jwt(user)
        assert jwt.decode(good, "s" * 40, algorithms=["HS256"], audience="chat")["iss"] == "us"
        assert jwt_user(good) == user
        wrong_audience = sign({"sub": str(user.pk), "exp": 4_000_000_000, "aud": "x", "iss": "us"})
        assert jwt_user(wrong_audience) is None
        just_expired = sign(
            {"sub": str(user.pk), "exp": int(time.time()) - 10, "aud": "chat", "iss": "us"}
        )
        assert jwt_user(just_expired) == user  # within the 30 s leeway
    assert jwt_user(good) is None  # signed with the overridden secret


def test_token_auth_is_pluggable(user: Any) -> None:
    """TOKEN_AUTH names the function that turns a token into a user (the seed's idea)."""
    with override_settings(GQL_PUBSUB={"TOKEN_AUTH": "tests.test_auth.token_is_username"}):
        assert authenticate_token(user.username) == user


def token_is_username(token: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(username=token).first()


@pytest.mark.parametrize(
    ("params", "token"),
    [
        ({"token": "t1"}, "t1"),
        ({"Authorization": "Bearer t2"}, "t2"),
        ({"authorization": "bearer t3"}, "t3"),
        ({"headers": {"Authorization": "Bearer t4"}}, "t4"),
        ({"Authorization": "Basic abc"}, None),
        ({"token": 5}, None),
        ({}, None),
    ],
)
def test_tokens_are_found_in_the_payload_shapes_clients_send(
    params: dict[str, Any], token: str | None
) -> None:
    assert token_from_connection_params(params) == token


def test_only_bearer_headers_carry_a_token() -> None:
    assert token_from_header("Bearer abc") == "abc"
    assert token_from_header("Bearer ") is None
    assert token_from_header("Token abc") is None
    assert token_from_header(None) is None


def test_an_unknown_setting_is_refused_with_the_known_ones_listed() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(GQL_PUBSUB={"BROKER": "redis://"}),
        pytest.raises(ImproperlyConfigured, match="BROKER_URL"),
    ):
        get_settings()


def test_drf_tokens_authenticate_their_active_user(user: Any) -> None:
    """TOKEN_AUTH = drf_token_user accepts a DRF Token's key, for projects that use DRF."""
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=user).key
    with override_settings(GQL_PUBSUB={"TOKEN_AUTH": "gql_pubsub.auth.drf_token_user"}):
        assert authenticate_token(key) == user
        assert authenticate_token("0" * 40) is None
        user.is_active = False
        user.save()
        assert authenticate_token(key) is None
