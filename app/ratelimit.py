"""Per-user and per-caller rate limits with `limits`: shared through Redis, or in process memory.

If Redis fails, the limits fall back to process-local counters for that request, so a
Redis outage degrades fairness across processes rather than refusing every write.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from app.errors import RateLimited

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)


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


class RateLimiter:
    def __init__(self, shared: Storage, per_user: str, per_caller: str) -> None:
        self._shared = MovingWindowRateLimiter(shared)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._per_user = limits.parse(per_user)
        self._per_caller = limits.parse(per_caller)
        self._degraded = False
        self.fallbacks = 0  # checks answered by process-local counters because Redis failed

    @classmethod
    def open(cls, redis: redis.asyncio.Redis | None, prefix: str, per_user: str, per_caller: str) -> RateLimiter:
        if redis is None:
            return cls(MemoryStorage(), per_user, per_caller)
        storage = RedisStorage(
            "async+redis://", implementation="redispy", wrap_exceptions=True,
            key_prefix=f"{prefix}limits", connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        return cls(storage, per_user, per_caller)

    async def acquire(self, user_id: str, caller: str) -> Quota:
        """Count one write for the caller and the user, or raise RateLimited; returns the tighter quota."""
        checks = ((self._per_caller, "caller", caller), (self._per_user, "user", user_id))
        for item, scope, key in checks:
            if not await self._hit(item, scope, key):
                quota = await self._quota(item, scope, key)
                raise RateLimited(f"rate limit of {item} per {scope} reached", max(1, quota.reset), quota.headers())
        quotas = await asyncio.gather(*(self._quota(*check) for check in checks))
        return min(quotas, key=lambda quota: (quota.remaining, -quota.reset))

    async def _hit(self, item: limits.RateLimitItem, scope: str, key: str) -> bool:
        try:
            allowed = await self._shared.hit(item, scope, key)
        except StorageError as exc:
            self._fell_back(exc)
            return await self._local.hit(item, scope, key)
        if self._degraded:
            self._degraded = False
            log.warning("rate limits are shared through Redis again")
        return allowed

    async def _quota(self, item: limits.RateLimitItem, scope: str, key: str) -> Quota:
        try:
            stats = await self._shared.get_window_stats(item, scope, key)
        except StorageError as exc:
            self._fell_back(exc)
            stats = await self._local.get_window_stats(item, scope, key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Quota(limit=item.amount, remaining=max(0, stats.remaining), reset=reset)

    def _fell_back(self, exc: StorageError) -> None:
        self.fallbacks += 1
        if not self._degraded:  # once per outage: every request of it would repeat the line
            self._degraded = True
            log.warning("rate limits fall back to this process: %s", exc)
