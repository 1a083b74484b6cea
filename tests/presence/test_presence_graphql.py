"""Who is online, through the example's GraphQL API: two real servers on one Redis, real
sockets, a server SIGKILLed, a participant removed mid-session."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from ..conftest import wait_numsub
from ..gqlws import GraphQLWS
from ..helpers import connected, data_of, graphql
from ..services import LiveServer, live_server, scaled, to_thread

HEARTBEAT = 0.5
PRESENCE = """subscription ($c: ID!) {
  presence(correspondenceId: $c) { members { id username } joined { id username } left }
}"""
ONLINE = "query ($c: ID!) { online(correspondenceId: $c) { id username } }"


@pytest.fixture
def servers(log_dir: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers of one site: one Redis, one database."""
    env = {"PRESENCE_HEARTBEAT": str(HEARTBEAT)}
    with live_server(env, log_dir=log_dir) as one, live_server(env, log_dir=log_dir) as two:
        yield one, two


@pytest.fixture
def slow_heartbeat_servers(log_dir: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers whose connections would take a minute to expire: a leave seen sooner is
    the leave itself."""
    env = {"PRESENCE_HEARTBEAT": "30"}
    with live_server(env, log_dir=log_dir) as one, live_server(env, log_dir=log_dir) as two:
        yield one, two


@pytest.fixture
def room(make_user: Callable[..., Any], make_correspondence: Callable[..., Any]) -> Any:
    from gql_pubsub.auth.tokens import create_jwt

    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    correspondence = make_correspondence(alice, bob)
    tokens = {user.username.split("-")[0]: create_jwt(user) for user in (alice, bob, carol)}
    return tokens, {"alice": str(alice.pk), "bob": str(bob.pk)}, correspondence


async def change(client: GraphQLWS, op_id: str = "p") -> dict[str, Any]:
    payload = await client.next_payload(op_id, timeout=scaled(10))
    assert "errors" not in payload, payload
    result: dict[str, Any] = payload["data"]["presence"]
    return result


def ids(people: list[dict[str, Any]] | None) -> list[str]:
    assert people is not None
    return [person["id"] for person in people]


async def present(server: LiveServer, token: str, correspondence: Any) -> GraphQLWS:
    client = await connected(server, token, answer_pings=True)
    await client.subscribe("p", PRESENCE, {"c": str(correspondence.pk)})
    return client


async def test_participants_see_who_is_online_across_servers_one_member_for_several_tabs(
    servers: tuple[LiveServer, LiveServer], room: Any
) -> None:
    """Alice first sees herself; Bob's two tabs on two servers are one join and, once both
    closed, one leave; the query agrees; Carol, not a participant, is refused."""
    one, two = servers
    tokens, pks, correspondence = room
    async with contextlib.AsyncExitStack() as stack:
        alice = await stack.enter_async_context(await present(one, tokens["alice"], correspondence))
        assert ids((await change(alice))["members"]) == [pks["alice"]]
        bob = await present(two, tokens["bob"], correspondence)
        state = await change(bob)
        assert sorted(ids(state["members"])) == sorted(pks.values())
        joined = await change(alice)
        assert joined["members"] is None and joined["joined"][0]["id"] == pks["bob"]
        assert joined["joined"][0]["username"].startswith("bob")
        second_tab = await present(one, tokens["bob"], correspondence)
        assert sorted(ids((await change(second_tab))["members"])) == sorted(pks.values())
        online = await data_of(one, ONLINE, {"c": str(correspondence.pk)}, tokens["alice"])
        assert sorted(ids(online["online"])) == sorted(pks.values())
        await bob.close()
        await alice.expect_silence(3 * HEARTBEAT)  # his other tab keeps him online
        await second_tab.close()
        assert (await change(alice))["left"] == [pks["bob"]]
        carol = await stack.enter_async_context(await connected(one, tokens["carol"]))
        await carol.subscribe("p", PRESENCE, {"c": str(correspondence.pk)})
        refused = await carol.receive(skip_pings=True)
        assert refused["type"] == "error", refused
        assert "not a participant" in refused["payload"][0]["message"]
        await alice.expect_silence(3 * HEARTBEAT)


async def test_a_killed_servers_participants_go_offline_within_two_heartbeats(
    servers: tuple[LiveServer, LiveServer], room: Any
) -> None:
    """SIGKILL Bob's server: his socket closes without a word; Alice sees him leave in time."""
    one, two = servers
    tokens, pks, correspondence = room
    async with await present(one, tokens["alice"], correspondence) as alice:
        await change(alice)
        bob = await present(two, tokens["bob"], correspondence)
        await change(bob)
        assert ids((await change(alice))["joined"]) == [pks["bob"]]
        two.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert (await change(alice))["left"] == [pks["bob"]]
        assert time.monotonic() - killed <= 2 * HEARTBEAT + scaled(0.5)
        with contextlib.suppress(Exception):
            await bob.close()


async def test_a_participant_removed_mid_session_goes_offline_and_stops_seeing_presence(
    servers: tuple[LiveServer, LiveServer], room: Any
) -> None:
    """Removing Bob revokes the channel: his presence subscription ends with an error, and
    Alice sees him leave."""
    one, two = servers
    tokens, pks, correspondence = room
    async with (
        await present(one, tokens["alice"], correspondence) as alice,
        await present(two, tokens["bob"], correspondence) as bob,
    ):
        await sees_join(alice, bob, pks)
        await bob.subscribe("t", TYPING, {"c": str(correspondence.pk)})
        await sync_to_async(correspondence.participants.remove)(int(pks["bob"]))
        ended: dict[str, str] = {}
        completed: set[str] = set()
        while completed != {"p", "t"}:  # both of his operations end, in any order
            message = await bob.receive(skip_pings=True)
            if message["type"] == "next":
                ended[message["id"]] = message["payload"]["errors"][0]["message"]
            else:
                assert message["type"] == "complete", message
                completed.add(message["id"])
        assert set(ended) == {"p", "t"} and all("revoked" in m for m in ended.values()), ended
        assert (await change(alice))["left"] == [pks["bob"]]


async def sees_join(alice: Any, bob: Any, pks: dict[str, str]) -> None:
    """Both have their first presence state, and Bob is among Alice's members: in her first
    state, or in the change after it."""
    state = await change(alice)
    await change(bob)
    if pks["bob"] not in ids(state["members"]):
        assert ids((await change(alice))["joined"]) == [pks["bob"]]


TYPING = "subscription ($c: ID!) { typing(correspondenceId: $c) { userId username } }"
SET_TYPING = "mutation ($c: ID!) { setTyping(correspondenceId: $c) }"


async def test_typing_reaches_the_participants_now_and_is_kept_nowhere(
    servers: tuple[LiveServer, LiveServer], room: Any, redis_client: Any
) -> None:
    """Bob types on one server, Alice sees it on the other; no history holds it; too fast is
    refused with the limit said; Carol, not a participant, may neither send nor see it."""
    one, two = servers
    tokens, pks, correspondence = room
    variables = {"c": str(correspondence.pk)}
    async with await connected(one, tokens["alice"]) as alice:
        await alice.subscribe("t", TYPING, variables)
        live = f"ephemeral:{correspondence.channel}"  # nothing replays what comes before
        await to_thread(wait_numsub, redis_client, live, 1)
        assert await data_of(two, SET_TYPING, variables, tokens["bob"]) == {"setTyping": True}
        typing = (await alice.next_payload("t"))["data"]["typing"]
        assert typing["userId"] == pks["bob"] and typing["username"].startswith("bob")
        assert not redis_client.keys(f"*history:{{ephemeral:{correspondence.channel}}}")
        answers = await asyncio.gather(
            *(graphql(two, SET_TYPING, variables, tokens["bob"]) for _ in range(12))
        )
        refused = [a.json()["errors"][0]["message"] for a in answers if "errors" in a.json()]
        assert refused and "EPHEMERAL_RATE" in refused[0], refused
        denied = (await graphql(one, SET_TYPING, variables, tokens["carol"])).json()
        assert "not a participant" in denied["errors"][0]["message"]


async def test_a_deactivated_participant_goes_offline_at_once(
    slow_heartbeat_servers: tuple[LiveServer, LiveServer], room: Any
) -> None:
    """Deactivating Bob closes his socket (4403); Alice sees him leave, without waiting for
    his connection to expire."""
    one, two = slow_heartbeat_servers
    tokens, pks, correspondence = room
    async with await present(one, tokens["alice"], correspondence) as alice:
        bob = await present(two, tokens["bob"], correspondence)
        await sees_join(alice, bob, pks)

        def deactivate() -> None:
            from django.contrib.auth import get_user_model

            get_user_model().objects.filter(pk=pks["bob"]).update(is_active=False)
            user = get_user_model().objects.get(pk=pks["bob"])
            user.save(update_fields=["is_active"])  # the save announces it

        await sync_to_async(deactivate)()
        assert (await bob.expect_close()).code == 4403
        assert (await change(alice))["left"] == [pks["bob"]]  # within 10 s: not an expiry


async def test_a_client_that_reconnects_gets_the_whole_list_again(
    servers: tuple[LiveServer, LiveServer], room: Any
) -> None:
    """Alice's socket drops while Bob comes and goes: subscribing again, she is given everyone
    online now (never the list as it was, nor a diff against what she missed)."""
    one, two = servers
    tokens, pks, correspondence = room
    alice = await present(one, tokens["alice"], correspondence)
    await change(alice)
    alice.ws.transport.abort()  # the socket drops: no close frame
    with contextlib.suppress(Exception):
        await alice.close()
    async with await present(two, tokens["bob"], correspondence) as bob:
        assert pks["bob"] in ids((await change(bob))["members"])
        async with await present(one, tokens["alice"], correspondence) as again:
            state = await change(again)
            assert sorted(ids(state["members"])) == sorted(pks.values())
