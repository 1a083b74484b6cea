"""What this backend runs inside Redis (the Lua scripts that publish into channels' histories and
read them back) and the format of what comes out: a message's epoch, offset and payload."""

from __future__ import annotations

from gql_pubsub.core.events import START, Offset

# One event to its channels, atomically: unless the outbox row is already recorded as published
# (or, for a writer, the relay is still publishing older rows: the destination's backlog flag),
# record it, append the event to each channel's history stream and PUBLISH it with its place
# ("<epoch> <stream id> <payload>"). The epoch names this Redis's data: it changes when the data
# is lost, and with it every cursor becomes unusable (the client is told to refetch).
EPOCH_LUA = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[1], epoch)
end
"""
"""Lua: the epoch in KEYS[1], created (from the server's clock) if there is none yet."""

PUBLISH_SCRIPT = (
    EPOCH_LUA
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

# Delete the flag KEYS[1] unless it was raised again since its value was ARGV[1].
LOWER_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# PUBLISH_SCRIPT returns PUBLISHED, DUPLICATE or DEFERRED (backends.base) for each event.

# The epoch (created if there is none yet) and the newest id of each history ('' when empty).
TAIL_SCRIPT = (
    EPOCH_LUA
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


# In a Redis Cluster a script may touch one slot only, so an event is published channel by
# channel, each with keys hash-tagged on the channel: its epoch (one per channel, kept while the
# channel is used: ARGV[7] ms), its outbox marks (which rows it has published), its history.
# SPUBLISH on "<prefix>{<channel>}" (same slot) sends it through that shard's nodes only.
CLUSTER_PUBLISH_SCRIPT = (
    EPOCH_LUA
    + """
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if ARGV[1] ~= '' then
  if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], ARGV[3], '*', 'p', ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('SPUBLISH', ARGV[9], epoch .. ' ' .. id .. ' ' .. ARGV[6])
return 1
"""
)

# A channel's epoch (created, and kept ARGV[1] ms more) and the newest id of its history.
CLUSTER_TAIL_SCRIPT = (
    EPOCH_LUA
    + """
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
return {epoch, last[1] and last[1][1] or ''}
"""
)


def split_message(data: bytes) -> tuple[str, Offset, bytes]:
    """A message's epoch, offset and payload (a message without them: ``""``, ``START``)."""
    if data[:1] == b"{":
        return "", START, data
    epoch, offset, payload = data.split(b" ", 2)
    ms, _, seq = offset.partition(b"-")
    return epoch_text(epoch), Offset(int(ms), int(seq)), payload


def epoch_text(epoch: bytes) -> str:
    """An epoch as text, one string per epoch (one per Redis data life; a channel's on a
    cluster): every message and every channel's place shares it."""
    text = _epochs.get(epoch)
    if text is None:
        if len(_epochs) > 64:
            _epochs.clear()
        text = _epochs[epoch] = epoch.decode()
    return text


_epochs: dict[bytes, str] = {}


def entry_field(fields: list[bytes], name: bytes) -> bytes:
    """The value of ``name`` in a stream entry's flat field list."""
    for key, value in zip(fields[::2], fields[1::2], strict=True):
        if key == name:
            return value
    raise ValueError(f"history entry without {name!r}")
