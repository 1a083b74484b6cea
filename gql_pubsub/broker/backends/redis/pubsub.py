"""The pub/sub connection: one SUBSCRIBE connection per process, read by one task, kept alive by
a heartbeat and reconnected (resubscribing every channel) whenever it is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection

from gql_pubsub.broker.backends.base import (
    RECONNECT_DELAYS,
    BrokerUnavailable,
    GapHandler,
    MessageHandler,
)
from gql_pubsub.broker.backends.redis.delivery import Delivery, History, Tail
from gql_pubsub.broker.backends.redis.scripts import split_message
from gql_pubsub.core import metrics

logger = logging.getLogger("gql_pubsub.redis")

SUBSCRIBE_TIMEOUT = 10.0
"""Seconds a subscribe waits for Redis to confirm before it fails."""


class PubSubConnection:
    """A single SUBSCRIBE connection read by one task; its messages go to a ``Delivery``."""

    def __init__(
        self,
        *,
        prefix: str,
        client_name: str,
        safe_url: str,
        health_check_interval: float,
        tail: Tail,
        history: History,
    ) -> None:
        self.prefix = prefix
        self.safe_url = safe_url
        self.health_check_interval = health_check_interval
        self._client_name = client_name
        self._client: redis.asyncio.Redis | None = None
        self._conn: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._channels: set[str] = set()
        self._delivery = Delivery(self._channels, tail, history)
        self._lost_at = time.time()
        # One entry per SUBSCRIBE sent and not yet confirmed; each holds the waiters it answers.
        self._pending: dict[str, deque[list[asyncio.Future[None]]]] = {}
        self._waiting_for_connection: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(
        self, client: redis.asyncio.Redis, on_message: MessageHandler, on_gap: GapHandler
    ) -> None:
        """Connect (on ``client``'s connection settings) and start reading and the heartbeat."""
        self._delivery.start(on_message, on_gap)
        self._client = client
        await self._open()  # fail fast, with a clear error, when Redis is not there
        self._tasks = [
            asyncio.create_task(self._listen(), name="gql_pubsub redis listener"),
            asyncio.create_task(self._heartbeat(), name="gql_pubsub redis heartbeat"),
        ]

    async def stop(self) -> None:
        """Stop reading and the heartbeat, and close the connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._close_connection()

    def clear(self) -> None:
        """Forget every channel; cancel every subscribe still waiting (after ``stop``)."""
        self._client = None
        self._channels.clear()
        self._delivery.clear()
        for waiters in [*self._waiting_for_connection.values()] + [
            w for entries in self._pending.values() for w in entries
        ]:
            for waiter in waiters:
                waiter.cancel()
        self._pending.clear()
        self._waiting_for_connection.clear()

    def subscribed_channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def subscribe(self, channel: str) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._delivery.note_tail(channel)
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
        self._delivery.forget(channel)
        if self._connected.is_set():
            await self._send("UNSUBSCRIBE", self.prefix + channel)

    async def _open(self) -> None:
        assert self._client is not None
        pool = self._client.connection_pool
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
        if self._connected.is_set():
            self._lost_at = time.time()
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
                    await self._catch_up(read_timeout)
                while True:
                    self._dispatch(await self._read(read_timeout))
                    attempt = 0
                    # Let the groups it woke send before this task reads on: the read's setup
                    # (a timeout, the parser) is then not in front of the event's delivery.
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except (redis.ConnectionError, redis.TimeoutError, OSError, BrokerUnavailable) as error:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                if metrics.METRICS is not None:
                    metrics.METRICS.reconnects.inc()
                logger.warning(
                    "Lost the Redis subscription connection (%s); retrying in %.2fs",
                    error,
                    delay,
                )
                await self._close_connection()
                await asyncio.sleep(delay)

    async def _read(self, timeout: float) -> Any:
        assert self._conn is not None
        response = await self._conn.read_response(disable_decoding=True, timeout=timeout)
        if response is None:  # redis-py's answer to a read timeout: a silent server
            raise redis.TimeoutError(f"no answer to the health check for {timeout:g}s")
        return response

    async def _catch_up(self, read_timeout: float) -> None:
        """After a reconnect: once SUBSCRIBE is confirmed again, hand on what each channel's
        history holds after the last message handed on before the outage, then go live (the
        live messages that arrived meanwhile follow; the offsets drop what was both)."""
        held: list[Any] = []
        while any(self._pending.get(c) for c in self._channels):
            response = await self._read(read_timeout)
            if isinstance(response, list) and response and response[0] == b"message":
                held.append(response)
            else:
                self._dispatch(response)
        await self._delivery.catch_up(self._lost_at)
        for response in held:
            self._dispatch(response)

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return
        kind = response[0]
        if kind == b"message":
            channel = response[1].decode()
            if not channel.startswith(self.prefix):
                return
            channel = channel[len(self.prefix) :]
            data: bytes = response[2]
            epoch, offset, payload = split_message(data)
            self._delivery.hand_on(channel, epoch, offset, payload)
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
