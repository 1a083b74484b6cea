"""Presence in Redis: who is on a channel, kept per connection with an expiry, its joins and
leaves published as events of the channel's presence channel, in one atomic script."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import redis

from gql_pubsub.broker.backends.base import BrokerUnavailable, PresenceRows
from gql_pubsub.broker.backends.redis.publisher import RedisPublisher
from gql_pubsub.broker.backends.redis.scripts import EPOCH_LUA
from gql_pubsub.broker.backends.redis.shard_connection import shard_channel
from gql_pubsub.core.events import START, Offset

# KEYS: the epoch, the presence channel's history, then the channel's connections (a sorted set
# scored by expiry), their members, and by member: public info, connection count, since (ms).
# ARGV: now (ms), the joins' expiry (ms), the keys' lifetime (ms), the history's length, trim
# and age (ms), the pub/sub channel, whether to answer the state, PUBLISH or SPUBLISH (a
# cluster), how long a cluster keeps the channel's epoch ('' on one Redis), the number of joins,
# then (connection, member, info) per join, then the connections that leave.
# Expired connections leave first (a server died: its members go within the bound), then the
# joins (a known connection's join only renews it), then the leaves. One event says who became
# present and who stopped being present, net: a member who left and came back in one call is
# not in it. It is appended to the history and PUBLISHed like any event ("<epoch> <id> <json>").
PRESENCE_SCRIPT = (
    EPOCH_LUA
    + """
