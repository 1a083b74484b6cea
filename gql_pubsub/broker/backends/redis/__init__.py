"""Redis backend: one pub/sub connection per process, shared by every subscription.

``RedisBackend`` ties the parts together and reads the channels' histories (tails, resumes).
The parts: publishing (``redis_publisher``), the SUBSCRIBE connection (``redis_pubsub``),
handing messages on once per offset (``redis_delivery``), what runs in Redis (``redis_scripts``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gql_pubsub.broker.backends.base import (
    BrokerUnavailable,
    DurableBackend,
    Entries,
    GapHandler,
    MessageHandler,
    PresenceBackend,
    covered,
)
from gql_pubsub.broker.backends.redis.clients import aclose, async_client
from gql_pubsub.broker.backends.redis.presence import RedisPresence
from gql_pubsub.broker.backends.redis.publisher import CONNECTIONS
from gql_pubsub.broker.backends.redis.pubsub import PubSubConnection
from gql_pubsub.broker.backends.redis.scripts import (
    HISTORY_SCRIPT,
    PUBLISH_SCRIPT,
    TAIL_SCRIPT,
    entry_field,
    epoch_text,
    split_message,
)
from gql_pubsub.core.events import START, Epochs, Offset


class RedisBackend(RedisPresence):
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
        super().__init__(
            url,
            prefix=prefix,
            publish_timeout=publish_timeout,
            history_length=history_length,
            history_age=history_age,
        )
        self.health_check_interval = health_check_interval
        self._tail_requests: list[
            tuple[list[str], asyncio.Future[tuple[Epochs, dict[str, Offset]]]]
        ]
        self._tail_requests = []
        self._tail_task: asyncio.Task[None] | None = None
        self._pubsub = PubSubConnection(
            prefix=prefix,
            client_name=self._client_name,
            safe_url=self.safe_url,
            health_check_interval=health_check_interval,
            tail=self.tail,
            history=self.history,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self, on_message: MessageHandler, on_gap: GapHandler) -> None:
        self._turns = asyncio.Semaphore(CONNECTIONS)  # of this loop
        self._async_client = async_client(
            self.url, client_name=f"{self._client_name}-publish", max_connections=CONNECTIONS
        )
        self._async_publish = self._async_client.register_script(PUBLISH_SCRIPT)
        await self._pubsub.start(self._async_client, on_message, on_gap)

    async def disconnect(self) -> None:
        if self._tail_task is not None:
            self._tail_task.cancel()
        await self._pubsub.stop()
        if self._async_client is not None:
            await aclose(self._async_client)
            self._async_client = None
        self._pubsub.clear()

    # -- subscriptions ---------------------------------------------------------------------

    def subscribed_channels(self) -> frozenset[str]:
        return self._pubsub.subscribed_channels()

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._pubsub.unsubscribe(channel)

    # -- reading the histories -------------------------------------------------------------

    async def tail(self, channels: list[str]) -> tuple[Epochs, dict[str, Offset]]:
        # Requests made in the same turn of the event loop share one script call (and one
        # connection): many subscriptions starting at once cost one round trip.
        future: asyncio.Future[tuple[Epochs, dict[str, Offset]]] = (
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
                async with self._turns:
                    reply = await client.eval(TAIL_SCRIPT, len(keys), *keys)
                epoch = epoch_text(reply[0])
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
                    future.set_result((dict.fromkeys(wanted, epoch), {c: tails[c] for c in wanted}))

    async def history(
        self, channel: str, epoch: str, after: Offset, issued: float
    ) -> Entries | None:
        client = self._history_client()
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        keys = [self.epoch_key(channel), self.history_key(channel)]
        async with self._turns:
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
        return [(Offset.parse(entry_id), entry_field(fields, b"p")) for entry_id, fields in entries]


__all__ = ["RedisBackend", "split_message"]


if TYPE_CHECKING:  # mypy checks that the class is all that the broker (and outbox) rely on
    _conforms: type[DurableBackend] = RedisBackend
    _keeps_presence: type[PresenceBackend] = RedisBackend
