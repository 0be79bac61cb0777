"""Group work that arrives together: gather items for at most a window (or up to a maximum) and
hand them to one `flush` call; each submitter gets its own item's answer.

A few flushes may run at once (the database pipelines them); while all are busy, new items
wait and join the next batch, so batches grow with the load and stay small when it is light.
While one runs, the next starts no sooner than a flush's recent duration divided by the number
that may run at once after the previous start: under load the batches spread evenly over the
flushes, instead of one big batch and a string of one-item batches that each pay a whole flush.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Answer = TypeVar("Answer")
MAX_SPACING = 0.05  # seconds: a slow or failing flush never holds the next batch back longer
# Returns one answer per item, in order: a value, or the exception that item alone raises.
Flush = Callable[[Sequence[Item]], Awaitable[Sequence[Answer | BaseException]]]


class Batcher(Generic[Item, Answer]):
    def __init__(self, flush: Flush[Item, Answer], window: float, max_size: int, concurrency: int) -> None:
        self._flush = flush
        self._window = window
        self._max_size = max_size
        self._free = self._concurrency = concurrency
        self._spacing: float | None = None  # between starts while one runs: recent flush time / concurrency
        self._next_start = 0.0
        self._pending: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Answer:
        # A submitter that goes away cancels only its own future; the batch runs on for its neighbours.
        return await self.add(item)

    def add(self, item: Item) -> asyncio.Future[Answer]:
        """Queue the item; the future gets its answer (for a caller that awaits it later)."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max_size:
            self._start()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._start)
        return future

    def _start(self, paced: bool = True) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._pending and self._free > 0:
            now = loop.time()
            if paced and self._free < self._concurrency and len(self._pending) < self._max_size \
                    and now < self._next_start:  # items arriving meanwhile join this batch
                self._timer = loop.call_at(self._next_start, self._start)
                return
            batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
            self._free -= 1
            self._next_start = now + (self._spacing or 0.0)
            task = asyncio.create_task(self._run(batch), name="batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answers: Sequence[Answer | BaseException] = await self._flush([item for item, _ in batch])
        except Exception as exc:  # every submitter of the batch gets the failure
            answers = [exc] * len(batch)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        finally:
            spacing = min((loop.time() - started) / self._concurrency, MAX_SPACING)
            self._spacing = spacing if self._spacing is None else self._spacing + 0.2 * (spacing - self._spacing)
            self._free += 1
            if self._pending:  # items that waited for a free slot go next (at the pace above)
                self._start()
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def drain(self) -> None:
        """Flush what is pending and wait for every running batch (at shutdown)."""
        self._start(paced=False)
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