if ARGV[10] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[10]) end
local now = tonumber(ARGV[1])
local order, was = {}, {}
local function touch(member)
  if was[member] == nil then
    was[member] = redis.call('HEXISTS', KEYS[5], member) == 1
    order[#order + 1] = member
  end
end
local function drop(conn)
  local member = redis.call('HGET', KEYS[4], conn)
  redis.call('ZREM', KEYS[3], conn)
  if not member then return end
  touch(member)
  redis.call('HDEL', KEYS[4], conn)
  if redis.call('HINCRBY', KEYS[5], member, -1) <= 0 then
    redis.call('HDEL', KEYS[5], member)
    redis.call('HDEL', KEYS[6], member)
    redis.call('HDEL', KEYS[7], member)
  end
end
for _, conn in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do drop(conn) end
local joins = tonumber(ARGV[11])
for i = 0, joins - 1 do
  local conn, member, info = ARGV[12 + 3 * i], ARGV[13 + 3 * i], ARGV[14 + 3 * i]
  if redis.call('ZADD', KEYS[3], ARGV[2], conn) == 1 then
    touch(member)
    redis.call('HSET', KEYS[4], conn, member)
    if redis.call('HINCRBY', KEYS[5], member, 1) == 1 then
      redis.call('HSET', KEYS[6], member, info)
      redis.call('HSET', KEYS[7], member, ARGV[1])
    end
  end
end
for i = 12 + 3 * joins, #ARGV do drop(ARGV[i]) end
for k = 3, 7 do redis.call('PEXPIRE', KEYS[k], ARGV[3]) end
local came, went = {}, {}
for _, member in ipairs(order) do
  local is = redis.call('HEXISTS', KEYS[5], member) == 1
  if is and not was[member] then
    came[#came + 1] = '{"id":' .. cjson.encode(member) .. ',"info":'
      .. redis.call('HGET', KEYS[6], member) .. ',"since":' .. redis.call('HGET', KEYS[7], member)
      .. '}'
  elseif was[member] and not is then
    went[#went + 1] = cjson.encode(member)
  end
end
if #came > 0 or #went > 0 then
  local payload = '{"kind":"custom","model":null,"pk":null,"data":{"joins":['
    .. table.concat(came, ',') .. '],"leaves":[' .. table.concat(went, ',') .. ']}}'
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], ARGV[4], '*', 'p', payload)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  redis.call(ARGV[9], ARGV[7], epoch .. ' ' .. id .. ' ' .. payload)
end
if ARGV[8] ~= '1' then return 0 end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local state = {epoch, last[1] and last[1][1] or ''}
local members = redis.call('HGETALL', KEYS[5])
for i = 1, #members, 2 do
  local member = members[i]
  state[#state + 1] = member
  state[#state + 1] = redis.call('HGET', KEYS[6], member)
  state[#state + 1] = redis.call('HGET', KEYS[7], member)
  state[#state + 1] = members[i + 1]
end
return state
"""
)


# KEYS: the sender's counter on the channel. ARGV: the rate (0: none), the window (ms), PUBLISH or
# SPUBLISH, the pub/sub channel, the payload. No history, no epoch: nothing replays it.
EPHEMERAL_SCRIPT = """
if ARGV[1] ~= '0' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  if n > tonumber(ARGV[1]) then return 0 end
end
redis.call(ARGV[3], ARGV[4], ARGV[5])
return 1
"""


class RedisPresence(RedisPublisher):
    """The publisher, with presence (see ``backends.base.PresenceBackend``)."""

    sharded: ClassVar[bool] = False
    """A Redis Cluster's: per-channel epochs, and SPUBLISH into the channel's shard."""
    _epoch_ms = 0  # how long a cluster keeps an idle channel's epoch

    async def presence(
        self,
        presence_channel: str,
        *,
        joins: Sequence[tuple[str, str, str]] = (),
        leaves: Sequence[str] = (),
        ttl: float,
        state: bool = False,
    ) -> PresenceRows | None:
        """Apply joins ``(connection, member, info JSON)`` (renewing known connections) and
        leaves, let expired connections go, publish who came and went; with ``state``, answer
        the members and where the presence channel's history ends, read in the same step."""
        client = self._history_client()
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        keys, args = self._presence_arguments(presence_channel, joins, leaves, ttl, state)
        try:
            async with self._turns:  # the client's connections are bounded: wait for one
                answer = await client.eval(PRESENCE_SCRIPT, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(f"Presence: Redis is unreachable: {error}") from error
        return _rows(answer) if state else None

    def presence_sync(self, presence_channel: str, *, ttl: float) -> PresenceRows:
        """The members now, from sync code (expired connections leave first)."""
        keys, args = self._presence_arguments(presence_channel, (), (), ttl, True)
        try:
            answer = self._sync().eval(PRESENCE_SCRIPT, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(f"Presence: Redis is unreachable: {error}") from error
        return _rows(answer)

    async def publish_ephemeral(
        self, channel: str, payload: bytes, *, sender: str, rate: int, window: float
    ) -> bool:
        """See ``PresenceBackend.publish_ephemeral``."""
        client = self._history_client()
        if client is None:
            raise BrokerUnavailable("The broker is not started; call `await broker.start()`.")
        counter = f"{self.prefix}rate:{{{channel}}}:{sender}"  # the channel's slot
        command, target = self._publish_target(channel)
        args = (rate, int(window * 1000), command, target, payload)
        try:
            async with self._turns:
                return bool(await client.eval(EPHEMERAL_SCRIPT, 1, counter, *args))
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnavailable(f"Cannot publish to Redis: {error}") from error

    def _publish_target(self, channel: str) -> tuple[str, str]:
        """How a message reaches ``channel``'s subscribers: the command and its channel."""
        if self.sharded:
            return "SPUBLISH", shard_channel(self.prefix, channel)
        return "PUBLISH", self.prefix + channel

    def _presence_arguments(
        self,
        presence_channel: str,
        joins: Sequence[tuple[str, str, str]],
        leaves: Sequence[str],
        ttl: float,
        state: bool,
    ) -> tuple[list[str], list[Any]]:
        now = int(time.time() * 1000)
        command, target = self._publish_target(presence_channel)
        base = f"{self.prefix}presence:{{{presence_channel}}}:"  # the history's hash tag
        keys = [
            self.epoch_key(presence_channel),
            self.history_key(presence_channel),
            *(base + part for part in ("connections", "members", "count", "info", "since")),
        ]
        args: list[Any] = [
            now,
            now + int(ttl * 1000),
            int(max(ttl * 4, 60) * 1000),
            self.history_length,
            self._trim,
            int(self.history_age * 1000),
            target,
            "1" if state else "0",
            command,
            self._epoch_ms if self.sharded else "",
            len(joins),
        ]
        for connection, member, info in joins:
            args += (connection, member, info)
        args += leaves
        return keys, args

    def _history_client(self) -> Any:
        """The event loop's client for scripts and histories (``None`` until ``connect``)."""
        return self._async_client


def _rows(answer: list[Any]) -> PresenceRows:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    epoch, last, rest = text(answer[0]), text(answer[1]), answer[2:]
    offset = Offset.parse(last) if last else START
    members = [
        (text(rest[i]), text(rest[i + 1]), int(rest[i + 2]), int(rest[i + 3]))
        for i in range(0, len(rest), 4)
    ]
    return epoch, offset, members
