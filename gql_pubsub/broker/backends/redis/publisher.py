"""Publishing to Redis: each event into its channels' histories, from the event loop or from any
thread, and the outbox's records there (the marks of published rows, the backlog flag)."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import hiredis
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from gql_pubsub.broker.backends.base import BrokerUnavailable
from gql_pubsub.broker.backends.redis.clients import close, sync_client
from gql_pubsub.broker.backends.redis.scripts import LOWER_SCRIPT, PUBLISH_SCRIPT

_COMMAND_NAME = inspect.signature(redis.ConnectionPool.get_connection).parameters.get(
    "command_name"
)
_POOL_ARGS: tuple[str, ...] = (
    ("EVALSHA",)
    if _COMMAND_NAME is not None and _COMMAND_NAME.default is inspect.Parameter.empty
    else ()
)
"""What ``ConnectionPool.get_connection`` takes: nothing since redis-py 5.3 (which warns about
a command name), a command name before."""

CONNECTIONS = 16
"""Connections the event loop's client opens at most; commands beyond wait their turn (redis-py
raises instead of waiting for one)."""


class RedisPublisher:
    """Publishes with PUBLISH_SCRIPT: from sync code on a client of its own (no event loop
    needed), from the event loop on the client ``RedisBackend.connect`` opens."""

    durable: ClassVar[bool] = True
    """A ``DurableBackend``: histories and outbox marks live in Redis."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
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
        self.publish_timeout = publish_timeout
        self._client_name = f"gql_pubsub-{os.getpid()}"
        self._sync_client: redis.Redis | None = None
        self._sync_lock = threading.Lock()
        self._sync_publish: Any = None
        # The event loop's client and its PUBLISH_SCRIPT, from connect() to disconnect().
        self._async_client: redis.asyncio.Redis | None = None
        self._async_publish: Any = None
        self._turns = asyncio.Semaphore(CONNECTIONS)

    async def publish(self, channels: list[str], payload: bytes) -> None:
        client = self._async_client
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        keys, args = self._publish_arguments(channels, payload, None, "")
        async with self._turns:
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
        calls = [
            self._publish_arguments(
                channels,
                payload,
                None if mark is None else mark[0],
                "" if mark is None else mark[1][n],
                backlog,
            )
            for n, (channels, payload) in enumerate(events)
        ]
        try:
            client = self._sync()
            script = self._sync_publish
            if len(calls) == 1:  # EVALSHA (SCRIPT LOAD once, should Redis not know it)
                keys, args = calls[0]
                try:
                    return [int(self._evalsha(client, script.sha, keys, args))]
                except NoScriptError:
                    client.script_load(script.script)
                    return [int(self._evalsha(client, script.sha, keys, args))]
            # redis-py's pipeline asks SCRIPT EXISTS before each execute() of a script it was
            # given: one more round trip. EVALSHA, and the script's text where Redis lost it.
            done = [0] * len(calls)
            pending = list(range(len(calls)))
            for _ in range(2):
                with client.pipeline(transaction=False) as pipe:
                    for n in pending:
                        keys, args = calls[n]
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    results = pipe.execute(raise_on_error=False)
                lost = []
                for n, result in zip(pending, results, strict=True):
                    if isinstance(result, NoScriptError):
                        lost.append(n)  # not run: Redis restarted, or its scripts were flushed
                    elif isinstance(result, Exception):
                        raise result
                    else:
                        done[n] = int(result)
                if not lost:
                    break
                client.script_load(script.script)
                pending = lost
            else:
                raise NoScriptError("Redis keeps losing the publish script (SCRIPT FLUSH?)")
            return done
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(
                f"Cannot publish to Redis at {self.safe_url}: {error}"
            ) from error

    @staticmethod
    def _evalsha(client: redis.Redis, sha: str, keys: list[str], args: list[Any]) -> Any:
        """One EVALSHA on a connection of ``client``'s pool, packed by hiredis: redis-py's
        command layer cost 40 of the 135 us a publish took (and its latency to subscribers)."""
        pool = client.connection_pool
        conn = pool.get_connection(*_POOL_ARGS)
        try:
            conn.send_packed_command(  # type: ignore[no-untyped-call]
                [hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))],
                check_health=False,
            )
            return conn.read_response()
        except redis.ResponseError:
            raise  # the script's own answer: the connection is in step
        except BaseException:
            # A reply may still come: it must never be read as the next command's.
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(conn)

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

    def epoch_key(self, channel: str) -> str:
        """The key of ``channel``'s epoch (on one Redis: one for every channel)."""
        return self._epoch_key

    def marked_sync(self, key: str, rows: list[tuple[str, list[str]]]) -> set[str]:
        """Which of the rows ``(name, channels)`` the sorted set ``key`` holds (see
        ``publish_many_sync``)."""
        names = [name for name, _ in rows]
        if not names:
            return set()
        scores = self._sync().zmscore(self.prefix + key, names)
        return {n for n, score in zip(names, scores, strict=True) if score is not None}

    def unmark_sync(self, key: str, rows: list[tuple[str, list[str]]]) -> None:
        """Forget the rows ``(name, channels)`` in the sorted set ``key``."""
        if rows:
            self._sync().zrem(self.prefix + key, *(name for name, _ in rows))

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
            self._sync().eval(LOWER_SCRIPT, 1, self.prefix + key, seen)

    def prune_marks_sync(self, key: str, before: float, channels: Iterable[str] = ()) -> None:
        """Forget the names added to the sorted set ``key`` before ``before`` (Unix time);
        ``channels``: those of the rows just tidied (where a cluster keeps their marks)."""
        self._sync().zremrangebyscore(self.prefix + key, "-inf", f"({int(before * 1000)}")

    def ping_sync(self) -> None:
        """Raise ``BrokerUnavailable`` unless Redis answers a PING now."""
        try:
            self._sync().ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(f"Redis at {self.safe_url} is unreachable: {error}") from error

    def close_sync(self) -> None:
        with self._sync_lock:
            client, self._sync_client, self._sync_publish = self._sync_client, None, None
        if client is not None:
            close(client)

    def _sync(self) -> redis.Redis:
        """The sync publishing client (any thread), created on first use."""
        with self._sync_lock:
            if self._sync_client is None:
                # Fail fast, no retries: a publish that fails is kept and retried by the outbox
                # relay, and the write that made the event must not wait for Redis.
                self._sync_client = sync_client(
                    self.url,
                    client_name=f"{self._client_name}-publish-sync",
                    socket_timeout=self.publish_timeout,
                    socket_connect_timeout=self.publish_timeout,
                    retry=Retry(NoBackoff(), 0),
                )
                self._sync_publish = self._sync_client.register_script(PUBLISH_SCRIPT)
            return self._sync_client

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
        return self.url
