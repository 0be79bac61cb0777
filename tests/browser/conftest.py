"""Fixtures for the browser tests: the real service in a subprocess and Debian's Chromium.

The service runs as `python -m app` on a free port with its own SQLite file, so a test can
kill it and start it again on the same port and database. Chromium is driven through
Playwright's async API; `playwright install` is never needed because the system browser is used.
Without /usr/bin/chromium the tests skip locally and fail under CI=true.
"""
from __future__ import annotations

import os
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

from tests.servers import Server
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 20.0
PUSH_INTERVAL = "0.05"


class Service:
    """The real scoreboard service as a child process (tests/servers.py) that can be killed and started again."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(32)
        # cwd: a stray default file never lands in the repository
        self.server = Server(self.environ(), workdir / "server.log", [sys.executable, "-m", "app"], port, workdir)
        self.url = self.server.url

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "JWT_PUBLIC_KEY"}}
        # Appended, not prepended: the project root only has to be importable.
        path = [p for p in (env.get("PYTHONPATH"), str(ROOT)) if p]
        env.update(
            PYTHONPATH=os.pathsep.join(path),
            DATABASE_URL=f"sqlite:///{self.workdir / 'sb.db'}",
            JWT_SECRET=self.secret,
            PUSH_INTERVAL=PUSH_INTERVAL,
            PYTHONUNBUFFERED="1",
        )
        return env

    async def start(self) -> None:
        """Start `python -m app` and wait until GET /healthz answers 200."""
        await self.server.start_async(START_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        self.server.kill()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        await self.server.stop_async()

    def logs(self) -> str:
        return self.server.output()


class Api:
    """The service's write API, called with tokens minted from the service's JWT secret."""

    def __init__(self, session: aiohttp.ClientSession, service: Service) -> None:
        self.session = session
        self.service = service

    def token(self, scope: str = "scores:write users:write") -> str:
        claims = {"sub": "test", "scope": scope, "aud": "scoreboard", "exp": int(time.time()) + 600}
        return jwt.encode(claims, self.service.secret, algorithm="HS256")

    async def _call(self, method: str, path: str, body: dict[str, Any],
                    scope: str = "scores:write users:write") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token(scope)}"}
        url = self.service.url + path
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise AssertionError(f"{method} {path} -> {resp.status}: {text}\n{self.service.logs()}")
            result: dict[str, Any] = await resp.json()
            return result

    async def increment(self, user_id: str, times: int = 1) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for _ in range(times):
            body = {"userId": user_id, "actionId": str(uuid.uuid4()), "action": "complete"}
            result = await self._call("POST", "/scores/increment", body)
        return result

    async def rename(self, user_id: str, display_name: str) -> dict[str, Any]:
        return await self._call("PUT", f"/users/{user_id}", {"displayName": display_name})

    async def put_board(self, board_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PUT", f"/boards/{board_id}", body, scope="boards:write")

    async def top(self, path: str = "/top") -> dict[str, Any]:
        async with self.session.get(self.service.url + path) as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result


class Console:
    """Console errors and uncaught exceptions of one page; network failures only when allowed."""

    NETWORK_PREFIXES = ("Failed to load resource", "net::ERR_")

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.network_errors_allowed = False

    def allow_network_errors(self) -> None:
        """For tests that break the network on purpose (refused stream, killed service)."""
        self.network_errors_allowed = True

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.messages.append(f"console: {message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: Error) -> None:
        self.messages.append(f"pageerror: {error}")

    def errors(self) -> list[str]:
        def network(text: str) -> bool:
            body = text.removeprefix("console: ")
            return body.startswith(self.NETWORK_PREFIXES) or " net::ERR_" in body

        if not self.network_errors_allowed:
            return list(self.messages)
        return [m for m in self.messages if not network(m)]


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI needs it", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service(tmp_path, free_port())
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def api(service: Service) -> AsyncIterator[Api]:
    # force_close: a kept-alive connection would outlive a service restart.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(session, service)


@pytest.fixture
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
async def page(browser: Browser, service: Service, console: Console) -> AsyncIterator[Page]:
    """A fresh 1280x800 page on the service; fails the test on any console error."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, base_url=service.url)
    tab = await context.new_page()
    tab.on("console", console.on_console)
    tab.on("pageerror", console.on_page_error)
    try:
        yield tab
    finally:
        await context.close()
    assert console.errors() == [], "console errors on the page"
