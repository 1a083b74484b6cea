"""One SSUBSCRIBE connection to one master of a Redis Cluster: the shard channels it carries,
read by one task and kept alive by a heartbeat; a channel the node no longer serves is handed
back to ``Shards`` to move."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.connection import Connection, SSLConnection

from gql_pubsub.broker.backends.base import BrokerUnavailable
from gql_pubsub.broker.backends.redis.delivery import Delivery
from gql_pubsub.broker.backends.redis.pubsub import SUBSCRIBE_TIMEOUT
from gql_pubsub.broker.backends.redis.scripts import split_message
from gql_pubsub.core import metrics

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
                await asyncio.sleep(0)  # the groups it woke send first (see PubSubConnection)
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


def node_connection(
    client: redis.asyncio.cluster.RedisCluster, host: str, port: int | str, client_name: str
) -> Connection:
    """A subscribe connection to one node, with the cluster client's credentials and TLS."""
    given = client.nodes_manager.connection_kwargs
    connection_class = given.get("connection_class", Connection)
    options: tuple[str, ...] = _CONNECTION_OPTIONS
    if issubclass(connection_class, SSLConnection):
        options += _TLS_OPTIONS
    kwargs = {
        **{k: given[k] for k in options if k in given},
        "host": host,
        "port": port,
        "client_name": f"{client_name}-subscribe",
        "socket_timeout": None,  # reads block; the heartbeat checks health
        "protocol": 2,  # RESP2: messages come back from read_response
    }
    return connection_class(**kwargs)  # type: ignore[no-any-return]
