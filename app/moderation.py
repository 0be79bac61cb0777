"""Anomaly flags (too many points in an hour: flag, or block until cleared) and audit log reads."""
from __future__ import annotations

import logging

from app.domain import AuditEvent, IncrementResult
from app.errors import Forbidden, NotFound, ServiceUnavailable
from app.store import AuditLog

log = logging.getLogger(__name__)
WINDOW_SECONDS = 3600


class Moderation:
    def __init__(self, audit: AuditLog, points_per_hour: int | None, block: bool) -> None:
        self._audit = audit
        self._ceiling = points_per_hour  # None: anomaly flags are off
        self._block = block
        # The service skips the moderation calls entirely when these are False: zero cost when off.
        self.enabled = points_per_hour is not None
        self.blocking = self.enabled and block
        self.flags_raised = 0  # flags this process raised, for the metrics

    async def admit(self, user_id: str) -> None:
        """Refuse new increments for a flagged user when the action is `block`."""
        if self._ceiling is not None and self._block and await self._audit.flagged(user_id):
            raise Forbidden(
                f"user {user_id!r} is flagged for unusual activity until an operator clears the flag",
                {"userId": user_id, "reason": "anomaly"},
            )

    async def observe(self, result: IncrementResult) -> None:
        """After a committed increment: flag the user if the last hour's points exceed the ceiling."""
        if self._ceiling is None or result.delta <= 0:
            return
        try:
            points = await self._audit.flag_if_over(result.user_id, self._ceiling, WINDOW_SECONDS)
        except ServiceUnavailable as exc:
            # The increment is committed: answer it; the next increment checks again.
            log.warning("anomaly check skipped for %r: %s", result.user_id, exc)
            return
        if points is not None:
            self.flags_raised += 1
            log.warning("user flagged: %r gained %d points in the last hour (ceiling %d)%s",
                        result.user_id, points, self._ceiling, "; increments blocked" if self._block else "")

    async def clear_flag(self, user_id: str) -> None:
        if not await self._audit.clear_flag(user_id):
            raise NotFound(f"user {user_id!r} has no flag")

    async def events(self, user_id: str, before: int | None, limit: int) -> tuple[list[AuditEvent], int | None]:
        """A page of the user's audit log, newest first, and the id to continue below (None at the end)."""
        page = await self._audit.events(user_id, before, limit + 1)
        if page is None:
            raise NotFound(f"no user {user_id!r}")
        if len(page) > limit:
            return page[:limit], page[limit - 1].id
        return page, None
