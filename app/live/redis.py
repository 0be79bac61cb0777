"""Redis Board (one sorted set in exact rank order) and Bus (one pub/sub per instance, fanned out)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from itertools import islice
from typing import Any
from uuid import uuid4

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from app.domain import Entry, Standing
from app.live import CHANGED, RESYNC, Bus, Live, LiveUnavailable, PairRows, ReadModelIncomplete
from app.live.memory import Fanout
from app.live.outage import Breaker, is_outage
from app.tasks import stop

log = logging.getLogger(__name__)

_NO_MARK = -2
_POOL_SIZE, _POOL_WAIT = 64, 1.0  # connections; seconds a call waits for one before it counts as an outage
_CALL_TIMEOUT = 1.0  # seconds: connect or reply
_COOLDOWN = 3.0  # seconds the breaker fails fast after an outage
_OFFSET = 2**63
_CHUNK = 500  # entries per script call: bounds both the argument list and the time Redis is busy
_POLL = 1.0
_BACKOFF_MIN, _BACKOFF_MAX = 0.5, 5.0
_STORED_NAME = re.compile(r"\d+([+-])(.*)", re.DOTALL)

# Members are "<16 hex: 2**63-1-score><16 hex: seq+2**63><user id>", all with sorted-set score 0:
# byte order is then rank order for every signed 64-bit score (doubles are exact only to 2**53).
# Seqs are compared as two 8-hex-digit halves: exact in Lua's doubles, and independent of locale.
_SEQ_CMP = """
local function cmp(a, b)
  for i = 17, 25, 8 do
    local x, y = tonumber(string.sub(a, i, i + 7), 16), tonumber(string.sub(b, i, i + 7), 16)
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end
"""
# KEYS: board, members (user -> member or 'deleted'), names (user -> name_version .. '+' .. name
# or name_version .. '-' for none), applied (the AppliedLog: change keys, each its own score),
# then four per pair: the pair's board, members, mark and build.
# ARGV: a channel ('' for none) and the message to publish on it once the entries are in, the
# change keys to record as applied (comma-separated, '' for none), the number of board entries,
# then user, member, name per board entry (the name as stored), then per pair: ttl ('' for none),
# the number of its rows (-1: held back, none sent), '1' if they carry names (a build's) else '0'
# (a batch's: the names came with the board's entries), then per row its member (which ends with
# the user id) and, if named, its name. Returns per pair 1 if it is watched, else 0.
# The score moves only to a newer seq; the name to a newer name_version, or an equal one
# carried by a not-older seq. A pair holds no user the board has removed, and is written only
# while it is watched (built or being built): a build empties it first, so earlier rows would
# be thrown away (an unread pair costs two EXISTS per batch, not a write per row).
_UPSERT = _SEQ_CMP + """
local function version(name)
  return tonumber(string.match(name or '', '^(%d+)[+-]')) or -1
end
local function put(board, members, user, member)
  local old = redis.call('HGET', members, user)
  local order = old and cmp(member, old) or 1
  if order > 0 then
    if old then redis.call('ZREM', board, old) end
    redis.call('ZADD', board, 0, member)
    redis.call('HSET', members, user, member)
  end
  return order
end
local n = 4 + 3 * tonumber(ARGV[4])
for i = 5, n, 3 do
  local user, member, name = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HGET', KEYS[2], user) ~= 'deleted' then
    local order = put(KEYS[1], KEYS[2], user, member)
    local new, known = version(name), version(redis.call('HGET', KEYS[3], user))
    if new > known or (new == known and order >= 0) then
      redis.call('HSET', KEYS[3], user, name)
    end
  end
end
local k, i, watched = 5, n + 1, {}
while i <= #ARGV do
  local ttl, count, named = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2] == '1'
  local width = named and 2 or 1
  local last = i + 2 + width * math.max(count, 0)
  local live = redis.call('EXISTS', KEYS[k + 2], KEYS[k + 3]) > 0
  table.insert(watched, live and 1 or 0)
  if live and count >= 0 then
    for j = i + 3, last, width do
      local member = ARGV[j]
      local user = string.sub(member, 33)
      if redis.call('HGET', KEYS[2], user) ~= 'deleted' then
        put(KEYS[k], KEYS[k + 1], user, member)
        if named and version(ARGV[j + 1]) > version(redis.call('HGET', KEYS[3], user)) then
          redis.call('HSET', KEYS[3], user, ARGV[j + 1])
        end
      end
    end
    if ttl ~= '' then
      redis.call('EXPIRE', KEYS[k], ttl)
      redis.call('EXPIRE', KEYS[k + 1], ttl)
    end
  end
  k, i = k + 4, last + 1
