"""The whole path on a live uvicorn server: mutation → commit → Redis → subscriber's socket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import transaction

from example.chat.models import Message

from ..conftest import numsub, wait_numsub
from ..helpers import (
    CORRESPONDENCE_EVENTS,
    DELETE_MESSAGE,
    MESSAGE_ADDED,
    connected,
    data_of,
    edit_message,
    send_message,
    subscribed,
)
from ..services import LiveServer, to_thread


@pytest.fixture
def pair(
    make_user: Callable[..., Any], make_correspondence: Callable[..., Any], token_for: Any
) -> Any:
    """Alice and Bob, their tokens, and a correspondence between them."""
    alice, bob = make_user("alice"), make_user("bob")
    return alice, bob, token_for(alice), token_for(bob), make_correspondence(alice, bob)


async def test_a_sent_message_reaches_a_subscriber_of_its_correspondence(
    server: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """Bob subscribes to messageAdded; Alice's message arrives with author and correspondence."""
    alice, _bob, alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as client:
        await subscribed(client, redis_client, "m", MESSAGE_ADDED, correspondence)
        sent = await send_message(server, alice_token, correspondence.pk, "Hello, Bob")
        payload = await client.next_payload("m")
    assert payload == {"data": {"messageAdded": sent}}
    assert sent["author"] == {"username": alice.username}
    assert sent["correspondence"] == {"id": str(correspondence.pk)}


async def test_create_update_and_delete_reach_the_subscriber_with_their_kind_and_data(
    server: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """correspondenceEvents carries CREATED, UPDATED and DELETED with the message's state."""
    alice, _bob, alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as client:
        await subscribed(client, redis_client, "e", CORRESPONDENCE_EVENTS, correspondence)
        sent = await send_message(server, alice_token, correspondence.pk, "first")
        await edit_message(server, alice_token, sent["id"], "edited")
        await data_of(server, DELETE_MESSAGE, {"id": sent["id"]}, alice_token)
        events = [
            (await client.next_payload("e"))["data"]["correspondenceEvents"] for _ in range(3)
        ]
    assert [e["kind"] for e in events] == ["CREATED", "UPDATED", "DELETED"]
    assert [e["message"]["body"] for e in events] == ["first", "edited", "edited"]
    assert {e["message"]["id"] for e in events} == {sent["id"]}
    assert all(e["message"]["author"]["username"] == alice.username for e in events)


async def test_message_added_ignores_edits(
    server: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """messageAdded filters by kind: an edit is not a new message."""
    _alice, _bob, alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as client:
        await subscribed(client, redis_client, "m", MESSAGE_ADDED, correspondence)
        first = await send_message(server, alice_token, correspondence.pk, "one")
        await edit_message(server, alice_token, first["id"], "changed")
        second = await send_message(server, alice_token, correspondence.pk, "two")
        received = [
            (await client.next_payload("m"))["data"]["messageAdded"]["body"] for _ in range(2)
        ]
    assert received == ["one", "two"]
    assert second["body"] == "two"


async def test_a_rolled_back_transaction_publishes_nothing(
    server: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """A write rolled back in another process never reaches the socket; the next commit does."""
    alice, _bob, _alice_token, bob_token, correspondence = pair

    @sync_to_async
    def write() -> None:
        try:
            with transaction.atomic():
                Message.objects.create(
                    correspondence=correspondence, author=alice, body="rolled back"
                )
                raise LookupError
        except LookupError:
            pass
        Message.objects.create(correspondence=correspondence, author=alice, body="committed")

    async with await connected(server, bob_token) as client:
        await subscribed(client, redis_client, "m", MESSAGE_ADDED, correspondence)
        await write()
        payload = await client.next_payload("m")
    assert payload["data"]["messageAdded"]["body"] == "committed"


@pytest.fixture
def carol(
    pair: Any,
    make_user: Callable[..., Any],
    make_correspondence: Callable[..., Any],
    token_for: Any,
) -> Any:
    """Carol, her token, and her own correspondence with Alice."""
    carol = make_user("carol")
    return carol, token_for(carol), make_correspondence(carol, pair[0])


async def test_a_non_participant_gets_an_error_and_never_an_event(
    server: LiveServer, redis_client: redis.Redis, pair: Any, carol: Any
) -> None:
    """Carol may not subscribe to Alice and Bob's correspondence; her socket stays usable."""
    _alice, _bob, alice_token, _bob_token, correspondence = pair
    _carol, carol_token, own = carol
    async with await connected(server, carol_token) as client:
        await client.subscribe("spy", MESSAGE_ADDED, {"c": str(correspondence.pk)})
        error = await client.receive()
        assert error["id"] == "spy" and error["type"] == "error"
        assert "not a participant" in error["payload"][0]["message"]
        await subscribed(client, redis_client, "own", MESSAGE_ADDED, own)
        for n in range(5):
            await send_message(server, alice_token, correspondence.pk, f"secret {n}")
        await send_message(server, alice_token, own.pk, "for carol")
        # Published after the secrets on the same path: had any secret leaked it would come first.
        payload = await client.next_payload("own")
    assert payload["data"]["messageAdded"]["body"] == "for carol"


async def test_queries_and_mutations_work_over_the_socket(server: LiveServer, pair: Any) -> None:
    """`me` and `sendMessage` over graphql-transport-ws answer with next then complete."""
    alice, _bob, alice_token, _bob_token, correspondence = pair
    async with await connected(server, alice_token) as client:
        await client.subscribe("q", "{ me { username } }")
        assert await client.next_payload("q") == {"data": {"me": {"username": alice.username}}}
        assert await client.receive() == {"id": "q", "type": "complete"}
        await client.subscribe(
            "s",
            'mutation ($c: ID!) { sendMessage(correspondenceId: $c, body: "ws") { body } }',
            {"c": str(correspondence.pk)},
        )
        assert await client.next_payload("s") == {"data": {"sendMessage": {"body": "ws"}}}
        assert await client.receive() == {"id": "s", "type": "complete"}


async def test_a_client_complete_stops_the_subscription_and_its_redis_channel(
    server: LiveServer, redis_client: redis.Redis, pair: Any
) -> None:
    """After `complete` the server unsubscribes from Redis and sends no more events."""
    _alice, _bob, alice_token, bob_token, correspondence = pair
    async with await connected(server, bob_token) as client:
        await subscribed(client, redis_client, "m", MESSAGE_ADDED, correspondence)
        await client.send({"id": "m", "type": "complete"})
        await to_thread(wait_numsub, redis_client, correspondence.channel, 0)
        await send_message(server, alice_token, correspondence.pk, "after complete")
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}  # no `next` came before the pong


async def test_server_shutdown_closes_sockets_and_releases_redis(
    log_dir: Any, redis_client: redis.Redis, pair: Any
) -> None:
    """SIGTERM with live subscriptions: clients see a close, shutdown is clean, no channel stays."""
    from ..services import live_server

    _alice, _bob, _alice_token, bob_token, correspondence = pair
    with live_server({}, log_dir=log_dir) as doomed:
        client = await connected(doomed, bob_token)
        await subscribed(client, redis_client, "m", MESSAGE_ADDED, correspondence)
        await to_thread(doomed.stop)
        closed = await client.expect_close()
        assert closed.code in (1001, 1012)  # going away / service restart
        # uvicorn re-raises SIGTERM after a clean shutdown; the log shows no error.
        assert doomed.process.returncode in (0, -15)
        assert "Traceback" not in doomed.log.read_text()
        assert "ERROR" not in doomed.log.read_text()
    assert numsub(redis_client, correspondence.channel) == 0
