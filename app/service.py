"""The Scoreboard: increments, users and reads, over the Store, Board, Bus and RateLimiter.

Increments are committed in batches (group commit); the read model and the change notification
of a batch follow in one round trip, which callers do not wait for (their 200 is the commit), but
this process's own reads do (read-your-writes). A read model or bus failure after a commit never
fails the request: reads fall back to the database and the read model is rebuilt when the live
backend returns.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import NamedTuple

from app.batching import Batcher
from app.domain import Entry, Increment, IncrementResult, Standing
from app.errors import AppError, IdempotencyConflict, NotFound
from app.live import CHANGED, Board, Bus, Freshness, LiveUnavailable, PairRows, Pairs, changed
from app.moderation import Moderation
from app.pair_builds import pair_writes
from app.periods import Clock, key_expiry, system_clock
from app.ratelimit import Admission, Quota, RateLimiter
from app.store import Store
from app.store.batch import Outcome

log = logging.getLogger(__name__)
BATCHES_IN_FLIGHT = 4  # batches committing at once: later ones gather while earlier ones wait on the database
ADMISSIONS_IN_FLIGHT = 4  # rate-limit checks on their way to Redis at once; more arrivals wait and join one


class Incremented(NamedTuple):
    """An increment's result and, when it was new work, the tighter rate-limit quota left."""

    result: IncrementResult
    quota: Quota | None


class _Request(NamedTuple):
    caller: str
    user_id: str
    action_id: str
    action: str
    admission: asyncio.Future[Admission] | None  # the limits' answer, when checked as the request arrived


