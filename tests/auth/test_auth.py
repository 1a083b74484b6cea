"""Token authentication: the JWT checks and the token shapes accepted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from django.test import override_settings

from gql_pubsub.auth.tokens import (
    TokenRejected,
    aauthenticate_token,
    authenticate_token,
    create_jwt,
    jwt_user,
    token_from_connection_params,
    token_from_header,
)
from gql_pubsub.conf import get_settings

from ..services import LiveServer, scaled


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user("auth")


def sign(claims: dict[str, Any], key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or get_settings().jwt_secret, algorithm=algorithm)


def test_a_created_token_names_its_user(user: Any) -> None:
    assert jwt_user(create_jwt(user)) == user
    assert authenticate_token(create_jwt(user)) == user


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": 1}, "token expired"),
        ({}, "token lacks the 'exp' claim"),
        ({"exp": 4_000_000_000, "nbf": 4_000_000_000}, "token not yet valid"),
        ({"exp": 4_000_000_000, "iat": 3_900_000_000}, "token not yet valid"),
        ({"exp": 4_000_000_000, "iat": "yesterday"}, "token malformed: bad iat claim"),
        ({"exp": "4000000000"}, "token malformed: exp must be a number"),
        ({"exp": 4_000_000_000, "nbf": "1"}, "token malformed: nbf must be a number"),
    ],
    ids=[
        "expired",
        "no-exp",
        "not-before",
        "issued-in-future",
        "bad-iat",
        "string-exp",
        "string-nbf",
    ],
)
def test_tokens_with_bad_time_claims_are_refused_saying_why(
    user: Any, claims: dict[str, Any], reason: str
) -> None:
    with pytest.raises(TokenRejected) as refused:
        jwt_user(sign({"sub": str(user.pk), **claims}))
    assert str(refused.value) == reason


def test_an_unsigned_token_is_refused(user: Any) -> None:
    """alg=none is never accepted."""
    token = jwt.encode({"sub": str(user.pk), "exp": 4_000_000_000}, None, algorithm="none")
    with pytest.raises(TokenRejected, match="token algorithm not accepted"):
        jwt_user(token)


def test_a_token_for_an_inactive_or_missing_user_is_refused(user: Any) -> None:
    user.is_active = False
    user.save()
    with pytest.raises(TokenRejected, match=r"^user deactivated$"):
        jwt_user(sign({"sub": str(user.pk), "exp": 4_000_000_000}))
    for missing in ("999999999", "not-a-pk"):
        with pytest.raises(TokenRejected, match=r"^unknown user$"):
            jwt_user(sign({"sub": missing, "exp": 4_000_000_000}))


def test_audience_issuer_and_leeway_are_settings(user: Any) -> None:
    config = {"JWT_SECRET": "s" * 40, "JWT_AUDIENCE": "chat", "JWT_ISSUER": "us", "JWT_LEEWAY": 30}
    with override_settings(GQL_PUBSUB=config):
        good = create_jwt(user)
        assert jwt.decode(good, "s" * 40, algorithms=["HS256"], audience="chat")["iss"] == "us"
        assert jwt_user(good) == user
        wrong_audience = sign({"sub": str(user.pk), "exp": 4_000_000_000, "aud": "x", "iss": "us"})
        with pytest.raises(TokenRejected, match="token audience not accepted"):
            jwt_user(wrong_audience)
        just_expired = sign(
            {"sub": str(user.pk), "exp": int(time.time()) - 10, "aud": "chat", "iss": "us"}
        )
        assert jwt_user(just_expired) == user  # within the 30 s leeway
    with pytest.raises(TokenRejected, match="token signature invalid"):
        jwt_user(good)  # signed with the overridden secret


def test_token_auth_is_pluggable(user: Any) -> None:
    """TOKEN_AUTH names the function that turns a token into a user (the seed's idea)."""
    with override_settings(GQL_PUBSUB={"TOKEN_AUTH": "tests.auth.test_auth.token_is_username"}):
        assert authenticate_token(user.username) == user


def token_is_username(token: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(username=token).first()


async def async_token_is_username(token: str) -> Any:
    from django.contrib.auth import get_user_model

    return await get_user_model().objects.filter(username=token).afirst()


def test_an_async_token_auth_serves_sync_and_async_callers(user: Any) -> None:
    """An ``async def`` TOKEN_AUTH is awaited from async code and run to completion from sync."""
    from asgiref.sync import async_to_sync

    with override_settings(
        GQL_PUBSUB={"TOKEN_AUTH": "tests.auth.test_auth.async_token_is_username"}
    ):
        assert authenticate_token(user.username) == user
        assert async_to_sync(aauthenticate_token)(user.username) == user
        with pytest.raises(TokenRejected, match="invalid token"):
            authenticate_token("nobody-" + user.username)


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
        with pytest.raises(TokenRejected, match="unknown token"):
            authenticate_token("0" * 40)
        user.is_active = False
        user.save()
        with pytest.raises(TokenRejected, match="user deactivated"):
            authenticate_token(key)


def test_an_hs256_token_signed_with_the_rs256_public_key_is_refused(user: Any) -> None:
    """The algorithm-confusion trick: with RS256 configured, the public key is no HMAC secret."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"sub": str(user.pk), "exp": 4_000_000_000}
    config = {"JWT_SECRET": public_pem.decode(), "JWT_ALGORITHMS": ["RS256"]}
    with override_settings(GQL_PUBSUB=config):
        genuine = jwt.encode(claims, private, algorithm="RS256")
        assert jwt_user(genuine) == user
        forged = _hs256_with_raw_key(claims, public_pem)
        with pytest.raises(TokenRejected, match="token algorithm not accepted"):
            jwt_user(forged)


def _hs256_with_raw_key(claims: dict[str, Any], key: bytes) -> str:
    """HS256-sign with any bytes as the key (PyJWT itself refuses a PEM key, rightly)."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


@pytest.mark.parametrize(
    ("secret", "error"),
    [
        (None, "gql_pubsub.E001"),
        ("short", "gql_pubsub.E002"),
        ("dev-insecure-" + "x" * 40, "gql_pubsub.E002"),
    ],
)
def test_production_refuses_a_missing_or_placeholder_jwt_secret(
    secret: str | None, error: str
) -> None:
    """With DEBUG off, Django's system checks fail and say how to fix it."""
    from django.core.checks import run_checks

    config = {"JWT_SECRET": secret} if secret else {}
    with override_settings(DEBUG=False, GQL_PUBSUB=config):
        ids = {message.id for message in run_checks(tags=["security"])}
    assert error in ids
    with override_settings(DEBUG=False, GQL_PUBSUB={"JWT_SECRET": "k" * 48}):
        assert not {m.id for m in run_checks(tags=["security"]) if m.id.startswith("gql_pubsub")}


def test_the_example_refuses_to_pass_its_checks_in_production_with_its_dev_secret() -> None:
    """`manage.py check` on the example with DEBUG=0 and no JWT_SECRET fails, naming the fix."""
    import os
    import subprocess
    import sys

    from ..services import ROOT

    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    env["DEBUG"] = "0"
    done = subprocess.run(
        [sys.executable, "example/manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "gql_pubsub.E002" in done.stderr
    assert "JWT_SECRET" in done.stderr


def test_the_socket_expiry_of_a_token_is_read_from_its_numeric_exp_only() -> None:
    """A DRF token has no expiry (the socket stays open); a JWT's string exp expires at once."""
    from gql_pubsub.auth.tokens import jwt_expiry

    assert jwt_expiry("0123456789abcdef0123456789abcdef01234567") is None
    assert jwt_expiry(sign({"sub": "1", "exp": 4_000_000_000})) == 4_000_000_000.0
    assert jwt_expiry(sign({"sub": "1", "exp": "4000000000"})) == 0.0
    assert jwt_expiry(sign({"sub": "1"})) is None


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNzd29yZA==", "Token 0123456789abcdef"])
async def test_an_authorization_header_of_another_scheme_is_left_to_whoever_uses_it(
    server: LiveServer, header: str
) -> None:
    """TokenAuthenticationMiddleware answers only Bearer: Basic auth, DRF's `Token <key>` and
    the like reach the project's own views (and DRF) untouched, anonymous to GraphQL."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as client:
        login_page = await client.get("/admin/login/", headers={"Authorization": header})
        query = await client.post(
            "/graphql/", json={"query": "{ me { id } }"}, headers={"Authorization": header}
        )
    assert login_page.status_code == 200
    assert (query.status_code, query.json()) == (200, {"data": {"me": None}})


async def test_a_bearer_header_without_a_token_is_a_401(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as client:
        response = await client.post(
            "/graphql/", json={"query": "{ me { id } }"}, headers={"Authorization": "Bearer"}
        )
    assert response.status_code == 401
