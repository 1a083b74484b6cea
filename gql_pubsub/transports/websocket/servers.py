"""Which ASGI server's WebSocket path serves this process, and whether it is the fast one.

Measured with ``benchmarks/run.py --ws`` on the harness's ceiling app (encode once, splice, ASGI
send), 2026-12-06: uvicorn's sans-I/O ``websockets`` implementation, which ``--ws auto`` picks,
17.0-17.6 us of server CPU a delivery; its legacy ``websockets`` implementation 28.7-29.1 us (1.7x)
and 29.6 instead of 22.5 KB an idle socket; granian 2.8's ASGI interface a fifth of the
deliveries a second. The server process says so once, at startup.
"""

from __future__ import annotations

import sys
from collections.abc import Container

UVICORN_LEGACY = "uvicorn.protocols.websockets.websockets_impl"
"""uvicorn's legacy implementation (``--ws websockets``)."""

UVICORN_FAST = (
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
)
"""uvicorn's implementations whose ``send`` exposes its flow-control flag."""

LEGACY_UVICORN_WEBSOCKETS = (
    "uvicorn serves WebSockets with its legacy `websockets` implementation (`--ws websockets`),"
    " which costs 1.7x the server CPU a frame of its sans-I/O one and a third more memory an idle"
    " socket (measured). Serve with `--ws websockets-sansio` or uvicorn's default `--ws auto`"
    ' (`ws="websockets-sansio"` in `uvicorn.run()`; under gunicorn, a `UvicornWorker` subclass'
    ' with `CONFIG_KWARGS = {"ws": "websockets-sansio"}`).'
)

GRANIAN_WEBSOCKETS = (
    "granian serves this ASGI application: its WebSocket path delivered a fifth of the frames a"
    " second of uvicorn's (measured, granian 2.8's ASGI interface). Serve with `uvicorn` (or"
    " gunicorn with `uvicorn_worker.UvicornWorker`)."
)


def slow_websocket_path(modules: Container[str] = sys.modules) -> str | None:
    """What to change when this process serves WebSockets on a path measured slower than
    uvicorn's sans-I/O one (None: it does not, or the server is not one measured)."""
    if UVICORN_LEGACY in modules and not any(name in modules for name in UVICORN_FAST):
        return LEGACY_UVICORN_WEBSOCKETS
    if "granian.asgi" in modules and "uvicorn.protocols.websockets" not in modules:
        return GRANIAN_WEBSOCKETS
    return None
