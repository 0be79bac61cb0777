"""Plain domain values shared by the service, the store and the live read model."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Entry:
    """One user's place on the board.

    `seq` is the id of the score event that set `score` (or of the user's creation):
    on equal scores the smaller `seq` reached the score first and ranks higher.
    """

    user_id: str
    display_name: str | None
    score: int
    seq: int
    # Grows with every rename: an older name never overwrites a newer one in the read model.
    # Not part of equality: two reads of the same state compare equal whatever they knew of it.
    name_version: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Change:
    """A user's state as the change feed gives it; `key` orders the feed (see ChangeFeed)."""

    key: int
    entry: Entry
    deleted: bool


@dataclass(frozen=True, slots=True)
class Standing:
    """A user's entry with its 1-based rank and, optionally, the entries around it."""

    entry: Entry
    rank: int
    around: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class Increment:
    """A validated increment request whose points were decided by the server."""

    user_id: str
    action_id: str
    action: str
    delta: int
    caller: str


@dataclass(frozen=True, slots=True)
class PairScore:
    """A user's score on one (board, period key) as a batch left it (names stay main's); without
    an entry, a pair the batch changed whose rows the store held back (nobody watched it here)."""

    board_id: str
    key: str
    entry: Entry | None


@dataclass(frozen=True, slots=True)
class IncrementResult:
    """What an increment did; `applied` is False for a replay of a recorded actionId."""

    user_id: str
    action_id: str
    action: str
    delta: int
    new_score: int
    applied: bool
    seq: int
    display_name: str | None = None
    # What the read model needs of the commit, not of the outcome (a record compares equal without):
    # the name's version, and the change-feed key its transaction gave the user's row (see
    # ChangeFeed); None when unknown (a replay, a commit whose answer was lost): the repair reads it.
    name_version: int = field(default=0, compare=False)
    change_key: int | None = field(default=None, compare=False)
    # An applied increment's user's scores on every watched (board, period key) its batch wrote, and
    # the other pairs the batch wrote, held back; None when the store could not say (the pairs'
    # read models are then rebuilt). Not part of equality.
    pairs: tuple[PairScore, ...] | None = field(default=(), compare=False)

    @property
    def entry(self) -> Entry:
        """The user's board entry right after this increment."""
        return Entry(self.user_id, self.display_name, self.new_score, self.seq, self.name_version)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One applied increment as the audit log keeps it; `id` orders a user's events."""

    id: int
    action_id: str
    action: str
    delta: int
    score_after: int
    caller: str
    at: datetime
