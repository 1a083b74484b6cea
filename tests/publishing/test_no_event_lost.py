"""No event lost: a committed write succeeds and its event is delivered through a Redis outage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.test import override_settings

from ..gqlws import Closed, GraphQLWS
from ..helpers import (
    MESSAGE_ADDED,
    SEND_MESSAGE,
    connected,
    each_gets_its_room,
    graphql,
    paced_writes,
    published_data,
    send_message,
    sockets_in_rooms,
)
from ..services import ROOT, RedisServer, live_server, scaled, to_thread, wait_until


@pytest.fixture
def outage_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop and start again."""
    with RedisServer() as server:
        yield server


async def subscribed(client: GraphQLWS, redis_server: RedisServer, correspondence: Any) -> None:
    """Subscribe to messageAdded and wait until the server's SUBSCRIBE reached ``redis_server``."""
    await client.subscribe("m", MESSAGE_ADDED, {"c": str(correspondence.pk)})
    name = f"gql_pubsub:0:{correspondence.channel}"
    admin = redis.Redis.from_url(redis_server.url)
    try:
        await to_thread(
            wait_until,
            lambda: dict(admin.pubsub_numsub(name)).get(name.encode()) == 1,
            10,
            f"a subscription to {name}",
        )
    finally:
        admin.close()


