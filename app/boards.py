"""Board configurations: which actions count toward a board, its periods and its time zone.

`main` always exists; its `all` period is the users table and today's read model (GET /top,
/scores, /stream). Every other (board, period) pair lives in the board_scores table, keyed by
the period key the write transaction computed at its `now`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from app.periods import ALL, PERIODS, period_key, zone

MAIN = "main"


@dataclass(frozen=True, slots=True)
class BoardConfig:
    board_id: str
    title: str
    actions: tuple[str, ...] | None = None  # None: every action counts
    periods: tuple[str, ...] = (ALL,)
    time_zone: str = "UTC"

    @property
    def zone(self) -> tzinfo:
        return zone(self.time_zone)

    def counts(self, action: str) -> bool:
        return self.actions is None or action in self.actions

    def keys_at(self, now: datetime) -> list[str]:
        """The keys of this board's stored periods at `now` (main's `all` is the users table)."""
        return [period_key(period, now, self.zone) for period in self.periods
                if not (self.board_id == MAIN and period == ALL)]

    def ordered(self) -> BoardConfig:
        """The same board with its periods in the canonical order (all, daily, weekly, monthly)."""
        periods = tuple(p for p in PERIODS if p in self.periods)
        return BoardConfig(self.board_id, self.title, self.actions, periods, self.time_zone)


DEFAULT_MAIN = BoardConfig(MAIN, "Scoreboard")


def is_main_all(board_id: str, period: str) -> bool:
    """Whether (board, period) is the pair served by GET /top, /scores and /stream."""
    return board_id == MAIN and period == ALL

