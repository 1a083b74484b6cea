"""Authentication and access: which user a token names (``tokens``), who a handshake comes from
(``handshake``), the HTTP middleware (``middleware``), and who may read which channel
(``policies``). The names below are the documented paths (``GQL_PUBSUB["TOKEN_AUTH"] =
"gql_pubsub.auth.jwt_user"``, ``"gql_pubsub.auth.TokenAuthenticationMiddleware"``)."""

from gql_pubsub.auth.middleware import TokenAuthenticationMiddleware
from gql_pubsub.auth.tokens import (
    TokenAuth,
    TokenRejected,
    aauthenticate_token,
    authenticate_token,
    create_jwt,
    drf_token_user,
    jwt_expiry,
    jwt_user,
    token_expiry,
    token_from_connection_params,
    token_from_header,
)

__all__ = [
    "TokenAuth",
    "TokenAuthenticationMiddleware",
    "TokenRejected",
    "aauthenticate_token",
    "authenticate_token",
    "create_jwt",
    "drf_token_user",
    "jwt_expiry",
    "jwt_user",
    "token_expiry",
    "token_from_connection_params",
    "token_from_header",
]
