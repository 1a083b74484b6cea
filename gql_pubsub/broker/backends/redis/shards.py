"""Sharded pub/sub in a Redis Cluster: one SSUBSCRIBE connection per master node that owns a
subscribed channel, and moving a channel (catching it up from its history) when its slot
moves to another node or its master fails over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

import redis
import redis.asyncio
import redis.asyncio.cluster

from gql_pubsub.broker.backends.base import RECONNECT_DELAYS, BrokerUnavailable
from gql_pubsub.broker.backends.redis.delivery import Delivery
from gql_pubsub.broker.backends.redis.pubsub import SUBSCRIBE_TIMEOUT
from gql_pubsub.broker.backends.redis.shard_connection import (
    Moved,
    ShardConnection,
    node_connection,
    shard_channel,
)

logger = logging.getLogger("gql_pubsub.redis")


class Shards:
    """Every subscribed channel on the master that owns it: one ``ShardConnection`` per node
    with channels, opened on the first and closed after the last; moved channels follow."""

    def __init__(
        self,
        *,
        prefix: str,
        client_name: str,
        delivery: Delivery,
        channels: set[str],
        health_check_interval: float,
    ) -> None:
        self.prefix = prefix
        self._client_name = client_name
        self._delivery = delivery
        self._channels = channels  # the subscribed channels (shared with the delivery)
        self._interval = health_check_interval
        self._client: redis.asyncio.cluster.RedisCluster | None = None
        self._nodes: dict[str, ShardConnection] = {}
        self._where: dict[str, ShardConnection] = {}
        self._moving: dict[str, asyncio.Task[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._opening = asyncio.Lock()
        self._refreshed = 0.0

    def start(self, client: redis.asyncio.cluster.RedisCluster) -> None:
        """Use ``client``'s map of the cluster (and its credentials) from now on."""
        self._client = client
        self._opening = asyncio.Lock()  # of this event loop

    async def stop(self) -> None:
        """Close every shard connection; stop moving channels."""
        for task in self._moving.values():
            task.cancel()
        self._moving.clear()
        nodes, self._nodes = list(self._nodes.values()), {}
        self._where.clear()
        for conn in nodes:
            await conn.close()
        for task in self._closing:
            await task
        self._closing.clear()
        self._client = None

    def connections(self) -> dict[str, frozenset[str]]:
        """Each node with a shard connection, and the channels subscribed there."""
        return {node: frozenset(conn.channels) for node, conn in self._nodes.items()}

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        await self._place(channel, time.monotonic() + SUBSCRIBE_TIMEOUT)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        moving = self._moving.pop(channel, None)
        if moving is not None:
            moving.cancel()
        self._where.pop(channel, None)
        # Wherever it is subscribed or being subscribed (a subscribe cancelled midway too).
        for conn in [c for c in self._nodes.values() if c.has(channel)]:
            await conn.unsubscribe(channel)
            if conn.idle and self._nodes.get(conn.node) is conn:
                del self._nodes[conn.node]
                await conn.close()

    async def _place(self, channel: str, deadline: float) -> None:
        """Subscribe ``channel`` on the node that owns it now, following the cluster's changes
        until ``deadline`` (``math.inf``: for as long as it is wanted)."""
        attempt = 0
        while channel in self._channels:
            try:
                conn = await self._connection_for(channel)
                await conn.subscribe(channel)
                if channel in conn.channels:  # else it left that node as soon as confirmed
                    self._where[channel] = conn
                    return
            except (Moved, redis.RedisError, OSError) as error:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(
                        f"No Redis Cluster node serves channel {channel!r} ({error}); "
                        "is every slot covered by a reachable master?"
                    ) from error
                await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
                attempt += 1
                await self._refresh()

    async def _connection_for(self, channel: str) -> ShardConnection:
        client = self._client
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        node = client.get_node_from_key(shard_channel(self.prefix, channel))
        if node is None:
            raise Moved(channel)  # no master serves its slot now
        async with self._opening:
            conn = self._nodes.get(node.name)
            if conn is None or conn.closed:
                conn = ShardConnection(
                    node.name,
                    node_connection(client, node.host, node.port, self._client_name),
                    prefix=self.prefix,
                    delivery=self._delivery,
                    on_moved=self._moved,
                    health_check_interval=self._interval,
                )
                await conn.open()
                self._nodes[node.name] = conn
            return conn

    async def _refresh(self) -> None:
        """Learn the cluster's slots again (at most every 50 ms)."""
        if self._client is None or time.monotonic() - self._refreshed < 0.05:
            return
        self._refreshed = time.monotonic()
        with contextlib.suppress(redis.RedisError, OSError):
            await self._client.nodes_manager.initialize()

    def _moved(self, conn: ShardConnection, channels: list[str]) -> None:
        if (conn.closed or conn.idle) and self._nodes.get(conn.node) is conn:
            del self._nodes[conn.node]  # a node that serves none of ours: leave it
            if not conn.closed:
                self._closing.add(asyncio.get_running_loop().create_task(conn.close()))
                for task in [t for t in self._closing if t.done()]:
                    self._closing.discard(task)
        lost_at = time.time()
        for channel in channels:
            if self._where.get(channel) is conn:
                del self._where[channel]
                if channel in self._channels and channel not in self._moving:
                    # It was live here: follow it, and hand on what it missed meanwhile.
                    self._moving[channel] = asyncio.get_running_loop().create_task(
                        self._follow(channel, lost_at), name=f"gql_pubsub follow {channel}"
                    )

    async def _follow(self, channel: str, lost_at: float) -> None:
        logger.info("Channel %r left its node; subscribing where it is now", channel)
        # Live messages on the new node wait until the history has handed on what came before.
        self._delivery.hold(channel)
        try:
            await self._refresh()
            await self._place(channel, math.inf)
            if channel in self._channels:
                try:
                    await self._delivery.catch_up(lost_at, [channel])
                except (redis.RedisError, OSError) as error:
                    self._delivery.gap(channel, f"its history could not be read ({error})")
        finally:
            self._delivery.release(channel)
            if self._moving.get(channel) is asyncio.current_task():
                del self._moving[channel]