end
for key in string.gmatch(ARGV[3], '[^,]+') do redis.call('ZADD', KEYS[4], key, key) end
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return watched
"""
# KEYS: lease; ARGV: token, milliseconds. Extends the lease only for its holder.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: board, members, names, the pairs' generation; ARGV: user. The tombstone blocks later
# upserts: deletion is final. The pairs still hold the user: in the same step every pair stops
# being trusted (its mark names an older generation) and is rebuilt from the database.
_REMOVE = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and old ~= 'deleted' then redis.call('ZREM', KEYS[1], old) end
redis.call('HSET', KEYS[2], ARGV[1], 'deleted')
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
return 0
"""
# The ranked window of a board (its sorted set, members and names): the first n entries, or with a
# user the entries from rank-n to rank+n. Returns {0-based rank of the user or -1, member, name,
# member, name, ...}; {} if the user is absent.
RANGE = """
local function range(board, members, names, n, user)
  local rank, first, last = -1, 0, n - 1
  if user then
    local member = redis.call('HGET', members, user)
    if not member or member == 'deleted' then return {} end
    rank = redis.call('ZRANK', board, member)
    first, last = math.max(rank - n, 0), rank + n
  end
  local out = {rank}
  for _, member in ipairs(redis.call('ZRANGE', board, first, last)) do
    table.insert(out, member)
    table.insert(out, redis.call('HGET', names, string.sub(member, 33)))
  end
  return out
end
"""
# KEYS: board, members, names, mark; ARGV: limit (top) or around, then the user for a standing.
# {-2} while the board has no mark (empty, lost or being rebuilt: not the truth).
_READ = RANGE + """
if redis.call('EXISTS', KEYS[4]) == 0 then return {-2} end
return range(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2])
"""


def _hex(value: int) -> str:
    if not -_OFFSET <= value < _OFFSET:
        raise ValueError(f"{value} is outside the signed 64-bit range")
    return f"{value + _OFFSET:016x}"


def _args(entry: Entry) -> tuple[str, str, str]:
    member = _hex(-1 - entry.score) + _hex(entry.seq) + entry.user_id
    name = "-" if entry.display_name is None else "+" + entry.display_name
    return entry.user_id, member, f"{entry.name_version}{name}"


def _pair_args(rows: PairRows) -> Iterator[str | int]:
    ttl = "" if rows.ttl is None else rows.ttl
    if rows.entries is None:
        yield from (ttl, -1, 0)
        return
    named = any(entry.name_version > 0 or entry.display_name is not None for entry in rows.entries)
    yield from (ttl, len(rows.entries), int(named))
    for entry in rows.entries:  # a batch's rows: one argument each (packing dominates a batch's call)
        _, member, name = _args(entry)
        yield from (member, name) if named else (member,)


def pairs_generation(prefix: str) -> str:
    """The key whose increment stops every pair's read model from being trusted."""
    return f"{prefix}pairs-generation"


def pair_keys(prefix: str, board_id: str, key: str) -> tuple[str, str, str, str]:
    """A pair's board, members, mark and build (board ids and period keys hold no colon)."""
    stem = f"{prefix}pair:{board_id}:{key}:"
    return f"{stem}board", f"{stem}members", f"{stem}mark", f"{stem}build"


def _name(stored: bytes | str | None) -> str | None:
    """A stored name without its version ("12+alice" -> "alice"; "3-" -> None)."""
    if stored is None:
        return None
    match = _STORED_NAME.match(_text(stored))
    if match is None:  # written before names were versioned
        return _text(stored)
    return match[2] if match[1] == "+" else None


def _chunks(entries: Iterable[Entry]) -> Iterator[list[str]]:
    it = iter(entries)
    while chunk := [arg for entry in islice(it, _CHUNK) for arg in _args(entry)]:
        yield chunk


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_entries(flat: Sequence[Any]) -> list[Entry]:
    """(member, name) pairs from the read script as entries, whatever the client's decoding."""
    entries = []
    for raw, name in zip(flat[::2], flat[1::2], strict=True):
        member = _text(raw)
        score, seq = _OFFSET - 1 - int(member[:16], 16), int(member[16:32], 16) - _OFFSET
        entries.append(Entry(member[32:], _name(name), score, seq))
    return entries


