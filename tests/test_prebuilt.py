"""A PrebuiltResponse sends what web.Response and the response-prepare step send, on raw sockets.

Two routes answer the same snapshot: one through aiohttp's own response path (the path a
service with CORS origins takes), one prebuilt. Their status lines, headers (but Date) and bodies
must match for every HTTP version and connection choice a client can make, and a prebuilt
answer must keep or close the connection exactly as aiohttp would.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.domain import Entry
from app.http.hardening import response_headers
from app.http.prebuilt import snapshot_answer
from app.snapshot import Snapshot

SNAPSHOT = Snapshot.of([Entry("alice", "Alice", 30, 1), Entry("bob", None, 20, 2)])
REQUEST_ID = "test-request-1"


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def prebuilt(request: web.Request) -> web.StreamResponse:
        return snapshot_answer(request, SNAPSHOT, cors=False)

    async def standard(request: web.Request) -> web.StreamResponse:
        return snapshot_answer(request, SNAPSHOT, cors=True)

    app = web.Application()
    app.on_response_prepare.append(response_headers(()))
    app.router.add_get("/prebuilt", prebuilt)
    app.router.add_get("/standard", standard)
    async with TestServer(app) as test_server:
        yield test_server


async def _exchange(server: TestServer, path: str, version: str, *headers: str, requests: int = 1
                    ) -> tuple[list[tuple[str, dict[str, str], bytes]], bool]:
    """Send `requests` requests on one connection; each response, and whether the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = "".join(f"{h}\r\n" for h in (f"X-Request-ID: {REQUEST_ID}", *headers))
    answers = []
    try:
        for _ in range(requests):
            writer.write(f"GET {path} HTTP/{version}\r\nHost: test\r\n{lines}\r\n".encode())
            status = (await reader.readline()).decode().rstrip("\r\n")
            fields: dict[str, str] = {}
            while (line := (await reader.readline()).decode().rstrip("\r\n")):
                name, _, value = line.partition(": ")
                assert name.lower() not in {n.lower() for n in fields}, f"{name} sent twice"
                fields[name] = value
            body = await reader.readexactly(int(fields.get("Content-Length", "0")))
            answers.append((status, fields, body))
        closed = await asyncio.wait_for(reader.read(1), 1.0) == b"" if requests == 1 else False
    except TimeoutError:
        closed = False
    finally:
        writer.close()
    return answers, closed


CASES = [
    pytest.param("1.1", (), id="http/1.1 keep-alive"),
    pytest.param("1.1", ("Connection: close",), id="http/1.1 close"),
    pytest.param("1.0", (), id="http/1.0"),
    pytest.param("1.0", ("Connection: keep-alive",), id="http/1.0 keep-alive"),
    pytest.param("1.1", (f"If-None-Match: {SNAPSHOT.etag}",), id="304"),
    pytest.param("1.1", ('If-None-Match: "other"',), id="if-none-match of another version"),
]


@pytest.mark.parametrize(("version", "headers"), CASES)
async def test_prebuilt_answer_is_aiohttps_answer(server: TestServer, version: str, headers: tuple[str, ...]) -> None:
    (prebuilt,), prebuilt_closed = await _exchange(server, "/prebuilt", version, *headers)
    (standard,), standard_closed = await _exchange(server, "/standard", version, *headers)
    for _, fields, _ in (prebuilt, standard):
        assert fields.pop("Date").endswith(" GMT")
    assert prebuilt == standard
    assert prebuilt[1]["X-Request-ID"] == REQUEST_ID
    assert prebuilt_closed == standard_closed


async def test_prebuilt_answers_keep_the_connection_open(server: TestServer) -> None:
    answers, _ = await _exchange(server, "/prebuilt", "1.1", requests=3)
    assert [status for status, _, _ in answers] == ["HTTP/1.1 200 OK"] * 3
    assert all(body == SNAPSHOT.encoded for _, _, body in answers)
    assert all("Connection" not in fields for _, fields, _ in answers)


async def test_a_closed_connection_is_closed_after_the_prebuilt_answer(server: TestServer) -> None:
    (answer,), closed = await _exchange(server, "/prebuilt", "1.1", "Connection: close")
    assert answer[0] == "HTTP/1.1 200 OK" and answer[1]["Connection"] == "close"
    assert closed
