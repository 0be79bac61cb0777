"""The Scoreboard: increments, users and reads, over the Store, Board, Bus and RateLimiter.

The database commits first; the read model and the change notification follow. A read
model or bus failure after a commit never fails the request: reads fall back to the
database and the read model is rebuilt when the live backend returns.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Mapping
from typing import NamedTuple

from app.domain import Entry, Increment, IncrementResult, Standing
from app.errors import IdempotencyConflict, NotFound
from app.live import CHANGED, Board, Bus, Freshness, LiveUnavailable
from app.moderation import Moderation
from app.ratelimit import Quota, RateLimiter
from app.store import Store

log = logging.getLogger(__name__)
__all__ = ["CHANGED", "Incremented", "Scoreboard"]


class Incremented(NamedTuple):
    """An increment's result and, when it was new work, the tighter rate-limit quota left."""

    result: IncrementResult
    quota: Quota | None


class Scoreboard:
    def __init__(
        self, store: Store, board: Board, bus: Bus, limiter: RateLimiter, actions: Mapping[str, int],
        moderation: Moderation, freshness: Freshness | None = None,
    ) -> None:
        self._store = store
        self._board = board
        self._bus = bus
        self._limiter = limiter
        self._moderation = moderation
        self._actions = dict(actions)
        self._default_action = next(iter(actions))
        self._freshness = freshness or Freshness()

    async def increment(self, caller: str, user_id: str, action_id: str, action: str | None) -> Incremented:
        """Apply the action's points once per actionId; a replay returns the record."""
        action = action or self._default_action
        quota: Quota | None = None
        result = await self._store.recorded(action_id)
        if result is None:
            # Only new work is blocked or rate limited; a refused request leaves its actionId unused.
            await self._moderation.admit(user_id)
            quota = await self._limiter.acquire(user_id, caller)
            increment = Increment(user_id, action_id, action, self._actions[action], caller)
            result = await self._store.apply_increment(increment)
        if (result.user_id, result.action) != (user_id, action):
            raise IdempotencyConflict(
                f"actionId {action_id!r} was used for another userId or action",
                {"actionId": action_id},
            )
        if result.applied:
            log.info("increment applied", extra={"audit": _audit(result, caller)})
            await self._changed(self._board.upsert([result.entry]))
            await self._moderation.observe(result)
        return Incremented(result, quota)

    async def save_user(self, user_id: str, display_name: str) -> Standing:
        entry = await self._store.save_user(user_id, display_name)
        await self._changed(self._board.upsert([entry]))
        return await self.standing(user_id, 0)

    async def delete_user(self, user_id: str) -> None:
        if not await self._store.delete_user(user_id):
            raise NotFound(f"no user {user_id!r}")
        await self._changed(self._board.remove(user_id))

    async def top(self, limit: int) -> list[Entry]:
        """From the read model when this process can trust it, else from the database."""
        if self._freshness.trusted:
            with contextlib.suppress(LiveUnavailable):
                return await self._board.top(limit)
        return await self._store.ranked(0, limit)

    async def standing(self, user_id: str, around: int) -> Standing:
        standing = None
        if self._freshness.trusted:
            with contextlib.suppress(LiveUnavailable):
                standing = await self._board.standing(user_id, around)
        if standing is None:  # a board miss may be a write the board lost: the database decides
            standing = await self._store.standing(user_id, around)
        if standing is None:
            raise NotFound(f"no user {user_id!r}")
        return standing

    async def _changed(self, board_write: Awaitable[None]) -> None:
        """After a commit: update the read model, then tell every process to look again.

        Each step may fail alone: with Redis down, the bus still tells this process's hub.
        """
        try:
            await board_write
        except LiveUnavailable as exc:
            # Until a repair that starts after this has run, this process reads from the database.
            self._freshness.write_failed()
            log.warning("read model not updated after commit (the reconciler repairs it): %s", exc)
        try:
            await self._bus.publish(CHANGED)
        except LiveUnavailable as exc:
            log.warning("other processes not told of a change (they resync when Redis returns): %s", exc)


def _audit(result: IncrementResult, caller: str) -> dict[str, object]:
    return {
        "userId": result.user_id, "action": result.action, "delta": result.delta,
        "actionId": result.action_id, "caller": caller, "newScore": result.new_score,
    }
