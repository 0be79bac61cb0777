"""Redis read models of (board, period key) pairs: a sorted set and a members hash per pair, in the
board's member encoding, names and deletions shared with it; its writes are in RedisBoard.upsert.

A pair's mark holds the generation it was built in and when it expires: forgetting every pair (a
deletion, a failed write) or one board's (a changed or deleted board) is one INCR, and the
service's clock decides expiry (the keys also expire in Redis, a day or more later).
"""
from __future__ import annotations

from typing import Any
from uuid import uuid4

from redis.asyncio import Redis

from app.domain import Entry, Standing
from app.live import ReadModelIncomplete
from app.live.outage import Breaker
from app.live.redis import RANGE, decode_entries, pair_keys, pairs_generation

_NO_MARK = -2
# The generations a token names: every pair's, then the board's. KEYS: pairs generation, board generation.
_GENERATIONS = """
local function generations()
  return (redis.call('GET', KEYS[1]) or '0') .. ':' .. (redis.call('GET', KEYS[2]) or '0')
end
"""
# KEYS: generations, the pair's board, members, mark, then names; ARGV: now, limit or around, the user.
# {-2} unless the mark names the current generations and has not expired.
_READ = _GENERATIONS + RANGE + """
local mark = redis.call('GET', KEYS[5])
if not mark then return {-2} end
local token, expires = string.match(mark, '^(.*)/(%d+)$')
if token ~= generations() or (expires ~= '0' and tonumber(expires) <= tonumber(ARGV[1])) then return {-2} end
return range(KEYS[3], KEYS[4], KEYS[6], tonumber(ARGV[2]), ARGV[3])
"""
# KEYS: generations, then the pair's board, members, mark, build; ARGV: build id. Empties the
# pair (a build only adds; a removed user must not stay) and returns the token. The build key
# lets the batches' writes in (and outlives a build whose process died by an hour at most).
_START = _GENERATIONS + """
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[6], ARGV[1], 'EX', 3600)
return generations() .. '#' .. ARGV[1]
"""
# KEYS: as _START; ARGV: token, expires (0: never), ttl ('' for none). Marks the pair if the
# token is still current: no forgetting and no other build since it started.
_FINISH = _GENERATIONS + """
local token, build = string.match(ARGV[1], '^(.*)#(.*)$')
if token ~= generations() or redis.call('GET', KEYS[6]) ~= build then return 0 end
redis.call('DEL', KEYS[6])
redis.call('SET', KEYS[5], token .. '/' .. ARGV[2])
if ARGV[3] ~= '' then redis.call('EXPIRE', KEYS[5], ARGV[3]) end
return 1
"""


class RedisPairs:
    def __init__(self, client: Redis, prefix: str, breaker: Breaker | None = None) -> None:
        self._client, self._prefix = client, prefix
        self._breaker = breaker or Breaker(cooldown=0.0)
        self._names = f"{prefix}names"
        self._read = client.register_script(_READ)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)

    async def top(self, board_id: str, key: str, limit: int, now: float) -> list[Entry]:
        if limit <= 0:
            return []
        return decode_entries((await self._read_script(board_id, key, int(now), limit))[1:])

    async def standing(self, board_id: str, key: str, user_id: str, around: int, now: float) -> Standing | None:
        around = max(around, 0)
        reply = await self._read_script(board_id, key, int(now), around, user_id)
        if not reply:
            return None
        rank, window = int(reply[0]), decode_entries(reply[1:])
        return Standing(window[rank - max(rank - around, 0)], rank + 1, tuple(window))

    async def start_build(self, board_id: str, key: str) -> str:
        with self._breaker.guard():
            token: Any = await self._start(keys=self._keys(board_id, key), args=[uuid4().hex])
        return token.decode() if isinstance(token, bytes) else str(token)

    async def finish_build(self, board_id: str, key: str, token: str, expires: float | None,
                           ttl: int | None) -> bool:
        args: list[str | int] = [token, 0 if expires is None else int(expires), "" if ttl is None else ttl]
        with self._breaker.guard():
            return bool(await self._finish(keys=self._keys(board_id, key), args=args))

    async def forget(self, board_id: str | None = None) -> None:
        with self._breaker.guard():
            await self._client.incr(self._generation(board_id))

    def _generation(self, board_id: str | None) -> str:
        return pairs_generation(self._prefix) if board_id is None else f"{self._prefix}pair-generation:{board_id}"

    def _keys(self, board_id: str, key: str) -> list[str]:
        return [self._generation(None), self._generation(board_id), *pair_keys(self._prefix, board_id, key)]

    async def _read_script(self, board_id: str, key: str, *args: int | str) -> list[Any]:
        keys = [*self._keys(board_id, key)[:5], self._names]
        with self._breaker.guard():
            reply: list[Any] = await self._read(keys=keys, args=list(args))
        if reply and int(reply[0]) == _NO_MARK:
            raise ReadModelIncomplete(f"the read model of ({board_id}, {key}) is not built or has expired")
        return reply