class RedisBoard:
    """The board in three keys under `prefix`, changed only by atomic scripts, its mark, and the
    AppliedLog the upsert script keeps beside it."""

    def __init__(self, client: Redis, prefix: str, breaker: Breaker | None = None) -> None:
        self._client = client
        self._breaker = breaker or Breaker(cooldown=0.0)
        self._prefix = prefix
        self._mark_key = f"{prefix}mark"
        self._applied_key = f"{prefix}applied"  # sorted set: change key -> the same key as score
        self._keys = [f"{prefix}board", f"{prefix}members", f"{prefix}names"]
        self._watched: set[tuple[str, str]] = set()  # as the last upsert of each pair found it
        self._upsert = client.register_script(_UPSERT)
        self._remove = client.register_script(_REMOVE)
        self._read = client.register_script(_READ)

    async def upsert(self, entries: Iterable[Entry], announce: Bus | None = None, message: str = CHANGED,
                     pairs: Sequence[PairRows] = (), applied: Collection[int] = ()) -> list[tuple[str, str]]:
        # A Redis bus publishes from inside the last chunk's script, which also writes the pairs
        # and records the applied keys (only once every entry is in): one round trip for all.
        bus = announce if isinstance(announce, RedisBus) else None
        last = [*(bus.outgoing(message) if bus is not None else ("", "")), ",".join(map(str, applied))]
        chunks = list(_chunks(entries)) or [[]]
        written = [key for rows in pairs for key in pair_keys(self._prefix, rows.board_id, rows.key)]
        pair_args = [arg for rows in pairs for arg in _pair_args(rows)]
        keys = [*self._keys, self._applied_key]
        watched: list[int] = []
        try:
            with self._breaker.guard():
                for number, args in enumerate(chunks, 1):
                    final = number == len(chunks)
                    watched = await self._upsert(keys=[*keys, *(written if final else ())], args=[
                        *(last if final else ("", "", "")), len(args) // 3, *args, *(pair_args if final else ())])
        finally:
            if bus is not None:  # after the write, so that a local reader sees it; even if it failed
                bus.deliver(message)
        if announce is not None and bus is None:
            await announce.publish(message)
        return self._learn(pairs, watched)

    def _learn(self, pairs: Sequence[PairRows], watched: Sequence[int]) -> list[tuple[str, str]]:
        """Remember which pairs are watched; the held-back ones that are, to send their rows."""
        wanted = []
        for rows, flag in zip(pairs, watched, strict=True):
            pair = (rows.board_id, rows.key)
            if int(flag):
                self._watched.add(pair)
                if rows.entries is None:
                    wanted.append(pair)
            else:
                self._watched.discard(pair)
        return wanted

    def watched(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._watched)

    async def remove(self, user_id: str) -> None:
        with self._breaker.guard():
            await self._remove(keys=[*self._keys, pairs_generation(self._prefix)], args=[user_id])

    async def top(self, limit: int) -> list[Entry]:
        if limit <= 0:
            return []
        reply = await self._read_script(limit)
        return decode_entries(reply[1:])

    async def standing(self, user_id: str, around: int) -> Standing | None:
        around = max(around, 0)
        reply = await self._read_script(around, user_id)
        if not reply:
            return None
        rank, window = int(reply[0]), decode_entries(reply[1:])
        return Standing(window[rank - max(rank - around, 0)], rank + 1, tuple(window))

    async def _read_script(self, *args: int | str) -> list[Any]:
        with self._breaker.guard():
            reply: list[Any] = await self._read(keys=[*self._keys, self._mark_key], args=list(args))
        if reply and int(reply[0]) == _NO_MARK:
            raise ReadModelIncomplete("the read model is being rebuilt")
        return reply

    async def mark(self) -> int | None:
        with self._breaker.guard():
            value = await self._client.get(self._mark_key)
        return None if value is None else int(value)

    async def set_mark(self, mark: int) -> None:
        with self._breaker.guard():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._mark_key, mark)
                pipe.zremrangebyscore(self._applied_key, "-inf", f"({mark}")
                await pipe.execute()

    async def unapplied(self, keys: Sequence[int]) -> list[int]:
        if not keys:
            return []
        with self._breaker.guard():
            scores = await self._client.zmscore(self._applied_key, [str(key) for key in keys])
        return [key for key, score in zip(keys, scores, strict=True) if score is None]


class RedisLease:
    """A key with an expiry holding our token: SET NX to take it, a script to extend or drop it."""

    def __init__(self, client: Redis, prefix: str, breaker: Breaker | None = None) -> None:
        self._client = client
        self._breaker = breaker or Breaker(cooldown=0.0)
        self._key = f"{prefix}repair-lease"
        self._token = uuid4().hex
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    async def claim(self, seconds: float) -> bool:
        millis = max(int(seconds * 1000), 1)
        with self._breaker.guard():
            if await self._client.set(self._key, self._token, nx=True, px=millis):
                return True
            return bool(await self._extend(keys=[self._key], args=[self._token, millis]))

    async def release(self) -> None:
        with self._breaker.guard():
            await self._release(keys=[self._key], args=[self._token])


class RedisBus:
    """One pub/sub subscription per instance, fanned out to any number of local subscribers."""

    def __init__(self, client: Redis, prefix: str, breaker: Breaker | None = None) -> None:
        self._client = client
        self._breaker = breaker or Breaker(cooldown=0.0)
        self._channel = f"{prefix}changes"
        self._origin = uuid4().hex  # our own messages come back from Redis: skip them
        self._fanout = Fanout()
        self._reader: asyncio.Task[None] | None = None

    async def publish(self, message: str) -> None:
        self.deliver(message)  # local subscribers hear it even while Redis is away
        channel, payload = self.outgoing(message)
        with self._breaker.guard():
            await self._client.publish(channel, payload)

    def deliver(self, message: str) -> None:
        """Tell this process's subscribers only."""
        self._fanout.deliver(message)

    def outgoing(self, message: str) -> tuple[str, str]:
        """The (channel, payload) that tells the other processes."""
        return self._channel, f"{self._origin} {message}"

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._subscription()

    @asynccontextmanager
    async def _subscription(self) -> AsyncIterator[AsyncIterator[str]]:
        try:
            async with self._fanout.attach() as messages:
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read())
                yield messages
        finally:
            if not self._fanout and self._reader is not None:
                reader, self._reader = self._reader, None
                await stop(reader)

    async def _read(self) -> None:
        """Hold the subscription while anyone listens; re-subscribe with a capped backoff."""
        delay = _BACKOFF_MIN
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    delay = _BACKOFF_MIN
                    await self._pump(pubsub)
            except Exception as exc:  # a surprise must not silence the bus for good
                if is_outage(exc):
                    log.warning("redis bus unavailable (%s); retrying in %.1f s", exc, delay)
                else:
                    log.exception("redis bus reader failed; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _pump(self, pubsub: PubSub) -> None:
        connection = pubsub.connection
        if connection is None:
            raise RedisConnectionError("pub/sub has no connection after subscribe")
        # redis-py may reconnect and re-subscribe by itself inside get_message: hear about it too
        connection.register_connect_callback(self._subscribed)
        try:
            self._subscribed()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL)
                if message is not None:
                    self._receive(_text(message["data"]))
        finally:
            connection.deregister_connect_callback(self._subscribed)

    def _subscribed(self, *_: object) -> None:
        # anything may have changed before (or while away from) the subscription: look again
        self._fanout.deliver(RESYNC)

    def _receive(self, data: str) -> None:
        origin, _, message = data.partition(" ")
        if origin != self._origin:
            self._fanout.deliver(message)


