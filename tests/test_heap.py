"""A serving process freezes the heap its start-up built and collects young objects less often (app.ops.heap)."""
from __future__ import annotations

import gc
from typing import Any

from app.config import Settings
from app.ops.heap import GEN0_THRESHOLD, tuned_for_serving
from app.web import create_app


async def test_the_collector_is_tuned_once_the_app_has_started_and_it_still_serves(
        aiohttp_client: Any, settings: Settings) -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        app = tuned_for_serving(create_app(settings))
        assert gc.get_freeze_count() == 0
        client = await aiohttp_client(app)  # runs the start-up
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == GEN0_THRESHOLD
        response = await client.get("/top")
        assert response.status == 200
        assert (await response.json())["entries"] == []
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
        gc.set_threshold(*thresholds)
