"""A serving process freezes the heap its start-up built (app.ops.heap)."""
from __future__ import annotations

import gc
from typing import Any

from app.config import Settings
from app.ops.heap import freeze_after_start
from app.web import create_app


async def test_the_heap_is_frozen_once_the_app_has_started_and_it_still_serves(
        aiohttp_client: Any, settings: Settings) -> None:
    gc.unfreeze()
    try:
        app = freeze_after_start(create_app(settings))
        assert gc.get_freeze_count() == 0
        client = await aiohttp_client(app)  # runs the start-up
        assert gc.get_freeze_count() > 0
        response = await client.get("/top")
        assert response.status == 200
        assert (await response.json())["entries"] == []
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
