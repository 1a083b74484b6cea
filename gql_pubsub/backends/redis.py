"""Redis backend: one pub/sub connection per process, shared by every subscription."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
from collections import deque
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.retry import Retry

from .base import BrokerUnavailable, MessageHandler

logger = logging.getLogger("gql_pubsub.redis")

SUBSCRIBE_TIMEOUT = 10.0
"""Seconds a subscribe waits for Redis to confirm before it fails."""

RECONNECT_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds between attempts to reconnect the subscription connection: a returned Redis is used
again within about a second (the outbox relay waits that long before it publishes)."""


class RedisBackend:
    """Publishes with PUBLISH; receives on a single SUBSCRIBE connection read by one task."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        health_check_interval: float = 15.0,
        publish_timeout: float = 1.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.health_check_interval = health_check_interval
        self.publish_timeout = publish_timeout
        self._client_name = f"gql_pubsub-{os.getpid()}"
        self._sync_client: redis.Redis | None = None
        self._sync_lock = threading.Lock()
        self._async_client: redis.asyncio.Redis | None = None
        self._conn: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._on_message: MessageHandler | None = None
        self._channels: set[str] = set()
        # One entry per SUBSCRIBE sent and not yet confirmed; each holds the waiters it answers.
        self._pending: dict[str, deque[list[asyncio.Future[None]]]] = {}
        self._waiting_for_connection: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._async_client = redis.asyncio.Redis.from_url(
            self.url, client_name=f"{self._client_name}-publish", max_connections=16
        )
        await self._open()  # fail fast, with a clear error, when Redis is not there
        self._tasks = [
            asyncio.create_task(self._listen(), name="gql_pubsub redis listener"),
            asyncio.create_task(self._heartbeat(), name="gql_pubsub redis heartbeat"),
        ]

    async def disconnect(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._close_connection()
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None
        self._channels.clear()
        for waiters in [*self._waiting_for_connection.values()] + [
            w for entries in self._pending.values() for w in entries
        ]:
            for waiter in waiters:
                waiter.cancel()
        self._pending.clear()
        self._waiting_for_connection.clear()
        self._on_message = None

    # -- subscriptions ---------------------------------------------------------------------

    def subscribed_channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def subscribe(self, channel: str) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._channels.add(channel)
        if self._connected.is_set():
            self._pending.setdefault(channel, deque()).append([waiter])
            await self._send("SUBSCRIBE", self.prefix + channel)
        else:
            self._waiting_for_connection.setdefault(channel, []).append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            raise BrokerUnavailable(
                f"Redis at {self.safe_url} did not confirm SUBSCRIBE {channel!r} "
                f"within {SUBSCRIBE_TIMEOUT:.0f}s; is it reachable?"
            ) from None

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._connected.is_set():
            await self._send("UNSUBSCRIBE", self.prefix + channel)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, channels: list[str], payload: bytes) -> None:
        client = self._async_client
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        async with client.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.publish(self.prefix + channel, payload)
            await pipe.execute()

    def publish_sync(self, channels: list[str], payload: bytes) -> None:
        self.publish_many_sync([(channels, payload)])

    def publish_many_sync(
        self, events: list[tuple[list[str], bytes]], *, mark: tuple[str, list[int]] | None = None
    ) -> None:
        """Publish payloads in order in one round trip; with ``mark=(key, ids)`` also add the
        ids to the sorted set ``key``, atomically (MULTI): the outbox's record of what went out.
        """
        try:
            with self._sync().pipeline(transaction=mark is not None) as pipe:
                for channels, payload in events:
                    for channel in channels:
                        pipe.publish(self.prefix + channel, payload)
                if mark is not None and mark[1]:
                    key, ids = mark
                    pipe.zadd(self.prefix + key, {str(i): i for i in ids})
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(
                f"Cannot publish to Redis at {self.safe_url}: {error}"
            ) from error

    def marked_sync(self, key: str, ids: list[int]) -> set[int]:
        """Which of ``ids`` the sorted set ``key`` holds (see ``publish_many_sync``)."""
        if not ids:
            return set()
        scores = self._sync().zmscore(self.prefix + key, [str(i) for i in ids])
        return {i for i, score in zip(ids, scores, strict=True) if score is not None}

    def unmark_sync(self, key: str, ids: list[int]) -> None:
        """Forget ``ids`` in the sorted set ``key``."""
        if ids:
            self._sync().zrem(self.prefix + key, *(str(i) for i in ids))

    def ping_sync(self) -> None:
        """Raise ``BrokerUnavailable`` unless Redis answers a PING now."""
        try:
            self._sync().ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(f"Redis at {self.safe_url} is unreachable: {error}") from error

    def _sync(self) -> redis.Redis:
        """The sync publishing client (any thread), created on first use."""
        with self._sync_lock:
            if self._sync_client is None:
                # Fail fast, no retries: a publish that fails is kept and retried by the outbox
                # relay, and the write that made the event must not wait for Redis.
                self._sync_client = redis.Redis.from_url(
                    self.url,
                    client_name=f"{self._client_name}-publish-sync",
                    socket_timeout=self.publish_timeout,
                    socket_connect_timeout=self.publish_timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            return self._sync_client

    # -- the connection ---------------------------------------------------------------------

    async def _open(self) -> None:
        assert self._async_client is not None
        pool = self._async_client.connection_pool
        kwargs = {**pool.connection_kwargs, "client_name": f"{self._client_name}-subscribe"}
        kwargs["socket_timeout"] = None  # reads block until a message; the heartbeat checks health
        kwargs["protocol"] = 2  # RESP2: messages come back from read_response, not a push handler
        conn: AbstractConnection = pool.connection_class(**kwargs)
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, OSError) as error:
            raise BrokerUnavailable(
                f"Cannot connect to Redis at {self.safe_url}: {str(error).rstrip('.')}. "
                "Start Redis or fix GQL_PUBSUB['BROKER_URL']."
            ) from error
        self._conn = conn
        waiting, self._waiting_for_connection = self._waiting_for_connection, {}
        if self._channels:
            for channel in self._channels:
                self._pending.setdefault(channel, deque()).append(waiting.pop(channel, []))
            await conn.send_command("SUBSCRIBE", *(self.prefix + c for c in self._channels))
        for waiters in waiting.values():  # channels dropped while disconnected: nothing to wait for
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._connected.set()

    async def _close_connection(self) -> None:
        self._connected.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
        # Confirmations of what was in flight will never come: wait for the next connection.
        for channel, entries in self._pending.items():
            for waiters in entries:
                self._waiting_for_connection.setdefault(channel, []).extend(waiters)
        self._pending.clear()

    async def _send(self, *args: Any) -> None:
        conn = self._conn
        if conn is None:
            return  # the reconnect resubscribes from self._channels
        try:
            await conn.send_command(*args, check_health=False)
        except (redis.ConnectionError, OSError) as error:
            logger.warning("Redis command %s failed (%s); reconnecting", args[0], error)

    async def _listen(self) -> None:
        attempt = 0
        read_timeout = self.health_check_interval * 2 if self.health_check_interval else math.inf
        while True:
            try:
                if self._conn is None:
                    await self._open()
                    logger.info("Reconnected to Redis at %s", self.safe_url)
                assert self._conn is not None
                while True:
                    response = await self._conn.read_response(
                        disable_decoding=True, timeout=read_timeout
                    )
                    if response is None:  # redis-py's answer to a read timeout: a silent server
                        raise redis.TimeoutError(
                            f"no answer to the health check for {read_timeout:g}s"
                        )
                    attempt = 0
                    self._dispatch(response)
            except asyncio.CancelledError:
                raise
            except (redis.ConnectionError, redis.TimeoutError, OSError, BrokerUnavailable) as error:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.warning(
                    "Lost the Redis subscription connection (%s); retrying in %.2fs",
                    error,
                    delay,
                )
                await self._close_connection()
                await asyncio.sleep(delay)

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return
        kind = response[0]
        if kind == b"message":
            channel = response[1].decode()
            if channel.startswith(self.prefix) and self._on_message is not None:
                self._on_message(channel[len(self.prefix) :], response[2])
        elif kind == b"subscribe":
            channel = response[1].decode()[len(self.prefix) :]
            entries = self._pending.get(channel)
            if entries:
                for waiter in entries.popleft():
                    if not waiter.done():
                        waiter.set_result(None)
                if not entries:
                    del self._pending[channel]

    async def _heartbeat(self) -> None:
        if not self.health_check_interval:
            return
        while True:
            await asyncio.sleep(self.health_check_interval)
            if self._connected.is_set():
                await self._send("PING")

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
        return self.url
