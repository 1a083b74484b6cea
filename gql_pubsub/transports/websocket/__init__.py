"""graphql-transport-ws: the protocol as a state machine with no I/O (``protocol``), one socket's
driver (``connection``), its send buffer (``send_buffer``) and the ASGI endpoint (``endpoint``)."""