@asynccontextmanager
async def connect(url: str, prefix: str) -> AsyncIterator[Live]:
    """A client on a bounded, blocking pool; one breaker for every call; the cached status."""
    client = Redis(connection_pool=_pool(url))
    breaker = Breaker(cooldown=_COOLDOWN)
    from app.live.redis_pairs import RedisPairs  # it builds on this module's scripts and encoding

    board = RedisBoard(client, prefix, breaker)
    live = Live(
        board=board, bus=RedisBus(client, prefix, breaker), lease=RedisLease(client, prefix, breaker),
        pairs=RedisPairs(client, prefix, breaker), applied=board, redis=client, guard=breaker.guard,
        status=lambda: breaker.status,
        watch=lambda: _watch(client, breaker), prefix=prefix,
    )
    try:
        yield live
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()


def _pool(url: str) -> BlockingConnectionPool:
    # Short timeouts and no retry of a timeout: an outage must degrade requests, not stall them
    # (the breaker makes the next calls fail fast). A refused connection is retried once: after a
    # restart the pooled connections are dead, and a fresh one answers at once.
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    return BlockingConnectionPool.from_url(
        url, max_connections=_POOL_SIZE, timeout=_POOL_WAIT, socket_timeout=_CALL_TIMEOUT,
        socket_connect_timeout=_CALL_TIMEOUT, retry=retry, health_check_interval=15,
    )


async def _watch(client: Redis, breaker: Breaker) -> None:
    """Ping every few seconds, so the status is current while no request uses Redis."""
    while True:
        with contextlib.suppress(LiveUnavailable), breaker.guard():
            await client.ping()
        await asyncio.sleep(_COOLDOWN)
