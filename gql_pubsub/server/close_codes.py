"""How a connection ends: the close codes of graphql-transport-ws, which the server uses for
every transport (an HTTP stream maps them to its own status and error)."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """Close codes of graphql-transport-ws (and the standard ones the server uses)."""

    NORMAL = 1000
    """The connection ended normally (the client closed it)."""
    GOING_AWAY = 1001
    """The server is shutting down, the client did not answer a ping in time
    (`KEEPALIVE_TIMEOUT`), or a channel's access rules changed: reconnect."""
    MESSAGE_TOO_BIG = 1009
    """A client frame was larger than `MAX_MESSAGE_SIZE`."""
    TRY_AGAIN_LATER = 1013
    """Try again later: the client read too slowly and more than `SEND_BUFFER` messages were
    waiting, or the server cannot reach its broker (Redis) to open the session. The WebSocket
    standard's code: graphql-ws clients retry it."""
    INTERNAL_SERVER_ERROR = 4500
    """The server failed unexpectedly (its log has the traceback)."""
    INTERNAL_CLIENT_ERROR = 4005
    """graphql-ws clients close with it when they fail themselves; the server never sends it."""
    BAD_REQUEST = 4400
    """The client broke the protocol: a message that is not JSON, of an unknown type, or
    malformed."""
    BAD_RESPONSE = 4004
    """graphql-ws clients close with it when the server's message is malformed; the server
    never sends it."""
    UNAUTHORIZED = 4401
    """An operation was sent before the connection was acknowledged."""
    FORBIDDEN = 4403
    """The connection was refused or ended by authentication: no or bad token, an expired
    token, a deactivated user, or too many connections for the user
    (`MAX_CONNECTIONS_PER_USER`). A browser handshake from an origin that is not allowed
    (`ALLOWED_ORIGINS`) gets HTTP 403 instead."""
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    """The client did not offer the graphql-transport-ws subprotocol: the server accepts
    without one and closes at once, saying so."""
    CONNECTION_INITIALISATION_TIMEOUT = 4408
    """No `connection_init` within `CONNECTION_INIT_TIMEOUT` seconds."""
    CONNECTION_ACKNOWLEDGEMENT_TIMEOUT = 4504
    """graphql-ws clients close with it when no `connection_ack` arrives; the server never
    sends it."""
    SUBSCRIBER_ALREADY_EXISTS = 4409
    """An operation id that is still running was used again."""
    TOO_MANY_INITIALISATION_REQUESTS = 4429
    """A second `connection_init` on one connection."""
