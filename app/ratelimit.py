"""Per-user and per-caller rate limits with `limits`: shared through Redis, or in process memory.

If Redis fails, the limits fall back to process-local counters for that request, so a
Redis outage degrades fairness across processes rather than refusing every write.
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from app.errors import RateLimited

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, shared: Storage, per_user: str, per_caller: str) -> None:
        self._shared = MovingWindowRateLimiter(shared)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._per_user = limits.parse(per_user)
        self._per_caller = limits.parse(per_caller)

    @classmethod
    def open(cls, redis: redis.asyncio.Redis | None, prefix: str, per_user: str, per_caller: str) -> RateLimiter:
        if redis is None:
            return cls(MemoryStorage(), per_user, per_caller)
        storage = RedisStorage(
            "async+redis://", implementation="redispy", wrap_exceptions=True,
            key_prefix=f"{prefix}limits", connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        return cls(storage, per_user, per_caller)

    async def acquire(self, user_id: str, caller: str) -> None:
        """Count one write for the user and the caller, or raise RateLimited."""
        for item, scope, key in ((self._per_caller, "caller", caller), (self._per_user, "user", user_id)):
            if not await self._hit(item, scope, key):
                raise RateLimited(f"rate limit of {item} per {scope} reached",
                                  await self._retry_after(item, scope, key))

    async def _hit(self, item: limits.RateLimitItem, scope: str, key: str) -> bool:
        try:
            return await self._shared.hit(item, scope, key)
        except StorageError as exc:
            log.warning("rate limits fall back to this process: %s", exc)
            return await self._local.hit(item, scope, key)

    async def _retry_after(self, item: limits.RateLimitItem, scope: str, key: str) -> int:
        try:
            stats = await self._shared.get_window_stats(item, scope, key)
        except StorageError:
            stats = await self._local.get_window_stats(item, scope, key)
        return max(1, math.ceil(stats.reset_time - time.time()))
