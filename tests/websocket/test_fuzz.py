"""Thousands of random and malformed frames against a live server: it stays up, closes each bad
socket with the spec's code, and leaves no subscription behind."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..conftest import wait_numsub
from ..gqlws import Closed, GraphQLWS
from ..helpers import MESSAGE_ADDED
from ..services import LiveServer

# Every close code a client may cause; 4500 (internal error) and 1011 are server bugs.
CLIENT_CAUSED = {1000, 1009, 4400, 4401, 4403, 4408, 4409, 4429}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ids = st.one_of(
    st.sampled_from(["1", "2", "a"]),
    st.text(max_size=4),
    st.integers(),
    st.text(min_size=3000, max_size=3000),
)


def frames(correspondence_id: int) -> st.SearchStrategy[str | bytes]:
    queries = st.sampled_from(
        [
            MESSAGE_ADDED,
            "{ me { id } }",
            "subscription { messageAdded(correspondenceId: 0) { id } }",
            "query { nope }",
            "subscription {",
            "",
        ]
    )
    payloads = st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"query": queries},
            optional={"variables": st.one_of(json_values, st.just({"c": str(correspondence_id)}))},
        ),
    )
    kinds = st.sampled_from(
        ["connection_init", "ping", "pong", "subscribe", "complete", "next", "error", "bogus"]
    )
    structured = st.fixed_dictionaries({"type": kinds}, optional={"id": ids, "payload": payloads})
    return st.one_of(
        structured.map(json.dumps),
        structured.map(json.dumps),
        st.text(max_size=64),
        st.binary(max_size=64),
        json_values.map(json.dumps),
    )


@pytest.fixture(scope="module")
def fuzz_target() -> tuple[str, int, str]:
    from django.contrib.auth import get_user_model

    from example.chat.models import Correspondence
    from gql_pubsub.auth.tokens import create_jwt

    name = f"fuzzer-{uuid.uuid4().hex}"
    user = get_user_model().objects.create_user(username=name, password="pw")
    correspondence = Correspondence.objects.create(title="fuzz")
    correspondence.participants.set([user])
    return create_jwt(user), correspondence.pk, name


SERVER_MESSAGES = {"connection_ack", "ping", "pong", "next", "error", "complete"}
"""What a graphql-transport-ws server may send."""


async def play_frames(url: str, token: str, init: bool, sent: list[str | bytes]) -> int | None:
    """Play the frames; end with a ping; return the close code (None: still open and sane)."""
    async with await GraphQLWS.connect(url) as client:
        try:
            if init:
                await client.init({"token": token})
            for frame in sent:
                await client.ws.send(frame)
            await client.send({"type": "ping"})
            # Each frame is answered by a few messages at most (an ack, a result and its
            # complete, a pong): far fewer than this before the pong to the final ping.
            limit = 4 * len(sent) + 10
            for _ in range(limit):
                message = await client.receive(timeout=10)
                assert message.get("type") in SERVER_MESSAGES, message
                if message.get("type") == "pong":
                    return None
        except Closed as closed:
            return closed.code
        raise AssertionError(f"no pong among {limit} messages after {len(sent)} frames")


def test_random_frames_never_break_the_server(
    server: LiveServer, redis_client: redis.Redis, fuzz_target: tuple[str, int, str]
) -> None:
    """300 random sequences (about 2,000 frames): only client-caused close codes, then health."""
    token, correspondence_id, username = fuzz_target

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(init=st.booleans(), sent=st.lists(frames(correspondence_id), min_size=1, max_size=12))
    def play(init: bool, sent: list[str | bytes]) -> None:
        code = asyncio.run(play_frames(server.ws_url, token, init, sent))
        # None: it answered the last ping; 1006: it ended with no close frame (as it could before)
        assert code in (None, 1006) or code in CLIENT_CAUSED, (code, sent)
        outcomes[code] = outcomes.get(code, 0) + 1
        frames_sent.append(len(sent))

    outcomes: dict[int | None, int] = {}
    frames_sent: list[int] = []
    play()
    assert sum(frames_sent) >= 1000  # thousands of frames, counting the inits and pings
    assert outcomes.get(4400, 0) > 0 and outcomes.get(None, 0) > 0  # both bad and fine ones

    from example.chat.models import Correspondence

    channel = Correspondence.channel_for(correspondence_id)
    wait_numsub(redis_client, channel, 0)  # every fuzzed subscription was released

    async def healthy() -> Any:
        async with await GraphQLWS.connect(server.ws_url) as client:
            await client.init({"token": token})
            await client.subscribe("h", "{ me { username } }")
            return await client.next_payload("h")

    assert asyncio.run(healthy()) == {"data": {"me": {"username": username}}}
    assert server.process.poll() is None
    assert "Traceback" not in server.log.read_text()
