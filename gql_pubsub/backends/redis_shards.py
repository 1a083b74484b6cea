"""Sharded pub/sub in a Redis Cluster: one SSUBSCRIBE connection per master node that owns a
subscribed channel, and moving a channel (catching it up from its history) when its slot
moves to another node or its master fails over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.connection import Connection, SSLConnection

from .. import metrics
from .base import BrokerUnavailable
from .redis_delivery import Delivery
from .redis_pubsub import RECONNECT_DELAYS, SUBSCRIBE_TIMEOUT
from .redis_scripts import split_message

logger = logging.getLogger("gql_pubsub.redis")


_CONNECTION_OPTIONS = (
    "username",
    "password",
    "credential_provider",
    "socket_connect_timeout",
    "socket_keepalive",
    "socket_keepalive_options",
)
"""What a shard connection takes over from the cluster client's connection settings."""

_TLS_OPTIONS = (
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
)
"""And with TLS (``rediss+cluster://``)."""


class Moved(Exception):
    """The node no longer serves the channel (its slot moved, a failover, the node is gone)."""


def shard_channel(prefix: str, channel: str) -> str:
    """The shard channel of ``channel``: in the slot of its history (hash-tagged on it)."""
    return f"{prefix}{{{channel}}}"


class ShardConnection:
    """One SSUBSCRIBE connection to a cluster node, read by one task; when the node stops
    serving channels (or the connection is lost) it hands them to ``on_moved``."""

    def __init__(
        self,
        node: str,
        connection: Connection,
        *,
        prefix: str,
        delivery: Delivery,
        on_moved: Callable[[ShardConnection, list[str]], None],
        health_check_interval: float,
    ) -> None:
        self.node = node
        self.channels: set[str] = set()
        """Channels subscribed (or being subscribed) here."""
        self.closed = False
        self._conn = connection
        self._prefix = prefix
        self._delivery = delivery
        self._on_moved = on_moved
        self._interval = health_check_interval
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        # The (S)SUBSCRIBE / (S)UNSUBSCRIBE commands sent, in order, whose replies are awaited:
        # tells a reply from an unsubscribe the node sends by itself (its slot moved away).
        self._sent: deque[tuple[bytes, str]] = deque()
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        """Connect, and start reading and the heartbeat."""
        await self._conn.connect()  # type: ignore[no-untyped-call]
        self._tasks = [
            asyncio.create_task(self._listen(), name=f"gql_pubsub shard {self.node}"),
            asyncio.create_task(self._heartbeat(), name=f"gql_pubsub shard {self.node} heartbeat"),
        ]

    async def close(self) -> None:
        """Stop reading and close the connection; waiting subscribes raise ``Moved``."""
        self.closed = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_waiters(list(self._waiters))
        with contextlib.suppress(Exception):
            await self._conn.disconnect(nowait=True)

    def has(self, channel: str) -> bool:
        """Whether ``channel`` is subscribed here, or its SSUBSCRIBE awaits an answer."""
        return channel in self.channels or channel in self._waiters

    @property
    def idle(self) -> bool:
        """Nothing subscribed and nothing being subscribed: the connection can go."""
        return not self.channels and not self._waiters

    async def subscribe(self, channel: str) -> None:
        """SSUBSCRIBE, returning once the node confirmed; ``Moved`` if it does not serve it."""
        if self.closed:
            raise Moved(channel)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.channels.add(channel)
        self._waiters.setdefault(channel, deque()).append(waiter)
        self._sent.append((b"ssubscribe", channel))
        await self._send("SSUBSCRIBE", shard_channel(self._prefix, channel))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            raise BrokerUnavailable(
                f"Redis Cluster node {self.node} did not confirm SSUBSCRIBE {channel!r} "
                f"within {SUBSCRIBE_TIMEOUT:.0f}s; is it reachable?"
            ) from None

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self._fail_waiters([channel])
        self._sent.append((b"sunsubscribe", channel))
        await self._send("SUNSUBSCRIBE", shard_channel(self._prefix, channel))

    async def _send(self, *args: Any) -> None:
        if self.closed:
            return
        try:
            await self._conn.send_command(*args, check_health=False)
        except (redis.ConnectionError, OSError) as error:
            logger.warning("Redis command %s to %s failed (%s)", args[0], self.node, error)
            self._lost()

    async def _listen(self) -> None:
        timeout = self._interval * 2 if self._interval else math.inf
        try:
            while True:
                try:
                    response = await self._conn.read_response(
                        disable_decoding=True, timeout=timeout
                    )
                except redis.ResponseError as error:  # MOVED, for a command sent
                    self._refused(error)
                    continue
                if response is None:
                    raise redis.TimeoutError(f"no answer to the health check for {timeout:g}s")
                self._dispatch(response)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            if not self.closed:
                if metrics.METRICS is not None:
                    metrics.METRICS.reconnects.inc()
                logger.warning("Lost the shard connection to %s (%s)", self.node, error)
                self._lost()

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return
        kind = response[0]
        if kind == b"smessage":
            name = response[1].decode()
            channel = name[len(self._prefix) + 1 : -1]
            if channel in self.channels:
                epoch, offset, payload = split_message(response[2])
                self._delivery.hand_on(channel, epoch, offset, payload)
            return
        channel = response[1].decode()[len(self._prefix) + 1 : -1]
        ours = bool(self._sent) and self._sent[0] == (kind, channel)
        if ours:
            self._sent.popleft()
        if kind == b"ssubscribe":
            waiters = self._waiters.get(channel)
            if waiters:
                waiter = waiters.popleft()
                if not waiters:
                    del self._waiters[channel]
                if not waiter.done():
                    waiter.set_result(None)
        elif kind == b"sunsubscribe" and not ours and channel in self.channels:
            self._move([channel])  # the node no longer owns the channel's slot

    def _refused(self, error: redis.ResponseError) -> None:
        sent = self._sent.popleft() if self._sent else None
        if sent is not None and sent[0] == b"ssubscribe" and sent[1] in self.channels:
            logger.info("%s does not serve %r (%s)", self.node, sent[1], error)
            self._move([sent[1]])

    def _move(self, channels: list[str]) -> None:
        for channel in channels:
            self.channels.discard(channel)
        self._fail_waiters(channels)
        self._on_moved(self, channels)

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        asyncio.get_running_loop().create_task(self._conn.disconnect(nowait=True))
        self._move(list(self.channels | self._waiters.keys()))

    def _fail_waiters(self, channels: list[str]) -> None:
        for channel in channels:
            for waiter in self._waiters.pop(channel, ()):
                if not waiter.done():
                    waiter.set_exception(Moved(channel))
                    waiter.exception()  # retrieved: the subscriber may have stopped waiting

    async def _heartbeat(self) -> None:
        if not self._interval:
            return
        while True:
            await asyncio.sleep(self._interval)
            await self._send("PING")


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
                given = client.nodes_manager.connection_kwargs
                connection_class = given.get("connection_class", Connection)
                options: tuple[str, ...] = _CONNECTION_OPTIONS
                if issubclass(connection_class, SSLConnection):
                    options += _TLS_OPTIONS
                kwargs = {
                    **{k: given[k] for k in options if k in given},
                    "host": node.host,
                    "port": node.port,
                    "client_name": f"{self._client_name}-subscribe",
                    "socket_timeout": None,  # reads block; the heartbeat checks health
                    "protocol": 2,  # RESP2: messages come back from read_response
                }
                conn = ShardConnection(
                    node.name,
                    connection_class(**kwargs),
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
