"""The scoreboard page in a real Chromium against the real service: live, polling, restart, safety."""
from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import Dialog, Locator, Page, Request, Route, expect

if TYPE_CHECKING:
    from .conftest import Api, Console, Service

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
FALLBACK_TIMEOUT = 15_000   # stream errors / open timeout, then the first poll
POLL_TIMEOUT = 5_000        # one 2 s polling period plus slack
STREAM_RETRY_TIMEOUT = 25_000  # the page tries the stream again every 12 s


def status(page: Page) -> Locator:
    return page.locator("#status")


def row(page: Page, user_id: str) -> Locator:
    return page.locator(f'#rows tr[data-user-id="{user_id}"]')


async def open_live(page: Page) -> None:
    await page.goto("/")
    await expect(status(page)).to_have_attribute("data-state", "live")


async def assert_rows_match(page: Page, top: dict[str, Any]) -> None:
    """The table shows exactly the entries of a GET /top body, in order."""
    entries = top["entries"]
    rows = page.locator("#rows tr")
    await expect(rows).to_have_count(len(entries))
    await expect(rows.locator(".rank .num")).to_have_text([str(e["rank"]) for e in entries])
    await expect(rows.locator(".name")).to_have_text(
        [e["displayName"] or e["userId"] for e in entries]
    )
    scores = await rows.locator(".score").evaluate_all("cells => cells.map(c => c.dataset.score)")
    assert scores == [str(e["score"]) for e in entries]


async def test_page_renders_the_snapshot(page: Page, api: Api) -> None:
    await api.rename("u1", "alice")
    await api.increment("u1", times=3)
    await api.increment("u2", times=2)
    await api.rename("u3", "carol")
    await api.increment("u3")

    await open_live(page)

    await assert_rows_match(page, await api.top())
    await expect(row(page, "u1").locator(".name")).to_have_text("alice")
    await expect(row(page, "u2").locator(".name")).to_have_text("u2")  # no display name: the id
    await expect(row(page, "u1").locator(".score")).to_have_text("30")
    await expect(page.locator("#board thead th")).to_have_text(["Rank", "Player", "Score"])


async def test_an_increment_appears_within_a_second_without_reload(page: Page, api: Api) -> None:
    await api.rename("alice", "alice")
    await api.increment("alice", times=2)
    await open_live(page)
    await page.evaluate("window.__sameDocument = true")

    await api.increment("bob", times=3)  # bob overtakes alice

    await expect(row(page, "bob").locator(".score")).to_have_text("30", timeout=1_000)
    await expect(row(page, "bob")).to_have_attribute("data-rank", "1", timeout=1_000)
    assert await page.evaluate("window.__sameDocument === true"), "the page reloaded"
    # Depending on how the three increments were coalesced, bob entered at 1 or entered, then rose.
    await expect(row(page, "bob")).to_have_attribute("data-move", re.compile("^(new|up)$"))
    await expect(row(page, "alice")).to_have_attribute("data-move", "down")
    await expect(page.locator("#summary")).to_have_text(
        re.compile(r"bob (entered the top 10 at|moved to) rank 1\.")
    )
    await assert_rows_match(page, await api.top())


async def test_rank_changes_are_marked_and_announced(page: Page, api: Api) -> None:
    await api.increment("a", times=2)
    await api.rename("b", "bea")
    await api.increment("b")
    await open_live(page)

    await api.increment("b", times=2)

    await expect(row(page, "b")).to_have_attribute("data-rank", "1")
    await expect(row(page, "b")).to_have_attribute("data-move", "up")
    await expect(row(page, "b").locator(".mark")).to_have_text("\u25B2")
    await expect(row(page, "a").locator(".mark")).to_have_text("\u25BC")
    await expect(page.locator("#summary")).to_have_attribute("aria-live", "polite")
    await expect(page.locator("#summary")).to_have_text("bea moved to rank 1.")
    # Markers fade after a few seconds; the ranks stay.
    await expect(row(page, "b")).to_have_attribute("data-move", "", timeout=10_000)


async def test_reduced_motion_turns_the_animations_off(page: Page, api: Api) -> None:
    await page.emulate_media(reduced_motion="reduce")
    await api.increment("a", times=2)
    await api.increment("b")
    await open_live(page)

    await api.increment("b", times=2)

    await expect(row(page, "b")).to_have_attribute("data-move", "up")
    names = await page.evaluate(
        """() => [...document.querySelectorAll('#rows td, #rows th, .badge .dot')]
                 .map(n => getComputedStyle(n).animationName)"""
    )
    assert set(names) == {"none"}


