"""The hub's reads: spaced whether or not the top 10 changed."""
from __future__ import annotations

import asyncio
import contextlib

from app.domain import Entry
from app.hub import READ_SPACING, Hub
from app.live import CHANGED, open_live
from app.streams import StreamRegistry
from tests.conftest import eventually

INTERVAL = 0.2


class Board:
    """The hub's read: a top 10 that changes only when told to, reads counted."""

    def __init__(self) -> None:
        self.reads = 0
        self.entries: list[Entry] = []

    async def top(self, limit: int) -> list[Entry]:
        self.reads += 1
        return list(self.entries)


async def test_messages_that_leave_the_top_10_as_it_is_are_read_spaced_out() -> None:
    board = Board()
    async with open_live(None, "test:") as live:
        hub = Hub(board.top, live.bus, StreamRegistry(10, 10, INTERVAL, 60, 60), INTERVAL)
        task = asyncio.create_task(hub.run())
        try:
            async def subscribed() -> None:
                await live.bus.publish(CHANGED)
                assert board.reads >= 1

            await eventually(subscribed)
            before, started = board.reads, asyncio.get_running_loop().time()
            for _ in range(30):  # a batch's message every 10 ms, none changing the top 10
                await live.bus.publish(CHANGED)
                await asyncio.sleep(0.01)
            elapsed = asyncio.get_running_loop().time() - started
            # Each message used to be a read of its own (no push followed, so nothing spaced them).
            assert before < board.reads <= before + elapsed / (INTERVAL * READ_SPACING) + 1
            assert hub.pushes == 0

            board.entries = [Entry("alice", "Alice", 10, 1)]  # a change is still read and pushed
            await live.bus.publish(CHANGED)

            async def pushed() -> None:
                assert hub.pushes == 1 and hub.snapshot.entries[0].user_id == "alice"

            await eventually(pushed)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
