"""How a connection ends: the close codes of graphql-transport-ws, which the server uses for
every transport (an HTTP stream maps them to its own status and error)."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """Close codes of graphql-transport-ws (and the standard ones the server uses)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013
    """Not graphql-transport-ws's: the client read too slowly and fell too far behind."""
    INTERNAL_SERVER_ERROR = 4500
    INTERNAL_CLIENT_ERROR = 4005
    BAD_REQUEST = 4400
    BAD_RESPONSE = 4004
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    CONNECTION_INITIALISATION_TIMEOUT = 4408
    CONNECTION_ACKNOWLEDGEMENT_TIMEOUT = 4504
    SUBSCRIBER_ALREADY_EXISTS = 4409
    TOO_MANY_INITIALISATION_REQUESTS = 4429
