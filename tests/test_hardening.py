"""Hardening: security headers everywhere, CORS closed unless listed, header limits, stream caps, no token leaks."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import jwt
import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.http.hardening import SECURITY_HEADERS
from tests.conftest import SECRET, auth, eventually, token

Client = TestClient[Any, Any]
APP = "https://app.example"
CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'"


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    return Settings(jwt_secret=SECRET, database_url=f"sqlite:///{tmp_path}/h.db", push_interval=0.05)


@pytest.fixture
async def client(make_client: Any, embedded: Settings) -> Client:
    """These rules live in the HTTP layer: one backend pair shows them."""
    made: Client = await make_client(embedded)
    return made


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"), ("GET", "/static/app.css"), ("GET", "/top"), ("GET", "/nope"), ("PATCH", "/top"),
    ("POST", "/scores/increment"), ("GET", "/healthz"),
])
async def test_every_response_has_the_security_headers(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    assert response.headers["Content-Security-Policy"] == CSP


async def test_the_stream_has_the_security_headers(client: Client) -> None:
    async with client.get("/stream") as response:
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_page_has_no_inline_script_or_style(client: Client) -> None:
    # The CSP has no 'unsafe-inline': the page must load everything from files.
    html = await (await client.get("/")).text()
    assert "<script>" not in html and "<style" not in html and " style=" not in html and "onclick" not in html


async def _preflight(client: Client, path: str, origin: str, method: str = "POST") -> Any:
    return await client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    })


async def test_cors_is_closed_by_default(make_client: Any, embedded: Settings) -> None:
    client = await make_client(embedded)
    preflight = await _preflight(client, "/scores/increment", APP)
    assert preflight.status == 405
    assert "Access-Control-Allow-Origin" not in preflight.headers
    read = await client.get("/top", headers={"Origin": APP})
    assert "Access-Control-Allow-Origin" not in read.headers and "Vary" not in read.headers


async def test_cors_preflight_for_a_listed_origin(make_client: Any, embedded: Settings) -> None:
    client = await make_client(replace(embedded, cors_origins=(APP,)))
    response = await _preflight(client, "/scores/increment", APP)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in response.headers["Access-Control-Allow-Methods"].split(", ")  # GET: /scores/{userId}
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert "Origin" in response.headers.getall("Vary")
    users = await _preflight(client, "/users/u1", APP, "DELETE")
    assert (users.status, users.headers["Access-Control-Allow-Methods"]) == (204, "DELETE, PUT")
    assert (await _preflight(client, "/scores/increment", APP, "PATCH")).status == 405
    assert (await _preflight(client, "/nowhere", APP)).status == 404


async def test_cors_reflects_only_listed_origins(make_client: Any, embedded: Settings) -> None:
    client = await make_client(replace(embedded, cors_origins=(APP, "http://localhost:3000")))
    other = await _preflight(client, "/scores/increment", "https://evil.example")
    assert other.status == 405 and "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers.getall("Vary")
    write = await client.post("/scores/increment", json={"userId": "u1", "actionId": "a1"},
                              headers={**auth(), "Origin": APP})
    assert (write.status, write.headers["Access-Control-Allow-Origin"]) == (200, APP)
    assert "RateLimit-Remaining" in write.headers["Access-Control-Expose-Headers"]
    for origin in ("https://evil.example", "null", APP + ".evil.example", "https://app.example:444"):
        read = await client.get("/top", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in read.headers, origin


@pytest.mark.parametrize(("headers", "path"), [
    pytest.param({"X-Big": "x" * 9000}, "/top", id="field-too-long"),
    pytest.param({f"X-H{i}": "1" for i in range(70)}, "/top", id="too-many-headers"),
    pytest.param({}, "/scores/" + "u" * 5000, id="request-line-too-long"),
])
async def test_oversized_headers_are_refused(client: Client, headers: dict[str, str], path: str) -> None:
    response = await client.get(path, headers=headers)
    assert response.status in (400, 414, 431)
    assert (await client.get("/healthz")).status == 200


async def test_a_long_token_still_fits(client: Client) -> None:
    padded = token(padding="p" * 5000)
    response = await client.post("/scores/increment", json={"userId": "u1", "actionId": "a1"},
                                 headers={"Authorization": f"Bearer {padded}"})
    assert response.status == 200


def _bad_tokens(good: str) -> list[str]:
    expired = {"sub": "game-1", "scope": "scores:write", "aud": "scoreboard", "exp": int(time.time()) - 600}
    return [
        good[:-6] + "AAAAAA",
        jwt.encode(expired, SECRET, algorithm="HS256"),
        jwt.encode({**expired, "exp": int(time.time()) + 600, "aud": "x"}, SECRET, algorithm="HS256"),
        good.replace(".", "!", 1),
        good.split(".")[1] + "." + good,
    ]


async def test_tokens_are_never_logged_or_echoed(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = token()
    sent = [good, *_bad_tokens(good)]
    for credential in sent:
        response = await client.post("/scores/increment", json={"userId": "u1", "actionId": uuid4().hex},
                                     headers={"Authorization": f"Bearer {credential}"})
        body = await response.text()
        for part in {piece for credential in sent for piece in credential.split(".") if len(piece) > 8}:
            assert part not in body

    async def logged() -> None:  # the access log line is written after the response
        assert "POST /scores/increment" in caplog.text  # the access log is captured, so its silence counts

    await eventually(logged)
    for credential in sent:
        assert credential.split(".")[-1] not in caplog.text


async def test_a_client_address_past_its_stream_cap_gets_429(make_client: Any, settings: Settings) -> None:
    client = await make_client(replace(settings, stream_max_per_client=2))
    first, second = await client.get("/stream"), await client.get("/stream")
    try:
        refused = await client.get("/stream")
        assert refused.status == 429
        assert (await refused.json())["error"]["code"] == "RATE_LIMITED"
        assert refused.headers["Retry-After"]
    finally:
        first.close()
        second.close()
