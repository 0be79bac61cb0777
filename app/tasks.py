"""Stopping background tasks for sure."""
from __future__ import annotations

import asyncio


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended.

    On Python 3.11 a cancel that meets a library's own timeout (redis-py's socket reads)
    can be swallowed and surface as a timeout, so the cancel is repeated until it takes.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