async def test_refused_stream_falls_back_to_polling_and_back(
    page: Page, api: Api, console: Console
) -> None:
    console.allow_network_errors()

    async def refuse(route: Route) -> None:
        await route.abort()

    conditional: list[str | None] = []

    def watch(request: Request) -> None:
        if request.url.endswith("/top"):
            conditional.append(request.headers.get("if-none-match"))

    page.on("request", watch)
    await page.route("**/stream**", refuse)
    await api.increment("poller")
    await page.goto("/")

    await expect(status(page)).to_have_attribute("data-state", "polling", timeout=FALLBACK_TIMEOUT)
    await expect(status(page)).to_have_text("polling")
    first = (await api.top())["version"]
    await api.increment("poller")
    await expect(row(page, "poller").locator(".score")).to_have_text("20", timeout=POLL_TIMEOUT)
    assert f'"{first}"' in conditional, "polls send If-None-Match with the rendered version"
    async with page.expect_response(lambda r: r.url.endswith("/top"), timeout=POLL_TIMEOUT) as info:
        pass
    assert (await info.value).status == 304  # nothing changed since the last poll
    await expect(row(page, "poller").locator(".score")).to_have_text("20")

    await page.unroute("**/stream**")
    await expect(status(page)).to_have_attribute("data-state", "live", timeout=STREAM_RETRY_TIMEOUT)
    await api.increment("poller")
    await expect(row(page, "poller").locator(".score")).to_have_text("30", timeout=1_000)


async def test_page_recovers_by_itself_after_a_service_restart(
    page: Page, api: Api, service: Service, console: Console
) -> None:
    console.allow_network_errors()
    await api.rename("carol", "carol")
    await api.increment("carol")
    await open_live(page)
    await page.evaluate("window.__sameDocument = true")

    service.kill()
    await expect(status(page)).not_to_have_attribute("data-state", "live", timeout=10_000)
    await service.start()
    await api.increment("carol")
    await api.increment("dave", times=3)

    await expect(row(page, "dave").locator(".score")).to_have_text("30", timeout=STREAM_RETRY_TIMEOUT)
    await expect(row(page, "carol").locator(".score")).to_have_text("20")
    await expect(status(page)).to_have_attribute("data-state", "live", timeout=STREAM_RETRY_TIMEOUT)
    assert await page.evaluate("window.__sameDocument === true"), "the page reloaded"
    await api.increment("carol")
    await expect(row(page, "carol").locator(".score")).to_have_text("30", timeout=1_000)


async def test_display_names_render_as_text(page: Page, api: Api) -> None:
    dialogs: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    await api.rename("mallory", HOSTILE_NAME)
    await api.increment("mallory")
    await open_live(page)  # the name arrives in GET /top ...

    await expect(row(page, "mallory").locator(".name")).to_have_text(HOSTILE_NAME)
    await api.rename("trudy", '"><script>alert(2)</script>')
    await api.increment("trudy", times=2)  # ... and in a stream update
    await expect(row(page, "trudy").locator(".name")).to_have_text('"><script>alert(2)</script>')

    assert await page.locator("#board img, #board script").count() == 0
    await page.wait_for_timeout(300)
    assert dialogs == []


@pytest.mark.parametrize(
    ("width", "height", "min_px"),
    [pytest.param(360, 740, 16, id="phone"), pytest.param(1920, 1080, 28, id="wall")],
)
async def test_layout_fits_phones_and_wall_screens(
    page: Page, api: Api, width: int, height: int, min_px: int
) -> None:
    await page.set_viewport_size({"width": width, "height": height})
    await api.rename("long", "A display name of 32 characters!")
    await api.increment("long")
    await open_live(page)

    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways"
    size = await row(page, "long").locator(".score").evaluate(
        "cell => parseFloat(getComputedStyle(cell).fontSize)"
    )
    assert size >= min_px


async def test_page_is_served_with_a_strict_content_security_policy(page: Page) -> None:
    response = await page.goto("/")
    assert response is not None and response.ok
    policy = await response.header_value("content-security-policy") or ""
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    await expect(status(page)).to_have_attribute("data-state", "live")  # and the page works under it


async def test_screenshot_for_the_readme(page: Page, api: Api, tmp_path: Path) -> None:
    """Renders the README's picture; `make screenshot` keeps it (SCREENSHOT_PATH), a test run does not."""
    players = [
        ("u-ada", "Ada", 16), ("u-linus", "Linus", 15), ("u-grace", "Grace Hopper", 13),
        ("u-ken", "Ken", 12), ("u-barbara", "Barbara Liskov", 10), ("u-guido", "Guido", 9),
        ("u-margaret", "Margaret Hamilton", 7), ("u-dennis", "Dennis", 6),
        ("u-radia", "Radia Perlman", 4), ("u-edsger", "Edsger", 2),
    ]
    for user_id, name, times in players:
        await api.rename(user_id, name)
        await api.increment(user_id, times=times)
    await page.emulate_media(reduced_motion="reduce")  # no half-finished highlight in the picture
    await open_live(page)

    await api.increment("u-grace", times=3)  # Grace moves up to rank 2
    await expect(row(page, "u-grace")).to_have_attribute("data-rank", "2")

    screenshot = Path(os.environ.get("SCREENSHOT_PATH") or tmp_path / "screenshot.png")
    picture = await page.screenshot(path=str(screenshot))
    assert len(picture) > 10_000


class _InlineCode(HTMLParser):
    """Finds what a `default-src 'self'` policy would block: inline scripts, styles, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        self.found += [f"{name}= on <{tag}>" for name in names if name == "style" or name.startswith("on")]
        for name, value in attrs:
            if name in {"href", "src"} and value and not value.startswith("/"):
                self.found.append(f"non-local {name}={value}")


def test_markup_needs_no_unsafe_inline() -> None:
    parser = _InlineCode()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.found == []


def test_script_writes_user_text_only_as_text() -> None:
    source = (STATIC / "app.js").read_text()
    sinks = re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", source)
    assert sinks == []
