"""No event lost: a committed write succeeds and its event is delivered through a Redis outage."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from django.test import override_settings

from .helpers import MESSAGE_ADDED, SEND_MESSAGE, connected, graphql
from .services import ROOT, RedisServer, live_server, scaled, wait_until


@pytest.fixture
def outage_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop and start again."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def pair(
    make_user: Callable[..., Any], make_correspondence: Callable[..., Any], token_for: Any
) -> Any:
    alice, bob = make_user("alice"), make_user("bob")
    return token_for(alice), token_for(bob), make_correspondence(alice, bob)


def subscribers(url: str, channel: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        name = f"gql_pubsub:0:{channel}"
        return int(dict(client.pubsub_numsub(name)).get(name.encode(), 0))
    except redis.ConnectionError:
        return 0
    finally:
        client.close()


async def test_writes_succeed_while_redis_is_down_and_their_events_arrive_once_it_is_back(
    outage_redis: RedisServer, log_dir: Path, pair: Any
) -> None:
    """20 messages sent with Redis stopped: 20 successes, one log line, 20 deliveries in order."""
    alice_token, bob_token, correspondence = pair
    channel = correspondence.channel
    with live_server({"REDIS_URL": outage_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token) as bob:
            await bob.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
            await asyncio.to_thread(
                wait_until, lambda: subscribers(outage_redis.url, channel) == 1, 10, "SUBSCRIBE"
            )
            outage_redis.stop()
            bodies = [f"during the outage {i}" for i in range(20)]
            for body in bodies:
                response = await graphql(
                    server, SEND_MESSAGE, {"c": str(correspondence.pk), "b": body}, alice_token
                )
                assert response.status_code == 200
                assert "errors" not in response.json(), response.json()
            outage_redis.start()
            back = time.monotonic()
            received = [
                (await bob.next_payload("m", timeout=15))["data"]["messageAdded"]["body"]
                for _ in bodies
            ]
            assert received == bodies
            assert time.monotonic() - back < scaled(4)  # about RECONNECT_GRACE, not seconds
            await bob.expect_silence(0.5)  # once each
        log = server.log.read_text()
    assert "Traceback" not in log
    incidents = re.findall(r"WARNING gql_pubsub\.publishing: Cannot publish", log)
    assert len(incidents) == 1, log


async def test_a_write_during_a_redis_stall_answers_quickly_and_its_event_arrives_once(
    outage_redis: RedisServer, log_dir: Path, pair: Any
) -> None:
    """CLIENT PAUSE for 4 s: the mutation answers within PUBLISH_TIMEOUT, the event follows."""
    alice_token, bob_token, correspondence = pair
    channel = correspondence.channel
    with live_server({"REDIS_URL": outage_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token) as bob:
            await bob.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
            await asyncio.to_thread(
                wait_until, lambda: subscribers(outage_redis.url, channel) == 1, 10, "SUBSCRIBE"
            )
            admin = redis.Redis.from_url(outage_redis.url)
            admin.execute_command("CLIENT", "PAUSE", 4000, "ALL")
            admin.close()
            started = time.monotonic()
            response = await graphql(
                server, SEND_MESSAGE, {"c": str(correspondence.pk), "b": "stalled"}, alice_token
            )
            answered = time.monotonic() - started
            assert "errors" not in response.json(), response.json()
            assert answered < scaled(2.5)  # PUBLISH_TIMEOUT (1 s), not the 4 s stall
            payload = await bob.next_payload("m", timeout=15)
            assert payload["data"]["messageAdded"]["body"] == "stalled"
            await bob.expect_silence(1.0)  # once


def test_a_save_in_the_shell_succeeds_while_redis_is_down(
    outage_redis: RedisServer, make_user: Callable[..., Any]
) -> None:
    """Message.objects.create() in any process: the row is committed and no error is raised."""
    from django.conf import settings

    from example.chat.models import Correspondence, Message

    user = make_user("shell")
    correspondence = Correspondence.objects.create(title="outage")
    outage_redis.stop()
    with override_settings(GQL_PUBSUB={**settings.GQL_PUBSUB, "BROKER_URL": outage_redis.url}):
        message = Message.objects.create(correspondence=correspondence, author=user, body="kept")
    assert Message.objects.filter(pk=message.pk).exists()


def test_the_outbox_keeps_100_writes_and_two_relays_publish_each_once_in_order(
    outage_redis: RedisServer, make_user: Callable[..., Any]
) -> None:
    """Redis down: 100 saves, 100 outbox rows. Back: two relays at once, 100 events, in order."""
    from django.conf import settings

    from example.chat.models import Correspondence, Message
    from gql_pubsub.broker import get_broker
    from gql_pubsub.relay import pending

    user = make_user("outbox")
    correspondence = Correspondence.objects.create(title="outbox")
    outage_redis.stop()
    config = {**settings.GQL_PUBSUB, "BROKER_URL": outage_redis.url}
    with override_settings(GQL_PUBSUB=config):
        for i in range(100):
            Message.objects.create(correspondence=correspondence, author=user, body=f"kept {i}")
        assert pending(get_broker()) == 100
        outage_redis.start()
        listener = redis.Redis.from_url(outage_redis.url).pubsub()
        listener.subscribe(f"gql_pubsub:0:{correspondence.channel}")
        relays = [
            subprocess.Popen(
                [sys.executable, "-m", "django", "gql_pubsub_relay", "--once"],
                cwd=ROOT,
                env={**os.environ, "REDIS_URL": outage_redis.url},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        outputs = [relay.communicate(timeout=scaled(60))[0].decode() for relay in relays]
        assert [relay.returncode for relay in relays] == [0, 0], outputs
        bodies = []
        deadline = time.monotonic() + scaled(5)
        while len(bodies) < 101 and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.2)  # bounded; ends on the deadline
            if message and message["type"] == "message":
                bodies.append(orjson.loads(message["data"])["data"]["body"])
        listener.close()
        assert bodies == [f"kept {i}" for i in range(100)]  # each once, in order
        assert pending(get_broker()) == 0
        assert sum(int(o.split("Relayed ")[1].split()[0]) for o in outputs) == 100
