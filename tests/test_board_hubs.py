"""PairHub on both buses: a watched board is read only after a message about an action it counts
(or about every board); an idle board is not read when another board changes."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from app.board_hubs import BoardHubs, StreamSettings
from app.boards import BoardConfig
from app.domain import Entry
from app.hub import READ_SPACING
from app.live import CHANGED, Bus, changed, open_live
from app.live.redis import RedisBus
from tests.conftest import eventually
from tests.services import require_redis
from tests.test_boards_api import FakeClock

SETTINGS = StreamSettings(interval=0.01, ping_interval=15.0, send_timeout=1.0)
QUIET = 0.1  # seconds a hub gets to (wrongly) read after a message that does not concern it


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    url = None if request.param == "memory" else require_redis()
    async with open_live(url, f"test-{uuid4().hex}:") as live:
        yield live.bus


class CountedReads:
    """The hubs' read: an empty top 10, counted per board."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}

    async def __call__(self, board_id: str, key: str, limit: int) -> list[Entry]:
        self.reads[board_id] = self.reads.get(board_id, 0) + 1
        return []


async def test_an_idle_board_is_not_read_when_another_board_changes(bus: Bus) -> None:
    reads = CountedReads()
    hubs = BoardHubs(reads, bus, FakeClock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC)), SETTINGS)
    bonus = BoardConfig("bonus", "Bonus", actions=("bonus",))
    try:
        async with hubs.watch(bonus, "all"):
            if isinstance(bus, RedisBus):  # the subscription announces itself: let the hub take that read
                await eventually(lambda: _reads_at_least(reads, "bonus", 2))
            before = reads.reads["bonus"]
            for _ in range(3):
                await bus.publish(changed(["complete"]))
                await asyncio.sleep(QUIET)
            assert reads.reads["bonus"] == before  # nothing it counts changed
            await bus.publish(changed(["complete", "bonus"]))
            await eventually(lambda: _reads_at_least(reads, "bonus", before + 1))
            await bus.publish(CHANGED)  # about every board (a rename, a deletion, a repair)
            await eventually(lambda: _reads_at_least(reads, "bonus", before + 2))
    finally:
        await hubs.close()


async def _reads_at_least(reads: CountedReads, board_id: str, count: int) -> None:
    assert reads.reads.get(board_id, 0) >= count


async def test_a_board_changed_while_watched_counts_its_new_actions(bus: Bus) -> None:
    reads = CountedReads()
    configs = {"bonus": BoardConfig("bonus", "Bonus", actions=("bonus",))}

    async def config(board_id: str) -> BoardConfig:
        return configs[board_id]

    hubs = BoardHubs(reads, bus, FakeClock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC)), SETTINGS, config)
    try:
        async with hubs.watch(configs["bonus"], "all"):
            if isinstance(bus, RedisBus):
                await eventually(lambda: _reads_at_least(reads, "bonus", 2))
            before = reads.reads["bonus"]
            await bus.publish(changed(["complete"]))
            await asyncio.sleep(QUIET)
            assert reads.reads["bonus"] == before
            configs["bonus"] = BoardConfig("bonus", "Bonus")  # a PUT: every action counts now
            await bus.publish(changed(["complete"]))
            await eventually(lambda: _reads_at_least(reads, "bonus", before + 1))
    finally:
        await hubs.close()


async def test_messages_that_leave_a_pair_as_it_is_are_read_spaced_out(bus: Bus) -> None:
    reads = CountedReads()
    interval = 0.2
    hubs = BoardHubs(reads, bus, FakeClock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
                     StreamSettings(interval=interval, ping_interval=15.0, send_timeout=1.0))
    bonus = BoardConfig("bonus", "Bonus", actions=("bonus",))
    try:
        async with hubs.watch(bonus, "all"):
            if isinstance(bus, RedisBus):
                await eventually(lambda: _reads_at_least(reads, "bonus", 2))
            before = reads.reads["bonus"]
            started = asyncio.get_running_loop().time()
            for _ in range(30):  # a batch's message every 10 ms, the pair's top 10 unchanged
                await bus.publish(changed(["bonus"]))
                await asyncio.sleep(0.01)
            elapsed = asyncio.get_running_loop().time() - started
            assert 1 <= reads.reads["bonus"] - before <= elapsed / (interval * READ_SPACING) + 1
    finally:
        await hubs.close()
