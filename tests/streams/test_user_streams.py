"""The seed's channels from plain Python: listen() and listen_to_user_subscriptions()."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from gql_pubsub import Broker, EventKind, get_broker, listen, publish
from gql_pubsub.auth.policies import AccessDenied, check_access
from gql_pubsub.models import Channel
from gql_pubsub.streams.user_streams import listen_to_user_subscriptions

from ..services import scaled


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    """The process broker, as the on-commit publishers reach it: in memory, or Redis."""
    config = dict(settings.GQL_PUBSUB)
    if request.param == "memory":
        config["BROKER_URL"] = None
    with override_settings(GQL_PUBSUB=config):
        broker = get_broker()
        await broker.start()
        yield broker
        await broker.stop()


@pytest.fixture
def news(make_user: Callable[..., Any]) -> Any:
    """A user subscribed to one `news:` channel (readable by any authenticated user)."""
    user = make_user("reader")
    name = f"news:{uuid.uuid4().hex[:10]}-{user.pk}"
    Channel.objects.create(name=name).subscribe(user)
    return user, name


async def next_event(events: AsyncIterator[Any], timeout: float = 5) -> Any:
    return await asyncio.wait_for(anext(events), scaled(timeout))


async def test_listen_is_live_once_its_block_is_entered(broker: Broker) -> None:
    """async with listen(...) as events: what is published inside the block arrives."""
    channel = f"plain-{uuid.uuid4().hex[:10]}"
    async with listen(channel, "other") as events:
        await broker.publish([channel], _event(1))
        got = await next_event(events)
    assert (got.channel, got.data) == (channel, {"n": 1})
    assert broker.subscriber_count(channel) == 0  # released on exit


async def test_a_users_stream_carries_their_channels_and_follows_a_new_subscription(
    broker: Broker, news: Any
) -> None:
    """Subscribed channels flow at once; a channel subscribed to later flows within a second."""
    user, first = news
    later = f"news:{uuid.uuid4().hex[:10]}-later"
    async with listen_to_user_subscriptions(user) as events:
        await sync_to_async(publish)(first, "custom", {"n": 1})
        got = await next_event(events)
        assert (got.channel, got.kind, got.data) == (first, EventKind.CUSTOM, {"n": 1})

        await sync_to_async(lambda: Channel.objects.create(name=later).subscribe(user))()
        reading = asyncio.ensure_future(next_event(events, timeout=2))
        started = asyncio.get_running_loop().time()
        while not reading.done():  # publish until the stream has added the channel
            await sync_to_async(publish)(later, "custom", {"n": 2})
            await asyncio.wait([reading], timeout=0.05)
        got = reading.result()
        assert asyncio.get_running_loop().time() - started < scaled(1)
    assert got.channel == later


async def test_unsubscribing_stops_a_channel_at_once(broker: Broker, news: Any) -> None:
    """After unsubscribe() returns, nothing more of that channel reaches the open stream."""
    user, first = news
    other = f"news:{uuid.uuid4().hex[:10]}-other"
    await sync_to_async(lambda: Channel.objects.create(name=other).subscribe(user))()
    async with listen_to_user_subscriptions(user) as events:
        assert events.channels == {first, other}
        await sync_to_async(lambda: Channel.objects.get(name=first).unsubscribe(user))()
        for n in range(20):
            await sync_to_async(publish)(first, "custom", {"n": n})
        await sync_to_async(publish)(other, "custom", {"marker": True})
        got = await next_event(events)
    assert (got.channel, got.data) == (other, {"marker": True})


async def test_a_rolled_back_unsubscribe_is_restored_each_time(broker: Broker, news: Any) -> None:
    """The revocation announced before a commit that never comes is undone (twice running:
    the first restore must not keep the second from being rechecked)."""
    user, channel = news
    config = {**settings.GQL_PUBSUB, "REVOCATION_CONFIRM_TIMEOUT": 0.2}
    if broker.url is None:
        config["BROKER_URL"] = None
    with override_settings(GQL_PUBSUB=config):
        async with listen_to_user_subscriptions(user) as events:

            @sync_to_async
            def unsubscribe_then_roll_back() -> None:
                from django.db import transaction

                try:
                    with transaction.atomic():
                        Channel.objects.get(name=channel).unsubscribe(user)
                        raise LookupError
                except LookupError:
                    pass

            for attempt in range(2):
                await unsubscribe_then_roll_back()
                reading = asyncio.ensure_future(next_event(events, timeout=5))
                while not reading.done():
                    await sync_to_async(publish)(channel, "custom", {"back": attempt})
                    await asyncio.wait([reading], timeout=0.1)
                got = reading.result()
                assert (got.channel, got.data) == (channel, {"back": attempt})
                await sync_to_async(publish)(channel, "custom", {"drained": attempt})
                while got.data != {"drained": attempt}:  # skip the copies published meanwhile
                    got = await next_event(events)


async def test_channels_the_policy_denies_are_not_streamed(
    broker: Broker, make_user: Callable[..., Any]
) -> None:
    """A subscription row to a channel no policy allows carries nothing; the refusal says why."""
    user = await sync_to_async(make_user)("denied")
    secret, news = f"secret:{uuid.uuid4().hex[:10]}", f"news:{uuid.uuid4().hex[:10]}-ok"

    @sync_to_async
    def rows() -> None:
        Channel.objects.create(name=secret).subscribe(user)  # written directly, bypassing checks
        Channel.objects.create(name=news).subscribe(user)

    await rows()
    with pytest.raises(AccessDenied, match="No access policy covers channel"):
        await sync_to_async(check_access)(user, secret)
    async with listen_to_user_subscriptions(user) as events:
        assert events.channels == {news}
        await sync_to_async(publish)(secret, "custom", {"leak": True})
        await sync_to_async(publish)(news, "custom", {"ok": True})
        got = await next_event(events)
    assert got.channel == news


def _event(n: int) -> Any:
    from gql_pubsub import Event

    return Event(kind=EventKind.CUSTOM, model=None, pk=None, data={"n": n})


def test_a_subscription_reads_as_its_user_channel_and_state(make_user: Callable[..., Any]) -> None:
    """How the admin lists a Subscription: "user → channel (active)", or "(inactive)"."""
    user = make_user("reader")
    channel = Channel.objects.create(name=f"str-{user.username}")
    assert str(channel.subscribe(user)) == f"{user.username} → {channel.name} (active)"
    assert str(channel.unsubscribe(user)) == f"{user.username} → {channel.name} (inactive)"


async def test_a_deleted_subscription_is_announced_inactive_before_and_after_its_commit(
    broker: Broker, news: Any
) -> None:
    """The control channel's wire form, which other processes (of other releases) read:
    ``{"channel": …, "active": false, "committed": false}`` at once, then committed."""
    from gql_pubsub.core.control import control_channel
    from gql_pubsub.models import Subscription

    user, channel = news
    async with listen(control_channel(user.pk)) as announcements:
        await sync_to_async(
            lambda: Subscription.objects.filter(user=user, channel__name=channel).delete()
        )()
        early, committed = await next_event(announcements), await next_event(announcements)
    assert early.data == {"channel": channel, "active": False, "committed": False}
    assert committed.data == {"channel": channel, "active": False, "committed": True}
    assert early.data["active"] is False and committed.data["active"] is False