class Scoreboard:
    def __init__(
        self, store: Store, board: Board, bus: Bus, limiter: RateLimiter, actions: Mapping[str, int],
        moderation: Moderation, freshness: Freshness | None = None, *, batch_window: float, batch_max: int,
        clock: Clock = system_clock, pairs: Pairs | None = None,
    ) -> None:
        self._store = store
        self._board = board
        self._pairs = pairs
        self._bus = bus
        self._limiter = limiter
        self._moderation = moderation
        self._actions = dict(actions)
        self._default_action = next(iter(actions))
        self._freshness = freshness or Freshness()
        self._clock = clock  # the batch's `now`: which period of each board its increments count toward
        self._announcing: set[asyncio.Task[None]] = set()  # read-model writes of committed batches
        self._batcher: Batcher[_Request, Incremented] = Batcher(
            self._increments, batch_window, batch_max, BATCHES_IN_FLIGHT)
        # With shared limits (and no anomaly blocks, which come first) a request's limits are checked
        # as it arrives, gathered per loop turn: the round trip overlaps the batch window instead of
        # following it. The store finds the replays, whose counts are taken back.
        self._early = limiter.shared and not moderation.blocking
        self._admissions: Batcher[tuple[str, str], Admission] = Batcher(
            limiter.admit, 0.0, batch_max, ADMISSIONS_IN_FLIGHT)

    async def increment(self, caller: str, user_id: str, action_id: str, action: str | None) -> Incremented:
        """Apply the action's points once per actionId; a replay returns the record.

        Increments arriving together are committed in one batch; this returns after the commit."""
        admission = self._admissions.add((user_id, caller)) if self._early else None
        return await self._batcher.submit(
            _Request(caller, user_id, action_id, action or self._default_action, admission))

    async def drain(self) -> None:
        """Answer every increment already accepted (at shutdown)."""
        await self._admissions.drain()
        await self._batcher.drain()
        while self._announcing:
            await asyncio.gather(*self._announcing, return_exceptions=True)

    async def announced(self) -> None:
        """Wait for the read-model writes of the batches committed so far: a read that follows an
        answered increment in this process sees it."""
        if self._announcing:
            await asyncio.gather(*self._announcing, return_exceptions=True)

    async def _increments(self, requests: Sequence[_Request]) -> list[Incremented | AppError]:
        """One batch: admitted by the limits, committed together (the store answers replays from
        the record), then published; each request keeps its own answer."""
        # With limits checked on arrival a lookup round trip first would only delay the batch: the
        # store finds the replays, whose counts are taken back, and a refused request is checked afterwards.
        recorded = {} if self._early else await self._store.recorded({r.action_id for r in requests})
        firsts = _first_uses(requests, recorded)
        admissions, doubles = await self._admissions_of(requests, list(firsts.values()))
        answers: dict[int, Incremented | AppError] = {}
        work: dict[int, Quota] = {}
        for index, admission in zip(firsts.values(), admissions, strict=True):
            if isinstance(admission, Quota):
                work[index] = admission
            else:
                answers[index] = admission
        outcomes, late = await asyncio.gather(
            self._commit([self._new(requests[i]) for i in work]),
            self._replays([requests[i].action_id for i in answers] if self._early else []))
        answers.update({i: _answer(requests[i], late[requests[i].action_id], None)
                        for i in answers if requests[i].action_id in late})
        for (index, quota), outcome in zip(work.items(), outcomes, strict=True):
            answers[index] = _answer(requests[index], outcome, quota)
        await self._limiter.refund([(requests[i].user_id, requests[i].caller) for i, outcome
                                    in zip(work, outcomes, strict=True)
                                    if isinstance(outcome, IncrementResult) and not outcome.applied] + doubles)
        await self._applied([a.result for a in answers.values() if isinstance(a, Incremented) and a.result.applied])
        return [_answer(r, recorded[r.action_id], None) if r.action_id in recorded
                else answers[i] if i in answers else _replay(r, answers[firsts[r.action_id]])
                for i, r in enumerate(requests)]

    async def _replays(self, action_ids: list[str]) -> dict[str, IncrementResult]:
        """The records of refused requests that were replays (answered from the record after all)."""
        if not action_ids:
            return {}
        try:
            return await self._store.recorded(action_ids)
        except AppError:  # the database is away: they stay refused, and a retry asks again
            return {}

    def _new(self, request: _Request) -> Increment:
        return Increment(request.user_id, request.action_id, request.action, self._actions[request.action],
                         request.caller)

    async def _admissions_of(self, requests: Sequence[_Request], firsts: list[int]
                             ) -> tuple[list[Admission | AppError], list[tuple[str, str]]]:
        """The first uses' admissions, and the (userId, caller) of the later uses in the batch that
        were counted on arrival (replays of the first: their counts are taken back)."""
        if not self._early:
            return await self._admit([requests[i] for i in firsts]), []
        checked = [await _arrived(request.admission) for request in requests if request.admission is not None]
        first_uses = set(firsts)
        doubles = [(request.user_id, request.caller) for index, (request, admission)
                   in enumerate(zip(requests, checked, strict=True))
                   if index not in first_uses and isinstance(admission, Quota)]
        return [checked[index] for index in firsts], doubles

    async def _admit(self, requests: Sequence[_Request]) -> list[Admission | AppError]:
        """Anomaly blocks (only when on), then both rate limits in one round trip; a refused
        request uses up neither its actionId nor the other limit."""
        blocked: list[AppError | None] = [None] * len(requests)
        if self._moderation.blocking:
            blocked = [await _refusal(self._moderation.admit(r.user_id)) for r in requests]
        open_ = [i for i, error in enumerate(blocked) if error is None]
        quotas = iter(await self._limiter.admit([(requests[i].user_id, requests[i].caller) for i in open_]))
        return [error if error is not None else next(quotas) for error in blocked]

    async def _commit(self, batch: list[Increment]) -> list[Outcome]:
        if not batch:
            return []
        try:
            return await self._store.apply_increments(batch, self._clock(), self._board.watched())
        except AppError as exc:  # nothing of the batch was written (or its fate is unknown)
            return [exc] * len(batch)

    async def _applied(self, results: list[IncrementResult]) -> None:
        """After the commit: the read model and the change notification start (one round trip,
        not waited for: the board keeps the newest seq per user, so batches may land in any order);
        the anomaly check, when on, runs before the callers are answered."""
        if not results:
            return
        task = asyncio.create_task(self._announce(results), name="announce")
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)
        if self._moderation.enabled:
            for result in results:
                await self._moderation.observe(result)

    async def _announce(self, results: list[IncrementResult]) -> None:
        newest = {r.user_id: r.entry for r in sorted(results, key=lambda r: r.seq)}
        pairs, unknown = pair_writes(results, self._clock())
        # A batch's applied results hold every row its transaction changed: recording its change
        # keys as applied spares the reconciler reading them again.
        keys = {r.change_key for r in results if r.change_key is not None}
        message = changed(r.action for r in results)
        try:
            held = await self._board.upsert(newest.values(), announce=self._bus, message=message,
                                            pairs=pairs, applied=keys)
            if held:  # watched since the batch began (a build here or elsewhere): read their rows
                await self._board.upsert([], announce=self._bus, message=message,
                                         pairs=await self._pair_rows(held, list(newest)))
            if unknown and self._pairs is not None:  # the store could not say which pairs changed
                await self._pairs.forget()
        except LiveUnavailable as exc:
            # Until a repair that starts after this has run, this process reads from the database
            # (and the repair makes every process stop trusting the pairs' read models).
            self._freshness.write_failed()
            log.warning("read model or bus not updated after commit (the reconciler repairs it): %s", exc)
        except Exception:  # a bug: the callers have their answers already; the reconciler repairs the board
            self._freshness.write_failed()
            log.exception("read model or bus not updated after commit")

    async def _pair_rows(self, pairs: list[tuple[str, str]], user_ids: list[str]) -> list[PairRows]:
        now = self._clock()
        return [PairRows(board_id, key, await self._store.board_entries(board_id, key, user_ids),
                         *key_expiry(key, now)) for board_id, key in pairs]

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
        await self.announced()
        if self._freshness.trusted:
            with contextlib.suppress(LiveUnavailable):
                return await self._board.top(limit)
        return await self._store.ranked(0, limit)

    async def standing(self, user_id: str, around: int) -> Standing:
        standing = None
        await self.announced()
        if self._freshness.trusted:
            with contextlib.suppress(LiveUnavailable):
                standing = await self._board.standing(user_id, around)
        if standing is None:  # a board miss may be a write the board lost: the database decides
            standing = await self._store.standing(user_id, around)
        if standing is None:
            raise NotFound(f"no user {user_id!r}")
        return standing

    async def _changed(self, board_write: Awaitable[object]) -> None:
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


