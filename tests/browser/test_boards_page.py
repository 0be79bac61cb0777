"""The page's board and period switcher in Chromium: driven by the URL, live per board, pinnable."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from playwright.async_api import Page, expect

from tests.browser.test_page import assert_rows_match, row, status

if TYPE_CHECKING:
    from .conftest import Api, Console


async def _boards(api: Api) -> None:
    await api.put_board("weekly", {"title": "Weekly race", "periods": ["weekly", "all"]})
    await api.put_board("other", {"title": "Other", "periods": ["all"]})


async def test_the_url_picks_the_board_and_period_and_it_stays_live(page: Page, api: Api) -> None:
    await api.increment("before")  # before the board existed: not on it
    await _boards(api)
    await api.increment("u1", times=2)
    await page.goto("/?board=weekly&period=weekly")
    await expect(status(page)).to_have_attribute("data-state", "live")
    await expect(page.locator("#title")).to_have_text("Weekly race")
    await expect(page.locator("#period-line")).to_have_text(re.compile(r"^This week · \d{4}-W\d{2}$"))
    await assert_rows_match(page, await api.top("/boards/weekly/top?period=weekly"))
    await expect(row(page, "before")).to_have_count(0)

    await api.increment("u2", times=3)  # live on this board too
    await expect(row(page, "u2")).to_have_attribute("data-rank", "1", timeout=2_000)
    await assert_rows_match(page, await api.top("/boards/weekly/top?period=weekly"))


async def test_the_switcher_changes_the_url_and_the_board(page: Page, api: Api) -> None:
    await _boards(api)
    await api.increment("u1")
    await page.goto("/")
    await expect(status(page)).to_have_attribute("data-state", "live")
    await expect(page.locator("#switcher")).to_be_visible()
    await expect(page.locator("#board-select option")).to_have_text(["Scoreboard", "Other", "Weekly race"])

    await page.locator("#board-select").select_option("weekly")
    await expect(page).to_have_url(re.compile(r"\?board=weekly&period=all$"))
    await expect(status(page)).to_have_attribute("data-state", "live")
    await expect(page.locator("#period-select option")).to_have_text(["All time", "This week"])
    await page.locator("#period-select").select_option("weekly")
    await expect(page).to_have_url(re.compile(r"\?board=weekly&period=weekly$"))
    await expect(page.locator("#period-line")).to_be_visible()
    await assert_rows_match(page, await api.top("/boards/weekly/top?period=weekly"))


async def test_a_pinned_wall_screen_has_no_switcher(page: Page, api: Api) -> None:
    await _boards(api)
    await page.goto("/?board=other&period=all&pin=1")
    await expect(status(page)).to_have_attribute("data-state", "live")
    await expect(page.locator("#title")).to_have_text("Other")
    await expect(page.locator("#switcher")).to_be_hidden()


async def test_an_unknown_board_says_so(page: Page, console: Console) -> None:
    console.allow_network_errors()  # Chromium logs the 404
    await page.goto("/?board=nope&period=all")
    await expect(page.locator("#empty")).to_have_text("No such board or period.")
    await expect(status(page)).to_have_attribute("data-state", "not found")
