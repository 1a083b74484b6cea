"""Prometheus metrics of a real two-worker server while events flow: one scrape reports both
workers (prometheus-client's multiprocess mode), behind the METRICS_TOKEN."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..gqlws import GraphQLWS
from ..helpers import MESSAGE_ADDED, send_message
from ..services import LiveServer, live_server, scaled, to_thread

TOKEN = "scrape-me"


@pytest.fixture
def metered(tmp_path: Path, log_dir: Path) -> Iterator[LiveServer]:
    """Two uvicorn workers of the example with metrics at /metrics."""
    env = {
        "METRICS_PATH": "/metrics",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "METRICS_INTERVAL": "0.2",
    }
    with live_server(env, workers=2, log_dir=log_dir) as server:
        yield server


def parse(text: str) -> dict[str, float]:
    """Samples by name and labels, e.g. ``gql_pubsub_sockets_closed_total{code="4403"}``."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def scrape(server: LiveServer, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(10)) as client:
        return await client.get("/metrics", headers=headers)


async def until(server: LiveServer, wanted: dict[str, float], what: str) -> dict[str, float]:
    """Scrape until every wanted sample has its value (gauges are sampled once a second)."""
    deadline = time.monotonic() + scaled(15)
    while True:
        response = await scrape(server, Authorization=f"Bearer {TOKEN}")
        samples = parse(response.text)
        if all(samples.get(name) == value for name, value in wanted.items()):
            return samples
        if time.monotonic() > deadline:
            shown = {name: samples.get(name) for name in wanted}
            raise AssertionError(f"Timed out waiting for {what}: {shown}")
        await asyncio.sleep(0.2)


async def test_one_scrape_reports_both_workers_sockets_groups_and_deliveries(
    metered: LiveServer, make_user: Any, make_correspondence: Any, token_for: Any
) -> None:
    users = [await to_thread(make_user, "metered") for _ in range(4)]
    room = await to_thread(make_correspondence, *users)
    tokens = [token_for(user) for user in users]
    assert (await scrape(metered)).status_code == 401  # no token, no figures

    sockets = []
    for token in tokens:  # the kernel spreads them over the two workers
        socket = await GraphQLWS.connect(metered.ws_url)
        await socket.init({"token": token})
        await socket.subscribe("1", MESSAGE_ADDED, {"c": str(room.pk)})
        sockets.append(socket)
    try:
        await until(
            metered,
            {"gql_pubsub_connections": 4, "gql_pubsub_group_members": 4},
            "four sockets in groups",
        )
        # Both workers' groups are live once each socket has one event.
        await send_message(metered, tokens[0], room.pk, "warm-up")
        for socket in sockets:
            await socket.next_payload("1")
        for n in range(3):
            await send_message(metered, tokens[0], room.pk, f"counted {n}")
        for socket in sockets:
            for _ in range(3):
                await socket.next_payload("1")
        samples = await until(
            metered, {"gql_pubsub_deliveries_total": 16}, "16 deliveries (4 events to 4 sockets)"
        )
        assert samples["gql_pubsub_operations"] == 4
        assert 1 <= samples["gql_pubsub_groups"] <= 2  # one per worker that has a socket
        assert samples["gql_pubsub_events_received_total"] >= 4
        assert samples["gql_pubsub_publish_seconds_count"] >= 4
        refused = await GraphQLWS.connect(metered.ws_url)
        await refused.send({"type": "connection_init", "payload": {"token": "not a token"}})
        assert (await refused.expect_close()).code == 4403
    finally:
        await asyncio.gather(*(socket.close() for socket in sockets))
    await until(
        metered,
        {"gql_pubsub_connections": 0, 'gql_pubsub_sockets_closed_total{code="4403"}': 1},
        "the sockets gone, and the refusal counted",
    )


@pytest.mark.parametrize(
    ("metrics", "debug", "expected"),
    [
        ({"METRICS_PATH": "metrics"}, True, ["gql_pubsub.E004"]),
        ({"METRICS_PATH": "/metrics"}, False, ["gql_pubsub.W001"]),
        ({"METRICS_PATH": "/metrics", "METRICS_TOKEN": "t"}, False, []),
        ({}, False, []),
    ],
)
def test_the_metrics_settings_are_checked_at_startup(
    metrics: dict[str, str], debug: bool, expected: list[str]
) -> None:
    """A path without "/" is an error; an open scrape with DEBUG off is a warning."""
    from django.conf import settings
    from django.test import override_settings

    from gql_pubsub.checks import check_metrics

    with override_settings(DEBUG=debug, GQL_PUBSUB={**settings.GQL_PUBSUB, **metrics}):
        assert [message.id for message in check_metrics()] == expected
