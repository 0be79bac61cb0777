"""Per-user and per-caller rate limits: sliding-window counters, shared through Redis or in memory.

The algorithm is the sliding-window counter of the `limits` library (two fixed-window counters,
the previous one weighted by how much of it still overlaps the window): O(1) per check whatever
the limit, unlike a moving window that keeps one entry per hit. With Redis, one script checks
the caller's and the user's limit together and counts the request against both only when both
admit it, for a whole batch of requests: one round trip per batch. In memory, `limits`' own
SlidingWindowCounterRateLimiter does the same. If Redis fails, the limits fall back to
process-local counters, so an outage degrades fairness across processes rather than refusing writes.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from app.errors import RateLimited
from app.live import Live, LiveUnavailable

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

log = logging.getLogger(__name__)

# ARGV: caller limit, caller window (s), user limit, user window (s), then (caller key, user key) pairs.
# Returns, as one comma-separated string (a flat array costs the client far more to parse), per request:
# {1 admitted, -1 refused by the caller's or -2 by the user's limit; limit,
# remaining, reset seconds} of the tighter limit, or of the refusing one (the caller's is checked first).
# Counters are INCRed only when both admit.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function state(key, limit, window)
  local index = math.floor(now / window)
  local elapsed = now - index * window
  local previous = tonumber(redis.call('GET', key .. ':' .. (index - 1)) or '0')
  local current_key = key .. ':' .. index
  local current = tonumber(redis.call('GET', current_key) or '0')
  -- rounded down as `limits` does
  local weighted = math.floor(previous * (window - elapsed) / window) + current
  local reset = window - elapsed
  if weighted + 1 > limit then
    -- seconds until the weighted count admits one more: in this window, or after it ends
    if previous > 0 and current < limit then
      reset = math.max(window - elapsed - (limit - current) * window / previous, 0)
    elseif current > limit then
      reset = window - elapsed + window * (1 - limit / current)
    end
  end
  return {current_key, weighted, limit, math.ceil(reset)}
end
local limits = {{tonumber(ARGV[1]), tonumber(ARGV[2])}, {tonumber(ARGV[3]), tonumber(ARGV[4])}}
local out = {}
for i = 5, #ARGV, 2 do
  local states = {state(ARGV[i], limits[1][1], limits[1][2]), state(ARGV[i + 1], limits[2][1], limits[2][2])}
  local refused, which = nil, 0
  for j, s in ipairs(states) do
    if not refused and s[2] + 1 > s[3] then refused, which = s, j end
  end
  if refused then
    for _, v in ipairs({-which, refused[3], 0, refused[4]}) do table.insert(out, v) end
  else
    local tight = nil
    for j, s in ipairs(states) do
      redis.call('INCR', s[1])
      redis.call('EXPIRE', s[1], limits[j][2] * 2)
      local remaining = s[3] - s[2] - 1
      if not tight or remaining < tight[1] or (remaining == tight[1] and s[4] > tight[3]) then
        tight = {remaining, s[3], s[4]}
      end
    end
    for _, v in ipairs({1, tight[2], tight[1], tight[3]}) do table.insert(out, v) end
  end
end
return table.concat(out, ',')
"""


# ARGV: caller window (s), user window (s), then (caller key, user key) pairs: take back one count
# from each current window (for requests admitted before they turned out to be replays).
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 3, #ARGV, 2 do
  for j = 0, 1 do
    local key = ARGV[i + j] .. ':' .. math.floor(now / tonumber(ARGV[1 + j]))
    if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit's state after a request, as the RateLimit-* response fields."""

    limit: int
    remaining: int
    reset: int  # seconds until the window frees room again

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


# A request to admit: (userId, caller). Its answer: the tighter quota left, or the refusal.
Admission = Quota | RateLimited


def refusal(quota: Quota, scope: str) -> RateLimited:
    return RateLimited(f"rate limit of {quota.limit} per {scope} reached", max(1, quota.reset), quota.headers(),
                       scope)


