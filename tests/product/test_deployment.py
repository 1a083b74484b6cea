"""Deployment: static files under uvicorn with DEBUG on and off; gunicorn with uvicorn workers."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import django.contrib.admin
import httpx
import redis

from ..helpers import MESSAGE_ADDED, connected, graphql, send_message, subscribed
from ..services import (
    LiveServer,
    gunicorn_server,
    live_server,
    production_env,
    scaled,
    to_thread,
    wait_until,
)

ADMIN_CSS = "/static/admin/css/base.css"


def assert_serves_the_admin_stylesheet(server: LiveServer) -> None:
    """GET the admin's base.css: 200, a CSS content type, Django's own bytes; a missing file 404."""
    shipped = Path(django.contrib.admin.__file__).parent / "static" / "admin" / "css" / "base.css"
    with httpx.Client(base_url=server.http_url, timeout=scaled(30)) as client:
        response = client.get(ADMIN_CSS)
        missing = client.get("/static/admin/css/no-such-file.css")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/css")
    assert response.content == shipped.read_bytes()
    assert missing.status_code == 404


def test_uvicorn_with_debug_on_serves_static_files_as_runserver_does(log_dir: Path) -> None:
    """DEBUG=1 under uvicorn: the admin's stylesheet is served (it was a 404: an unstyled admin)."""
    with live_server({"DEBUG": "1"}, log_dir=log_dir) as server:
        assert_serves_the_admin_stylesheet(server)


def test_uvicorn_with_debug_off_serves_static_files_without_a_collectstatic_step(
    log_dir: Path,
) -> None:
    """DEBUG=0 under uvicorn: ServeStatic serves the admin's stylesheet from the apps' files."""
    with live_server(production_env(), log_dir=log_dir) as server:
        assert_serves_the_admin_stylesheet(server)


SUBSCRIBE_CONNECTION = re.compile(r"gql_pubsub-(\d+)-subscribe")


def broker_pids(redis_client: redis.Redis) -> set[int]:
    """The processes holding a gql_pubsub subscription connection (one per started broker)."""
    names = (str(c.get("name", "")) for c in redis_client.client_list())
    return {int(m.group(1)) for name in names if (m := SUBSCRIBE_CONNECTION.fullmatch(name))}


def in_group(pid: int, group: int) -> bool:
    """Whether ``pid`` is a live process of process group ``group`` (a server and its workers)."""
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False


async def test_gunicorn_with_two_uvicorn_workers_serves_queries_and_subscriptions(
    log_dir: Path, redis_client: redis.Redis, pair: Any
) -> None:
    """gunicorn -k uvicorn_worker.UvicornWorker -w 2: HTTP query, live event, clean SIGTERM."""
    alice_token, bob_token, correspondence = pair
    with gunicorn_server({}, workers=2, log_dir=log_dir) as server:
        workers: set[int] = set()

        def both_workers_started() -> bool:  # each worker's broker holds its own connection
            pids = broker_pids(redis_client) - {server.pid}
            workers.update(pid for pid in pids if in_group(pid, server.pid))
            return len(workers) == 2

        await to_thread(wait_until, both_workers_started, 60, "two workers' brokers")

        response = await graphql(server, "{ me { id } }")
        assert response.status_code == 200
        assert response.json() == {"data": {"me": None}}

        async with await connected(server, bob_token) as client:
            await subscribed(client, redis_client, "m", MESSAGE_ADDED, correspondence)
            sent = await send_message(server, alice_token, correspondence.pk, "via gunicorn")
            payload = await client.next_payload("m")
        assert payload == {"data": {"messageAdded": sent}}

        server.process.send_signal(signal.SIGTERM)  # what systemd or Kubernetes sends
        assert await to_thread(server.process.wait, scaled(30)) == 0
        assert not [pid for pid in workers if in_group(pid, server.pid)]  # stopped and reaped
        assert "Traceback" not in server.log.read_text()