def _first_uses(requests: Sequence[_Request], recorded: Mapping[str, IncrementResult]) -> dict[str, int]:
    """actionId -> index of its first use in the batch, for the actionIds never applied before."""
    firsts: dict[str, int] = {}
    for index, request in enumerate(requests):
        if request.action_id not in recorded:
            firsts.setdefault(request.action_id, index)
    return firsts


def _answer(request: _Request, outcome: Outcome, quota: Quota | None) -> Incremented | AppError:
    if isinstance(outcome, AppError):
        return outcome
    if (outcome.user_id, outcome.action) != (request.user_id, request.action):
        return IdempotencyConflict(
            f"actionId {request.action_id!r} was used for another userId or action", {"actionId": request.action_id})
    return Incremented(outcome, quota if outcome.applied else None)


def _replay(request: _Request, first: Incremented | AppError) -> Incremented | AppError:
    """A later use of an actionId within the batch: a replay of the first use's result."""
    if isinstance(first, AppError):
        return first
    return _answer(request, dataclasses.replace(first.result, applied=False), None)


async def _arrived(admission: asyncio.Future[Admission]) -> Admission | AppError:
    """An admission checked on arrival: the batcher hands a refusal over as the item's exception."""
    try:
        return await admission
    except AppError as exc:
        return exc


async def _refusal(check: Awaitable[None]) -> AppError | None:
    try:
        await check
    except AppError as exc:
        return exc
    return None


def audit_fields(result: IncrementResult, caller: str) -> dict[str, object]:
    """An applied increment's audit record, carried by its access log line."""
    return {
        "userId": result.user_id, "action": result.action, "delta": result.delta,
        "actionId": result.action_id, "caller": caller, "newScore": result.new_score,
    }