async def test_writes_succeed_while_redis_is_down_and_their_events_arrive_once_it_is_back(
    outage_redis: RedisServer, log_dir: Path, pair: Any
) -> None:
    """20 messages sent with Redis stopped: 20 successes, one log line, 20 deliveries in order."""
    alice_token, bob_token, correspondence = pair
    with live_server({"REDIS_URL": outage_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token) as bob:
            await subscribed(bob, outage_redis, correspondence)
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
    with live_server({"REDIS_URL": outage_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token) as bob:
            await subscribed(bob, outage_redis, correspondence)
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


async def test_a_revocation_during_an_outage_reaches_the_socket_before_any_later_event(
    outage_redis: RedisServer,
    log_dir: Path,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """Dana is removed while Redis is down: once it is back her subscription ends, and no
    message written after her removal reaches her; Eve gets them all, in order."""
    from django.conf import settings

    from example.chat.models import Correspondence, Message

    dana, eve = await to_thread(lambda: (make_user("dana"), make_user("eve")))
    room = await to_thread(make_correspondence, dana, eve)
    tokens = await to_thread(lambda: (token_for(dana), token_for(eve)))
    with live_server({"REDIS_URL": outage_redis.url}, log_dir=log_dir) as server:
        dana_socket, eve_socket = [await connected(server, token) for token in tokens]
        for client in (dana_socket, eve_socket):
            await subscribed(client, outage_redis, room)
        outage_redis.stop()

        @sync_to_async
        def remove_then_write() -> None:
            config = {**settings.GQL_PUBSUB, "BROKER_URL": outage_redis.url}
            with override_settings(GQL_PUBSUB=config):
                Correspondence.objects.get(pk=room.pk).participants.remove(dana)
                for n in range(5):
                    Message.objects.create(correspondence=room, author=eve, body=f"after {n}")

        await remove_then_write()
        outage_redis.start()
        ended = await dana_socket.receive(timeout=15)
        assert ended["type"] == "next"
        assert "revoked" in ended["payload"]["errors"][0]["message"]
        assert await dana_socket.receive() == {"id": "m", "type": "complete"}
        bodies = [
            (await eve_socket.next_payload("m", timeout=15))["data"]["messageAdded"]["body"]
            for _ in range(5)
        ]
        assert bodies == [f"after {n}" for n in range(5)]
        await dana_socket.expect_silence(0.5)
        await asyncio.gather(dana_socket.close(), eve_socket.close())


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
    from gql_pubsub.broker.process import get_broker
    from gql_pubsub.publishing.outbox.forwarder import pending

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
        bodies = [data["body"] for data in published_data(listener, until=101)]
        listener.close()
        assert bodies == [f"kept {i}" for i in range(100)]  # each once, in order
        assert pending(get_broker()) == 0
        assert sum(int(o.split("Relayed ")[1].split()[0]) for o in outputs) == 100


KILLED_AFTER_COMMIT = """
import os, signal, sys
import django
django.setup()
from django.db import transaction
from example.chat.models import Message
with transaction.atomic():
    # Registered first, so it runs first: the process dies between the commit and the publish.
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    Message.objects.create(correspondence_id=int(sys.argv[1]), author_id=int(sys.argv[2]),
                           body="orphan")
"""


def test_an_event_whose_writer_was_killed_after_the_commit_is_relayed_once(
    make_user: Callable[..., Any], make_correspondence: Callable[..., Any], redis_url: str
) -> None:
    """SIGKILL between COMMIT and PUBLISH: the row's claim expires and a relay publishes it."""
    from django.conf import settings

    from gql_pubsub.models import OutboxEvent
    from gql_pubsub.publishing.outbox.forwarder import relay_once

    user = make_user("killed")
    correspondence = make_correspondence(user)
    own_url = redis_url.rsplit("/", 1)[0] + "/13"  # a destination no other relay serves
    listener = redis.Redis.from_url(own_url).pubsub()
    listener.subscribe(f"gql_pubsub:13:{correspondence.channel}")
    try:
        writer = subprocess.run(
            [sys.executable, "-c", KILLED_AFTER_COMMIT, str(correspondence.pk), str(user.pk)],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "example.settings", "REDIS_URL": own_url},
            capture_output=True,
            timeout=scaled(60),
        )
        assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()
        config = {**settings.GQL_PUBSUB, "BROKER_URL": own_url, "RELAY_CLAIM_TIMEOUT": 1}
        orphan = OutboxEvent.objects.filter(payload__contains='"orphan"')
        assert orphan.count() == 1  # committed, never published
        with override_settings(GQL_PUBSUB=config):
            wait_until(lambda: relay_once() >= 1, 10, "the relay to publish the orphan")
            assert [data["body"] for data in published_data(listener, until=2)] == ["orphan"]
            wait_until(lambda: (relay_once(), not orphan.exists())[1], 10, "its row deleted")
    finally:
        listener.close()


async def test_events_published_while_the_subscription_connection_is_down_arrive_after_it(
    outage_redis: RedisServer, log_dir: Path, make_user: Callable[..., Any], pair: Any
) -> None:
    """Redis drops the server's SUBSCRIBE connection; 20 messages are written from another
    process at once: the server catches up from the history and Bob gets each, in order."""
    from django.conf import settings

    from example.chat.models import Message

    _, bob_token, correspondence = pair
    with live_server({"REDIS_URL": outage_redis.url}, log_dir=log_dir) as server:
        async with await connected(server, bob_token) as bob:
            await subscribed(bob, outage_redis, correspondence)
            admin = redis.Redis.from_url(outage_redis.url)
            author = await to_thread(make_user, "writer")
            bodies = [f"while resubscribing {n}" for n in range(20)]

            @sync_to_async
            def drop_then_write() -> None:
                config = {**settings.GQL_PUBSUB, "BROKER_URL": outage_redis.url}
                with override_settings(GQL_PUBSUB=config):
                    Message.objects.create(correspondence=correspondence, author=author, body="x")
                    assert admin.client_kill_filter(_type="pubsub") == 1
                    for body in bodies:
                        Message.objects.create(
                            correspondence=correspondence, author=author, body=body
                        )

            await drop_then_write()
            received = [
                (await bob.next_payload("m", timeout=15))["data"]["messageAdded"]["body"]
                for _ in range(len(bodies) + 1)
            ]
            assert received == ["x", *bodies]
            await bob.expect_silence(0.5)  # once each
            admin.close()
        log = server.log.read_text()
    assert "Lost the Redis subscription connection" in log
    assert "Traceback" not in log and "may have been lost" not in log


async def test_a_redis_that_lost_its_data_is_never_silence_every_follower_is_told_to_refetch(
    log_dir: Path, pair: Any
) -> None:
    """Redis restarts empty (no persistence): Bob, connected throughout, is told (REFETCH, and
    his socket closes with 1001 to check his access again); Carol, who left with a cursor, gets
    REFETCH when she resumes, then what follows."""
    from gql_pubsub.broker.cursors import REFETCH

    alice_token, bob_token, correspondence = pair
    with (
        RedisServer(persistent=False) as volatile,
        live_server({"REDIS_URL": volatile.url}, log_dir=log_dir) as server,
    ):
        async with await connected(server, bob_token) as bob:
            await subscribed(bob, volatile, correspondence)
            async with await connected(server, bob_token) as carol:
                await carol.send(resume_request(correspondence, None))
                assert "data" not in await carol.next_payload("r")  # live from here
                await send_message(server, alice_token, correspondence.pk, "before")
                assert (await bob.next_payload("m"))["data"]["messageAdded"]["body"] == "before"
                cursor = (await carol.next_payload("r"))["extensions"]["cursor"]
            volatile.stop()
            volatile.start()
            told = []
            with contextlib.suppress(Closed):
                while True:  # bounded: the socket closes, or receive() fails the test
                    told.append(await bob.receive(timeout=15))
            assert [m["payload"]["errors"][0]["extensions"]["code"] for m in told] in (
                [],
                [REFETCH],
            ), told
            assert bob.ws.close_code == 1001
        async with await connected(server, bob_token) as carol:
            await carol.send(resume_request(correspondence, cursor))
            signal = await carol.next_payload("r", timeout=15)
            assert signal["errors"][0]["extensions"]["code"] == REFETCH, signal
            await send_message(server, alice_token, correspondence.pk, "after")
            payload = await carol.next_payload("r")
            assert payload["data"]["messageAdded"]["body"] == "after"
        log = server.log.read_text()
    assert "may have been lost" in log


def resume_request(correspondence: Any, after: str | None) -> dict[str, Any]:
    """A ``subscribe`` (id "r") to messageAdded that asks for cursors, from ``after``."""
    variables = {"c": str(correspondence.pk)}
    payload = {"query": MESSAGE_ADDED, "variables": variables, "extensions": {"after": after}}
    return {"id": "r", "type": "subscribe", "payload": payload}


async def test_a_5_second_redis_crash_under_20_writes_a_second_loses_nothing_for_200_sockets(
    outage_redis: RedisServer,
    log_dir: Path,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> None:
    """2 workers, 200 subscribed sockets in 2 rooms, sendMessage at 20/s for 10 s; Redis is
    killed 2 s in and restarted 5 s later: every mutation succeeds, every socket receives every
    message of its room once, in order, within seconds of Redis's return; each worker logs the
    incident once."""
    sockets_per_room, rate, seconds = 100, 20, 10
    writer, reader = await to_thread(lambda: (make_user("w"), make_user("r")))
    rooms = [await to_thread(make_correspondence, writer, reader) for _ in range(2)]
    writer_token, reader_token = await to_thread(lambda: (token_for(writer), token_for(reader)))
    with live_server({"REDIS_URL": outage_redis.url}, workers=2, log_dir=log_dir) as server:
        sockets = await sockets_in_rooms(
            server, writer_token, reader_token, rooms, sockets_per_room
        )
        try:
            back: list[float] = []

            def restart() -> None:
                outage_redis.start()
                back.append(time.monotonic())

            bodies = await paced_writes(
                server,
                writer_token,
                rooms,
                rate=rate,
                seconds=seconds,
                at={2 * rate: outage_redis.stop, 7 * rate: restart},
            )
            await each_gets_its_room(server, sockets, bodies, timeout=20)
            drained = time.monotonic() - back[0]
            assert drained < scaled(10 + 5)  # the last writes came 3 s after the return
            await sockets[0].expect_silence(0.5)
        finally:
            await asyncio.gather(*(client.close() for client in sockets))
        log = server.log.read_text()
    assert "Traceback" not in log
    assert 1 <= len(re.findall(r"WARNING gql_pubsub\.publishing: Cannot publish", log)) <= 2, log


def test_an_outbox_id_used_before_a_database_reset_is_published_again(redis_url: str) -> None:
    """Event 1 is published (and recorded) as outbox row N; the outbox is emptied and its ids
    restart, as after a database reset: event 2, row N again, is published too."""
    import uuid

    from django.conf import settings
    from django.db import connection, transaction

    from gql_pubsub import publish
    from gql_pubsub.models import OutboxEvent

    prefix = f"test-reset-{uuid.uuid4().hex}:"  # a destination no running relay tidies
    config = {**settings.GQL_PUBSUB, "BROKER_URL": redis_url, "CHANNEL_PREFIX": prefix}
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe(f"{prefix}reset")
    assert listener.get_message(timeout=scaled(5))["type"] == "subscribe"  # type: ignore[index]
    with override_settings(GQL_PUBSUB=config):
        with transaction.atomic():
            publish("reset", "custom", {"n": 1})
        row = OutboxEvent.objects.filter(channels=["reset"]).get()
        OutboxEvent.objects.filter(pk=row.pk).delete()  # the reset: the row is gone...
        with connection.cursor() as cursor:  # ...and the next row takes its id again
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence('gql_pubsub_outboxevent', 'id'), "
                    "%s, false)",
                    [row.pk],
                )
            else:
                cursor.execute(
                    "UPDATE sqlite_sequence SET seq = %s WHERE name = 'gql_pubsub_outboxevent'",
                    [row.pk - 1],
                )
        with transaction.atomic():
            publish("reset", "custom", {"n": 2})
        assert OutboxEvent.objects.filter(channels=["reset"]).get().pk == row.pk
    got = [data["n"] for data in published_data(listener, until=2)]
    listener.close()
    assert got == [1, 2]