class RateLimiter:
    def __init__(self, redis: redis.asyncio.Redis | None, prefix: str, per_user: str, per_caller: str,
                 guard: Callable[[], AbstractContextManager[None]] = nullcontext) -> None:
        self._guard = guard  # the live backend's breaker: a Redis outage costs no timeout per request
        self._script: AsyncScript | None = None if redis is None else redis.register_script(_ACQUIRE)
        self._refund: AsyncScript | None = None if redis is None else redis.register_script(_REFUND)
        self._prefix = f"{prefix}rl:"
        self._per_user = limits.parse(per_user)
        self._per_caller = limits.parse(per_caller)
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._degraded = False
        self.fallbacks = 0  # checks answered by process-local counters because Redis failed

    @classmethod
    def open(cls, live: Live, per_user: str, per_caller: str) -> RateLimiter:
        """Shared through the live backend's Redis (behind its breaker), or process-local without one."""
        return cls(live.redis, live.prefix, per_user, per_caller, live.guard)

    async def acquire(self, user_id: str, caller: str) -> Quota:
        """Count one write for the caller and the user, or raise RateLimited; returns the tighter quota."""
        (answer,) = await self.admit([(user_id, caller)])
        if isinstance(answer, RateLimited):
            raise answer
        return answer

    async def admit(self, requests: Sequence[tuple[str, str]]) -> list[Admission]:
        """Admit each (userId, caller) in order: counted against both limits, or refused by one
        and counted against neither."""
        if not requests:
            return []
        if self._script is not None:
            try:
                with self._guard():
                    answers = await self._shared(self._script, requests)
            except (LiveUnavailable, OSError) as exc:
                self._fell_back(exc)
            else:
                if self._degraded:
                    self._degraded = False
                    log.warning("rate limits are shared through Redis again")
                return answers
        return [await self._admit_locally(user_id, caller) for user_id, caller in requests]

    @property
    def shared(self) -> bool:
        """Whether a check costs a round trip (Redis), so that overlapping it with others pays."""
        return self._script is not None

    async def refund(self, requests: Sequence[tuple[str, str]]) -> None:
        """Take back the counts of admitted requests that turned out to be replays (Redis only:
        the service admits ahead of the replay lookup only when limits are shared)."""
        if self._refund is None or not requests:
            return
        try:
            with self._guard():
                await self._refund(keys=[], args=[self._per_caller.get_expiry(), self._per_user.get_expiry(),
                                                  *self._keys(requests)])
        except (LiveUnavailable, OSError) as exc:
            log.warning("rate-limit counts of replays not taken back: %s", exc)

    def _keys(self, requests: Sequence[tuple[str, str]]) -> list[str]:
        prefix = self._prefix
        return [key for user_id, caller in requests for key in (f"{prefix}c:{caller}", f"{prefix}u:{user_id}")]

    async def _shared(self, script: AsyncScript, requests: Sequence[tuple[str, str]]) -> list[Admission]:
        args: list[str | int] = [self._per_caller.amount, self._per_caller.get_expiry(),
                                 self._per_user.amount, self._per_user.get_expiry(), *self._keys(requests)]
        reply = await script(keys=[], args=args)
        flat = [int(value) for value in (reply.decode() if isinstance(reply, bytes) else reply).split(",")]
        answers: list[Admission] = []
        for i in range(0, len(flat), 4):
            admitted, quota = flat[i], Quota(limit=flat[i + 1], remaining=max(0, flat[i + 2]), reset=flat[i + 3])
            answers.append(quota if admitted == 1 else refusal(quota, "caller" if admitted == -1 else "user"))
        return answers

    async def _admit_locally(self, user_id: str, caller: str) -> Admission:
        checks = ((self._per_caller, "caller", caller), (self._per_user, "user", user_id))
        for item, scope, key in checks:
            if not await self._local.test(item, scope, key):
                return refusal(await self._quota(item, scope, key), scope)
        for item, scope, key in checks:
            await self._local.hit(item, scope, key)
        quotas = [await self._quota(*check) for check in checks]
        return min(quotas, key=lambda quota: (quota.remaining, -quota.reset))

    async def _quota(self, item: limits.RateLimitItem, scope: str, key: str) -> Quota:
        stats = await self._local.get_window_stats(item, scope, key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Quota(limit=item.amount, remaining=max(0, stats.remaining), reset=reset)

    def _fell_back(self, exc: Exception) -> None:
        self.fallbacks += 1
        if not self._degraded:  # once per outage: every request of it would repeat the line
            self._degraded = True
            log.warning("rate limits fall back to this process: %s", exc)
