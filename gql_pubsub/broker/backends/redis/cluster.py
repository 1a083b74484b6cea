"""Redis Cluster backend: sharded pub/sub, so that an event travels only through the shard that
owns its channel.

Everything of a channel lives in its slot (keys and shard channel hash-tagged on the channel):
its epoch, its history, its outbox marks and its shard channel ``<prefix>{<channel>}``. An
event is published channel by channel (one script per channel: a script may touch one slot).
Each server process holds one SSUBSCRIBE connection per master that owns a subscribed channel
(``redis_shards``), and follows a channel to its new node when its slot moves or its master
fails over, catching it up from its history.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from gql_pubsub.broker.backends.base import (
    DEFERRED,
    DUPLICATE,
    PUBLISHED,
    BrokerUnavailable,
    DurableBackend,
    GapHandler,
    MessageHandler,
)
from gql_pubsub.broker.backends.redis import RedisBackend
from gql_pubsub.broker.backends.redis.clients import async_cluster_client, sync_cluster_client
from gql_pubsub.broker.backends.redis.delivery import Delivery
from gql_pubsub.broker.backends.redis.publisher import CONNECTIONS
from gql_pubsub.broker.backends.redis.scripts import (
    CLUSTER_PUBLISH_SCRIPT,
    CLUSTER_TAIL_SCRIPT,
    epoch_text,
)
from gql_pubsub.broker.backends.redis.shard_connection import shard_channel
from gql_pubsub.broker.backends.redis.shards import Shards
from gql_pubsub.core.events import START, Epochs, Offset

MARKS_KEPT = 86_400.0
"""Seconds a channel's set of published outbox rows is kept after its last addition."""

_UNREACHABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterException,
)
"""What a cluster client raises when a node or the cluster cannot serve a command now."""


