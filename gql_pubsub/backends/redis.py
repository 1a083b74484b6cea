"""Redis backend: one pub/sub connection per process, shared by every subscription."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections import deque
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..events import START, Offset
from .base import BrokerUnavailable, Entries, GapHandler, MessageHandler, covered

logger = logging.getLogger("gql_pubsub.redis")

SUBSCRIBE_TIMEOUT = 10.0
"""Seconds a subscribe waits for Redis to confirm before it fails."""

RECONNECT_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds between attempts to reconnect the subscription connection: a returned Redis is used
again within about a second (the outbox relay waits that long before it publishes)."""

# One event to its channels, atomically: unless the outbox row is already recorded as published
# (or, for a writer, the relay is still publishing older rows: the destination's backlog flag),
# record it, append the event to each channel's history stream and PUBLISH it with its place
# ("<epoch> <stream id> <payload>"). The epoch names this Redis's data: it changes when the data
# is lost, and with it every cursor becomes unusable (the client is told to refetch).
_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[1], epoch)
end
"""
"""Lua: the epoch in KEYS[1], created (from the server's clock) if there is none yet."""

PUBLISH_SCRIPT = (
    _EPOCH
    + """
if ARGV[1] ~= '' then
  if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
  if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
for i = 4, #KEYS do
  local id = redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[5], ARGV[4], '*', 'p', ARGV[7])
  redis.call('PEXPIRE', KEYS[i], ARGV[6])
  redis.call('PUBLISH', ARGV[i + 4], epoch .. ' ' .. id .. ' ' .. ARGV[7])
end
return 1
"""
)

_LOWER_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

PUBLISHED, DUPLICATE, DEFERRED = 1, 0, 2
"""What PUBLISH_SCRIPT did with an outbox event: published it; nothing (it was already); nothing
(the relay is publishing older events of the destination: the event must wait its turn)."""

# The epoch (created if there is none yet) and the newest id of each history ('' when empty).
TAIL_SCRIPT = (
    _EPOCH
    + """
local out = {epoch}
for i = 2, #KEYS do
  local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
  out[i] = last[1] and last[1][1] or ''
end
return out
"""
)

# What a resume needs, read atomically: the epoch, whether the history exists, its first id,
# whether it was ever trimmed, and the entries after ARGV[1].
HISTORY_SCRIPT = """
local epoch = redis.call('GET', KEYS[1]) or ''
if redis.call('EXISTS', KEYS[2]) == 0 then return {epoch, 0, '', 0} end
local info = redis.call('XINFO', 'STREAM', KEYS[2])
local added, length, first = -1, 0, ''
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then added = info[i + 1] end
  if info[i] == 'length' then length = info[i + 1] end
  if info[i] == 'first-entry' and info[i + 1] then first = info[i + 1][1] end
end
local trimmed = 1
if added == length then trimmed = 0 end
return {epoch, 1, first, trimmed, redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+')}
"""


class RedisBackend:
    """Publishes with PUBLISH; receives on a single SUBSCRIBE connection read by one task."""

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
        self.url = url
        self.prefix = prefix
        self.history_length = history_length
        self.history_age = history_age
        # Redis trims in blocks of ~100 entries ('~'): cheap, and never shorter than asked.
        self._trim = "~" if history_length >= 100 else "="
        self._epoch_key = prefix + "epoch"
        self.health_check_interval = health_check_interval
        self.publish_timeout = publish_timeout
        self._client_name = f"gql_pubsub-{os.getpid()}"
        self._sync_client: redis.Redis | None = None
        self._sync_lock = threading.Lock()
        self._async_client: redis.asyncio.Redis | None = None
        self._conn: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._on_message: MessageHandler | None = None
        self._on_gap: GapHandler | None = None
        self._channels: set[str] = set()
        # Per channel: the place of the last message handed on (dedup, catch-up), or, before
        # any, the place of its history when it was subscribed (and when that was).
        self._delivered: dict[str, tuple[str, Offset]] = {}
        self._since: dict[str, tuple[str, Offset]] = {}
        self._lost_at = time.time()
        self._sync_publish: Any = None
        self._tail_requests: list[tuple[list[str], asyncio.Future[tuple[str, dict[str, Offset]]]]]
        self._tail_requests = []
        self._tail_task: asyncio.Task[None] | None = None
        self._async_publish: Any = None
        # One entry per SUBSCRIBE sent and not yet confirmed; each holds the waiters it answers.
        self._pending: dict[str, deque[list[asyncio.Future[None]]]] = {}
        self._waiting_for_connection: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self, on_message: MessageHandler, on_gap: GapHandler) -> None:
        self._on_message = on_message
        self._on_gap = on_gap
        self._async_client = redis.asyncio.Redis.from_url(
            self.url, client_name=f"{self._client_name}-publish", max_connections=16
        )
        self._async_publish = self._async_client.register_script(PUBLISH_SCRIPT)
        await self._open()  # fail fast, with a clear error, when Redis is not there
        self._tasks = [
            asyncio.create_task(self._listen(), name="gql_pubsub redis listener"),
            asyncio.create_task(self._heartbeat(), name="gql_pubsub redis heartbeat"),
        ]

    async def disconnect(self) -> None:
        if self._tail_task is not None:
            self._tail_task.cancel()
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
        self._delivered.clear()
        self._since.clear()
        for waiters in [*self._waiting_for_connection.values()] + [
            w for entries in self._pending.values() for w in entries
        ]:
            for waiter in waiters:
                waiter.cancel()
        self._pending.clear()
        self._waiting_for_connection.clear()
        self._on_message = None
        self._on_gap = None

    # -- subscriptions ---------------------------------------------------------------------

    def subscribed_channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def subscribe(self, channel: str) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if channel not in self._delivered and channel not in self._since:
            # Where the history was before SUBSCRIBE: a reconnect catches up from there.
            with contextlib.suppress(redis.RedisError, OSError):
                epoch, tails = await self.tail([channel])
                self._since[channel] = (epoch, tails[channel])
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
        self._delivered.pop(channel, None)
        self._since.pop(channel, None)
        if self._connected.is_set():
            await self._send("UNSUBSCRIBE", self.prefix + channel)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, channels: list[str], payload: bytes) -> None:
        client = self._async_client
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        keys, args = self._publish_arguments(channels, payload, None, "")
        await self._async_publish(keys, args)

    def publish_sync(self, channels: list[str], payload: bytes) -> None:
        self.publish_many_sync([(channels, payload)])

    def publish_many_sync(
        self,
        events: list[tuple[list[str], bytes]],
        *,
        mark: tuple[str, list[str]] | None = None,
        backlog: str | None = None,
    ) -> list[int]:
        """Publish payloads in order in one round trip, each with its place in its channels'
        histories. With ``mark=(key, names)`` (one unique name per event) an event whose name
        the sorted set ``key`` already holds is not published again, and the others' names are
        added to it (scored by the time), in the same atomic step: the outbox's record of what
        went out. With ``backlog`` (a key), such an event is not published while that key exists
        (``DEFERRED``): the relay is publishing older ones. Returns what was done with each.
        """
        try:
            with self._sync().pipeline(transaction=False) as pipe:
                for n, (channels, payload) in enumerate(events):
                    keys, args = self._publish_arguments(
                        channels,
                        payload,
                        None if mark is None else mark[0],
                        "" if mark is None else mark[1][n],
                        backlog,
                    )
                    self._sync_publish(keys, args, client=pipe)
                return [int(done) for done in pipe.execute()]
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(
                f"Cannot publish to Redis at {self.safe_url}: {error}"
            ) from error

    def _publish_arguments(
        self,
        channels: list[str],
        payload: bytes,
        mark_key: str | None,
        mark_id: str,
        backlog: str | None = None,
    ) -> tuple[list[str], list[Any]]:
        marks = self.prefix + mark_key if mark_key is not None else self._epoch_key
        waits = self.prefix + backlog if backlog is not None else self._epoch_key
        keys = [self._epoch_key, marks, waits, *(self.history_key(c) for c in channels)]
        args: list[Any] = [
            mark_id,
            int(time.time() * 1000),
            "0" if backlog is not None else "1",
            self.history_length,
            self._trim,
            int(self.history_age * 1000),
            payload,
            *(self.prefix + c for c in channels),
        ]
        return keys, args

    def history_key(self, channel: str) -> str:
        """The Redis stream that holds ``channel``'s recent events (hash-tagged on the channel)."""
        return f"{self.prefix}history:{{{channel}}}"

    async def tail(self, channels: list[str]) -> tuple[str, dict[str, Offset]]:
        # Requests made in the same turn of the event loop share one script call (and one
        # connection): many subscriptions starting at once cost one round trip.
        future: asyncio.Future[tuple[str, dict[str, Offset]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._tail_requests.append((channels, future))
        if self._tail_task is None or self._tail_task.done():
            self._tail_task = asyncio.create_task(self._read_tails())
        return await future

    async def _read_tails(self) -> None:
        await asyncio.sleep(0)  # let the other subscriptions of this turn ask too
        while self._tail_requests:
            requests, self._tail_requests = self._tail_requests, []
            channels = sorted({c for wanted, _ in requests for c in wanted})
            try:
                client = self._async_client
                if client is None:
                    raise BrokerUnavailable("The broker is not started.")
                keys = [self._epoch_key, *(self.history_key(c) for c in channels)]
                reply = await client.eval(TAIL_SCRIPT, len(keys), *keys)
                epoch = reply[0].decode()
                tails = {
                    channel: Offset.parse(last) if last else START
                    for channel, last in zip(channels, reply[1:], strict=True)
                }
            except Exception as error:
                for _, future in requests:
                    if not future.done():
                        future.set_exception(error)
                continue
            for wanted, future in requests:
                if not future.done():
                    future.set_result((epoch, {c: tails[c] for c in wanted}))

    async def history(
        self, channel: str, epoch: str, after: Offset, issued: float
    ) -> Entries | None:
        client = self._async_client
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        keys = [self._epoch_key, self.history_key(channel)]
        reply = await client.eval(HISTORY_SCRIPT, 2, *keys, str(after))
        if reply[0].decode() != epoch:
            return None
        exists = bool(reply[1])
        first = Offset.parse(reply[2]) if reply[2] else None
        if not covered(
            after,
            exists=exists,
            first=first,
            trimmed=bool(reply[3]),
            issued=issued,
            age=self.history_age,
        ):
            return None
        entries = reply[4] if exists else []
        return [(Offset.parse(entry_id), _field(fields, b"p")) for entry_id, fields in entries]

    def marked_sync(self, key: str, names: list[str]) -> set[str]:
        """Which of ``names`` the sorted set ``key`` holds (see ``publish_many_sync``)."""
        if not names:
            return set()
        scores = self._sync().zmscore(self.prefix + key, names)
        return {n for n, score in zip(names, scores, strict=True) if score is not None}

    def unmark_sync(self, key: str, names: list[str]) -> None:
        """Forget ``names`` in the sorted set ``key``."""
        if names:
            self._sync().zrem(self.prefix + key, *names)

    def raise_flag_sync(self, key: str, seconds: float) -> None:
        """Set (or bump) the counter ``key`` for ``seconds``: each raise changes its value."""
        with self._sync().pipeline(transaction=True) as pipe:
            pipe.incr(self.prefix + key)
            pipe.pexpire(self.prefix + key, int(seconds * 1000))
            pipe.execute()

    def flag_sync(self, key: str) -> bytes | None:
        """The flag's value now (None: not raised)."""
        value = self._sync().get(self.prefix + key)
        return value if isinstance(value, bytes) or value is None else value.encode()

    def lower_flag_sync(self, key: str, seen: bytes | None) -> None:
        """Delete the flag unless it was raised again since its value was ``seen``."""
        if seen is not None:
            self._sync().eval(_LOWER_SCRIPT, 1, self.prefix + key, seen)

    def prune_marks_sync(self, key: str, before: float) -> None:
        """Forget the names added to the sorted set ``key`` before ``before`` (Unix time)."""
        self._sync().zremrangebyscore(self.prefix + key, "-inf", f"({int(before * 1000)}")

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
                self._sync_publish = self._sync_client.register_script(PUBLISH_SCRIPT)
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
        for channel in sorted(self._channels):
            position = self._delivered.get(channel) or self._since.get(channel)
            if position is None:
                continue
            # Every message before the connection was lost was read: the place was current then.
            epoch, after, issued = position[0], position[1], self._lost_at
            try:
                entries = await self.history(channel, epoch, after, issued)
            except redis.ResponseError as error:  # e.g. a Redis without streams
                logger.warning("Cannot read the history of %r (%s)", channel, error)
                entries = None
            if entries is None:
                self._gap(channel, "the history no longer holds the events since the outage")
                continue
            for offset, payload in entries:
                self._hand_on(channel, epoch, offset, payload)
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
            self._hand_on(channel, epoch, offset, payload)
        elif kind == b"subscribe":
            channel = response[1].decode()[len(self.prefix) :]
            entries = self._pending.get(channel)
            if entries:
                for waiter in entries.popleft():
                    if not waiter.done():
                        waiter.set_result(None)
                if not entries:
                    del self._pending[channel]

    def _hand_on(self, channel: str, epoch: str, offset: Offset, payload: bytes) -> None:
        """Pass a message on once per offset, noting where the channel is."""
        if self._on_message is None or channel not in self._channels:
            return
        if epoch:
            last = self._delivered.get(channel)
            if last is not None and last[0] == epoch and offset <= last[1]:
                return  # already handed on (a catch-up and a live message overlapped)
            since = self._since.pop(channel, None)
            known = last[0] if last is not None else since[0] if since is not None else epoch
            if known != epoch:
                self._gap(channel, "Redis lost its data (its history epoch changed)")
            self._delivered[channel] = (epoch, offset)
        self._on_message(channel, payload, epoch, offset)

    def _gap(self, channel: str, reason: str) -> None:
        logger.warning("Events on %r may have been lost: %s", channel, reason)
        if self._on_gap is not None:
            self._on_gap(channel, reason)

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


def split_message(data: bytes) -> tuple[str, Offset, bytes]:
    """A message's epoch, offset and payload (a message without them: ``""``, ``START``)."""
    if data[:1] == b"{":
        return "", START, data
    epoch, offset, payload = data.split(b" ", 2)
    text = _epochs.get(epoch)
    if text is None:  # one per Redis data life: decoded once
        if len(_epochs) > 16:
            _epochs.clear()
        text = _epochs[epoch] = epoch.decode()
    ms, _, seq = offset.partition(b"-")
    return text, Offset(int(ms), int(seq)), payload


_epochs: dict[bytes, str] = {}


def _field(fields: list[bytes], name: bytes) -> bytes:
    for key, value in zip(fields[::2], fields[1::2], strict=True):
        if key == name:
            return value
    raise ValueError(f"history entry without {name!r}")
