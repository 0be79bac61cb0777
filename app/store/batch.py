"""Plan a batch of increments in memory: each one's outcome, as if they had arrived one by one.

Both stores lock (or read) the batch's users, call `plan`, write the applied events in one
statement per step, then call `Plan.results` with the event ids the database assigned.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from app.domain import Increment, IncrementResult, PairScore
from app.errors import AppError, UserDeleted, ValidationFailed
from app.store.queries import checked_score

# One increment's outcome inside a batch: its result, or the error that refused it alone.
Outcome = IncrementResult | AppError


class UserState(NamedTuple):
    score: int
    deleted: bool
    display_name: str | None
    name_version: int = 0


@dataclass
class Plan:
    """What to write: the applied increments in batch order, with their scores after."""

    batch: Sequence[Increment]
    applied: list[tuple[int, int]] = field(default_factory=list)  # (batch index, score after)
    finals: dict[str, int] = field(default_factory=dict)  # user -> score after the batch
    states: dict[str, UserState] = field(default_factory=dict)  # of the users it changes, as read
    _outcomes: dict[int, Outcome] = field(default_factory=dict)
    _replays: dict[int, int] = field(default_factory=dict)  # index -> index of its first use in the batch

    def columns(self) -> tuple[list[str], list[str], list[str], list[int], list[int], list[str]]:
        """The applied events column by column (actionId, user, action, delta, score after, caller)."""
        rows = [(self.batch[i], score) for i, score in self.applied]
        return ([inc.action_id for inc, _ in rows], [inc.user_id for inc, _ in rows],
                [inc.action for inc, _ in rows], [inc.delta for inc, _ in rows],
                [score for _, score in rows], [inc.caller for inc, _ in rows])

    def results(self, event_ids: Sequence[int], change_keys: Mapping[str, int] | None = None) -> list[Outcome]:
        """Every increment's outcome, given the ids of the applied events in order and, when
        known, the change-feed key the transaction gave each changed user's row."""
        outcomes = dict(self._outcomes)
        keys = change_keys or {}
        for (index, score), seq in zip(self.applied, event_ids, strict=True):
            inc = self.batch[index]
            state = self.states[inc.user_id]
            outcomes[index] = IncrementResult(
                user_id=inc.user_id, action_id=inc.action_id, action=inc.action, delta=inc.delta,
                new_score=score, applied=True, seq=seq, display_name=state.display_name,
                name_version=state.name_version, change_key=keys.get(inc.user_id),
            )
        for index, first in self._replays.items():
            earlier = outcomes[first]
            outcomes[index] = dataclasses.replace(earlier, applied=False) if isinstance(earlier, IncrementResult) \
                else earlier
        return [outcomes[index] for index in range(len(self.batch))]


def plan(batch: Sequence[Increment], users: Mapping[str, UserState],
         recorded: Mapping[str, IncrementResult]) -> Plan:
    """Decide each increment in order; a refused one never changes what its neighbours see."""
    result = Plan(batch)
    scores = {user: state.score for user, state in users.items()}
    claimed: dict[str, int] = {}
    for index, inc in enumerate(batch):
        if inc.action_id in recorded:
            result._outcomes[index] = recorded[inc.action_id]
        elif inc.action_id in claimed:
            result._replays[index] = claimed[inc.action_id]
        elif users[inc.user_id].deleted:
            result._outcomes[index] = UserDeleted(f"user {inc.user_id!r} was deleted")
        else:
            try:
                score = checked_score(scores[inc.user_id] + inc.delta)
            except ValidationFailed as exc:
                result._outcomes[index] = exc
                continue
            scores[inc.user_id] = result.finals[inc.user_id] = score
            result.states[inc.user_id] = users[inc.user_id]
            result.applied.append((index, score))
            claimed[inc.action_id] = index
    return result


def with_pairs(outcomes: list[Outcome], pairs: Sequence[PairScore] | None) -> list[Outcome]:
    """The applied results, each with its user's pair scores and every pair held back (None: the
    store could not say)."""
    by_user: dict[str, list[PairScore]] = {}
    held: list[PairScore] = []
    for pair in pairs or ():
        if pair.entry is None:
            held.append(pair)
        else:
            by_user.setdefault(pair.entry.user_id, []).append(pair)
    return [dataclasses.replace(o, pairs=None if pairs is None else (*by_user.get(o.user_id, ()), *held))
            if isinstance(o, IncrementResult) and o.applied else o for o in outcomes]