class RedisClusterBackend(RedisBackend):
    """Publishes with SPUBLISH into each channel's shard; receives on one SSUBSCRIBE connection
    per master node that owns a subscribed channel."""

    sharded = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        health_check_interval: float = 15.0,
        publish_timeout: float = 1.0,
        history_length: int = 1000,
        history_age: float = 600.0,
    ) -> None:
        super().__init__(
            url,
            prefix=prefix,
            health_check_interval=health_check_interval,
            publish_timeout=publish_timeout,
            history_length=history_length,
            history_age=history_age,
        )
        # A channel's epoch outlives its history by far: it only goes when the channel has
        # been idle so long that no cursor into it can be resumed any more.
        self._epoch_ms = int(max(10 * history_age, 86_400.0) * 1000)
        self._cluster: redis.asyncio.cluster.RedisCluster | None = None
        self._cluster_publish: Any = None
        self._cluster_tail: Any = None
        self._channels: set[str] = set()
        self._delivery = Delivery(self._channels, self.tail, self.history)
        self._shards = Shards(
            prefix=prefix,
            client_name=self._client_name,
            delivery=self._delivery,
            channels=self._channels,
            health_check_interval=health_check_interval,
        )

    # -- keys ------------------------------------------------------------------------------

    def epoch_key(self, channel: str) -> str:
        return f"{self.prefix}epoch:{{{channel}}}"

    def _marks_key(self, key: str, channel: str) -> str:
        untagged = key.replace("{", "").replace("}", "")
        return f"{self.prefix}{untagged}:{{{channel}}}"

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self, on_message: MessageHandler, on_gap: GapHandler) -> None:
        self._turns = asyncio.Semaphore(CONNECTIONS)  # of this loop
        client = async_cluster_client(
            self.url, client_name=f"{self._client_name}-publish", max_connections=CONNECTIONS
        )
        try:
            await client.initialize()
        except (*_UNREACHABLE, OSError) as error:
            await client.aclose()
            raise BrokerUnavailable(
                f"Cannot reach the Redis Cluster at {self.safe_url}: {error}. "
                "Start it or fix GQL_PUBSUB['BROKER_URL'] (any of its nodes will do)."
            ) from error
        self._cluster = client
        self._cluster_publish = client.register_script(CLUSTER_PUBLISH_SCRIPT)
        self._cluster_tail = client.register_script(CLUSTER_TAIL_SCRIPT)
        self._delivery.start(on_message, on_gap)
        self._shards.start(client)

    async def disconnect(self) -> None:
        await self._shards.stop()
        if self._cluster is not None:
            await self._cluster.aclose()
            self._cluster = None
        self._channels.clear()
        self._delivery.clear()

    # -- subscriptions ---------------------------------------------------------------------

    def subscribed_channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    def shard_connections(self) -> dict[str, frozenset[str]]:
        """Each cluster node this process holds a subscription connection to, with its channels."""
        return self._shards.connections()

    async def subscribe(self, channel: str) -> None:
        await self._delivery.note_tail(channel)
        await self._shards.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._delivery.forget(channel)
        await self._shards.unsubscribe(channel)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, channels: list[str], payload: bytes) -> None:
        if self._cluster is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        for channel in channels:
            keys, args = self._channel_arguments(channel, payload, None, "")
            async with self._turns:
                await self._cluster_publish(keys, args)

    def publish_many_sync(
        self,
        events: list[tuple[list[str], bytes]],
        *,
        mark: tuple[str, list[str]] | None = None,
        backlog: str | None = None,
    ) -> list[int]:
        try:
            client = self._sync()
            if backlog is not None and client.exists(self.prefix + backlog):
                return [DEFERRED] * len(events)
            done = []
            for n, (channels, payload) in enumerate(events):
                published = [
                    int(
                        self._sync_publish(
                            *self._channel_arguments(
                                channel,
                                payload,
                                None if mark is None else mark[0],
                                "" if mark is None else mark[1][n],
                            ),
                            client=client,
                        )
                    )
                    for channel in channels
                ]
                done.append(PUBLISHED if not channels or PUBLISHED in published else DUPLICATE)
            return done
        except _UNREACHABLE as error:
            raise BrokerUnavailable(
                f"Cannot publish to the Redis Cluster at {self.safe_url}: {error}"
            ) from error

    def _channel_arguments(
        self, channel: str, payload: bytes, mark_key: str | None, mark_id: str
    ) -> tuple[list[str], list[Any]]:
        marks = (
            self._marks_key(mark_key, channel) if mark_key is not None else self.epoch_key(channel)
        )
        keys = [self.epoch_key(channel), marks, self.history_key(channel)]
        args: list[Any] = [
            mark_id,
            int(time.time() * 1000),
            self.history_length,
            self._trim,
            int(self.history_age * 1000),
            payload,
            self._epoch_ms,
            int(MARKS_KEPT * 1000),
            shard_channel(self.prefix, channel),
        ]
        return keys, args

    def marked_sync(self, key: str, rows: list[tuple[str, list[str]]]) -> set[str]:
        by_channel: dict[str, list[str]] = defaultdict(list)
        for name, channels in rows:
            for channel in channels:
                by_channel[channel].append(name)
        missing: set[str] = set()
        client = self._sync()
        for channel, names in by_channel.items():
            scores = client.zmscore(self._marks_key(key, channel), names)
            missing.update(n for n, score in zip(names, scores, strict=True) if score is None)
        return {name for name, _ in rows if name not in missing}

    def unmark_sync(self, key: str, rows: list[tuple[str, list[str]]]) -> None:
        by_channel: dict[str, list[str]] = defaultdict(list)
        for name, channels in rows:
            for channel in channels:
                by_channel[channel].append(name)
        client = self._sync()
        for channel, names in by_channel.items():
            client.zrem(self._marks_key(key, channel), *names)

    def prune_marks_sync(self, key: str, before: float, channels: Iterable[str] = ()) -> None:
        client = self._sync()
        for channel in set(channels):
            client.zremrangebyscore(self._marks_key(key, channel), "-inf", f"({int(before * 1000)}")

    def raise_flag_sync(self, key: str, seconds: float) -> None:
        client = self._sync()
        client.incr(self.prefix + key)
        client.pexpire(self.prefix + key, int(seconds * 1000))

    def ping_sync(self) -> None:
        try:
            client = self._sync()
            client.ping(target_nodes=client.PRIMARIES)  # every master answers
        except _UNREACHABLE as error:
            raise BrokerUnavailable(
                f"The Redis Cluster at {self.safe_url} is unreachable: {error}"
            ) from error

    def _sync(self) -> Any:
        """The sync cluster client (any thread), created on first use."""
        with self._sync_lock:
            if self._sync_client is None:
                # Fail fast: a publish that fails is kept and retried by the outbox relay.
                client = sync_cluster_client(
                    self.url,
                    client_name=f"{self._client_name}-publish-sync",
                    socket_timeout=self.publish_timeout,
                    socket_connect_timeout=self.publish_timeout,
                    retry=Retry(NoBackoff(), 0),
                )
                self._sync_client = client  # type: ignore[assignment]
                self._sync_publish = client.register_script(CLUSTER_PUBLISH_SCRIPT)
            return self._sync_client

    # -- reading the histories -------------------------------------------------------------

    async def tail(self, channels: list[str]) -> tuple[Epochs, dict[str, Offset]]:
        if self._cluster is None:
            raise BrokerUnavailable("The broker is not started.")
        replies = await asyncio.gather(*(self._tail_one(c) for c in channels))
        epochs = {c: epoch_text(reply[0]) for c, reply in zip(channels, replies, strict=True)}
        tails = {
            c: Offset.parse(reply[1]) if reply[1] else START
            for c, reply in zip(channels, replies, strict=True)
        }
        return epochs, tails

    async def _tail_one(self, channel: str) -> Any:
        async with self._turns:
            keys = [self.epoch_key(channel), self.history_key(channel)]
            return await self._cluster_tail(keys, [self._epoch_ms])

    def _history_client(self) -> Any:
        return self._cluster


if TYPE_CHECKING:  # mypy checks that the class is all that the broker (and outbox) rely on
    _conforms: type[DurableBackend] = RedisClusterBackend
