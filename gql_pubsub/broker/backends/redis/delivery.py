"""Handing received messages on once per offset: where each subscribed channel is, and catching
it up from its history after the subscription connection was lost (or reporting the gap)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis

from gql_pubsub.broker.backends.base import Entries, GapHandler, MessageHandler
from gql_pubsub.core.events import Epochs, Offset

logger = logging.getLogger("gql_pubsub.redis")

Tail = Callable[[list[str]], Awaitable[tuple[Epochs, dict[str, Offset]]]]
"""``RedisBackend.tail``: each channel's history epoch and latest offset."""

HOLD_LIMIT = 10_000
"""Live messages kept back per channel while it catches up after moving to another node."""

History = Callable[[str, str, Offset, float], Awaitable[Entries | None]]
"""``RedisBackend.history``: a channel's entries after an offset, or None if some are gone."""


class Delivery:
    """Passes each message of a subscribed channel on once, noting the channel's place in its
    history; after an outage, hands on what the history holds since that place."""

    def __init__(self, channels: set[str], tail: Tail, history: History) -> None:
        self._channels = channels  # the connection's live set of subscribed channels
        self._tail = tail
        self._history = history
        self._on_message: MessageHandler | None = None
        self._on_gap: GapHandler | None = None
        # Per channel: the place of the last message handed on (dedup, catch-up), or, before
        # any, the place of its history when it was subscribed (and when that was).
        self._delivered: dict[str, tuple[str, Offset]] = {}
        self._since: dict[str, tuple[str, Offset]] = {}
        # Channels catching up on their own (moved to another node): their live messages wait.
        self._held: dict[str, list[tuple[str, Offset, bytes]]] = {}

    def start(self, on_message: MessageHandler, on_gap: GapHandler) -> None:
        """Hand messages and gaps on to these from now on."""
        self._on_message = on_message
        self._on_gap = on_gap

    def clear(self) -> None:
        """Forget every channel's place and the handlers (at disconnect)."""
        self._delivered.clear()
        self._since.clear()
        self._held.clear()
        self._on_message = None
        self._on_gap = None

    async def note_tail(self, channel: str) -> None:
        """Before a channel's first SUBSCRIBE: note where its history ends (best effort)."""
        if channel not in self._delivered and channel not in self._since:
            # Where the history was before SUBSCRIBE: a reconnect catches up from there.
            with contextlib.suppress(redis.RedisError, OSError):
                epochs, tails = await self._tail([channel])
                self._since[channel] = (epochs[channel], tails[channel])

    def forget(self, channel: str) -> None:
        """Forget an unsubscribed channel's place."""
        self._delivered.pop(channel, None)
        self._since.pop(channel, None)
        self._held.pop(channel, None)

    def hold(self, channel: str) -> None:
        """Keep ``channel``'s live messages back until ``release`` (it is catching up)."""
        self._held.setdefault(channel, [])

    def release(self, channel: str) -> None:
        """Hand on what ``hold`` kept back (after the catch-up: the offsets drop repeats)."""
        held = self._held.pop(channel, [])
        for epoch, offset, payload in held:
            self._pass(channel, epoch, offset, payload)
        if len(held) >= HOLD_LIMIT:
            self.gap(channel, f"more than {HOLD_LIMIT} live events arrived while it caught up")

    async def catch_up(self, lost_at: float, channels: list[str] | None = None) -> None:
        """Hand on what each channel's history holds after the last message handed on before
        the connection was lost (at ``lost_at``, Unix time), or report a gap."""
        for channel in sorted(self._channels) if channels is None else channels:
            position = self._delivered.get(channel) or self._since.get(channel)
            if position is None:
                continue
            # Every message before the connection was lost was read: the place was current then.
            epoch, after, issued = position[0], position[1], lost_at
            try:
                entries = await self._history(channel, epoch, after, issued)
            except redis.ResponseError as error:  # e.g. a Redis without streams
                logger.warning("Cannot read the history of %r (%s)", channel, error)
                entries = None
            if entries is None:
                self.gap(channel, "the history no longer holds the events since the outage")
                continue
            for offset, payload in entries:
                self._pass(channel, epoch, offset, payload)

    def hand_on(self, channel: str, epoch: str, offset: Offset, payload: bytes) -> None:
        """Pass a message on once per offset, noting where the channel is."""
        held = self._held.get(channel)
        if held is not None:
            if len(held) < HOLD_LIMIT:  # beyond: ``release`` reports a gap
                held.append((epoch, offset, payload))
            return
        self._pass(channel, epoch, offset, payload)

    def _pass(self, channel: str, epoch: str, offset: Offset, payload: bytes) -> None:
        if self._on_message is None or channel not in self._channels:
            return
        if epoch:
            last = self._delivered.get(channel)
            if last is not None and last[0] == epoch and offset <= last[1]:
                return  # already handed on (a catch-up and a live message overlapped)
            since = self._since.pop(channel, None)
            known = last[0] if last is not None else since[0] if since is not None else epoch
            if known != epoch:
                self.gap(channel, "Redis lost its data (its history epoch changed)")
            self._delivered[channel] = (epoch, offset)
        self._on_message(channel, payload, epoch, offset)

    def gap(self, channel: str, reason: str) -> None:
        """Report that events on ``channel`` may have been lost."""
        logger.warning("Events on %r may have been lost: %s", channel, reason)
        if self._on_gap is not None:
            self._on_gap(channel, reason)
