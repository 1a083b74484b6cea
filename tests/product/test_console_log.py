"""A project that configures no logging for gql_pubsub (a fresh ``startproject``) shows the
library's INFO lines on stderr with DEBUG on, as Django does for its own "django" logger; with
DEBUG off only the warnings, through Python's last resort; and never a line twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gql_pubsub.server.close_codes import CloseCode

from ..gqlws import GraphQLWS
from ..services import ROOT, live_server, scaled, to_thread, wait_until

QUICK_START = "tests.quickstart_settings"

PROBE = """
import logging, django
django.setup()
logging.getLogger("gql_pubsub.probe").info("probe info")
logging.getLogger("gql_pubsub.probe").warning("probe warning")
"""

INFO = "INFO gql_pubsub.probe: probe info"
WARNING = "WARNING gql_pubsub.probe: probe warning"

CASES = {
    "debug-and-no-logging": ({"DEBUG": "1"}, [INFO, WARNING], []),
    "debug-off": ({"DEBUG": "0"}, ["probe warning"], []),  # the last resort: the message alone
    "root-handler-at-info": (
        {"DEBUG": "1", "ROOT_LOG_LEVEL": "INFO"},
        [],
        [f"root {INFO}", f"root {WARNING}"],
    ),
    "root-handler-at-warning": (
        {"DEBUG": "1", "ROOT_LOG_LEVEL": "WARNING"},
        [INFO],
        [f"root {WARNING}"],
    ),
    "logging-configures-gql_pubsub": (
        {"DEBUG": "1", "DJANGO_SETTINGS_MODULE": "example.settings"},
        [INFO, WARNING],  # by the example's own console handler only
        [],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_library_log_reaches_the_console_once_whatever_the_project_configures(
    case: str,
) -> None:
    """Each probe line appears once, on the stream and in the form the case expects."""
    env, on_stderr, on_stdout = CASES[case]
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": QUICK_START, **env},
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "probe" in line] == on_stderr
    assert [line for line in done.stdout.splitlines() if "probe" in line] == on_stdout


async def test_a_refused_socket_is_logged_on_the_console_of_a_project_without_logging(
    log_dir: Path,
) -> None:
    """DEBUG on, no LOGGING: a connection_init without a token is one INFO line on the server's
    console naming the peer, the close code, the reason and the fix."""
    env = {"DJANGO_SETTINGS_MODULE": QUICK_START, "DEBUG": "1"}
    with live_server(env, log_dir=log_dir) as server:
        async with await GraphQLWS.connect(server.ws_url) as client:
            host, port = client.ws.local_address[:2]
            await client.send({"type": "connection_init", "payload": {}})
            closed = await client.expect_close()
        assert closed.code == CloseCode.FORBIDDEN
        line = (
            f"INFO gql_pubsub.websocket: Closed the socket of {host}:{port} with 4403: "
            "Forbidden: no token in connection_init and no logged-in session"
        )

        def logged() -> list[str]:
            return [entry for entry in server.log.read_text().splitlines() if line in entry]

        await to_thread(wait_until, logged, 5, f"{line!r} in the server's log")
        [entry] = logged()
    assert 'send {"token": "<token>"} or {"Authorization": "Bearer <token>"}' in entry
    assert "in connection_init" in entry.split(line)[1]
    assert "manage.py gql_pubsub_token" in entry
