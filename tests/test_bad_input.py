"""Every wrong header and body a caller can send gets its contract error and writes nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from tests.conftest import auth, embedded_settings

Client = TestClient[Any, Any]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Requests are refused before any storage is touched: one backend pairing is enough."""
    return embedded_settings(tmp_path)
VALID = {"userId": "u1", "actionId": "a1"}

BAD_BODIES = [
    pytest.param(b'{"userId": "u1",', "body", id="malformed-json"),
    pytest.param(b'["u1", "a1"]', "body", id="array"),
    pytest.param(b'"u1"', "body", id="string"),
    pytest.param(b"null", "body", id="null"),
    pytest.param(b"\xff\xfe", "body", id="not-utf8"),
    pytest.param(b'{"userId": 42, "actionId": "a1"}', "userId", id="int-user"),
    pytest.param(b'{"userId": "u1", "actionId": 1.5}', "actionId", id="float-action-id"),
    pytest.param(b'{"userId": "u1", "actionId": 99999999999999999999999999}', "actionId", id="huge-number"),
    pytest.param(b'{"userId": "u1", "actionId": "a1", "delta": 1000}', "delta", id="delta"),
    pytest.param(b'{"userId": "u1", "actionId": "a1", "score": 1}', "score", id="score"),
    pytest.param(b'{"userId": "u1", "actionId": "a1", "points": 1}', "points", id="points"),
    pytest.param(b'{"userId": "u1", "actionId": "a1", "action": "cheat"}', "action", id="unknown-action"),
    pytest.param(b'{"userId": "u1", "actionId": "a1", "action": 3}', "action", id="int-action"),
    pytest.param(b'{"userId": "", "actionId": "a1"}', "userId", id="empty-user"),
    pytest.param(b'{"userId": "a b", "actionId": "a1"}', "userId", id="space-in-user"),
    pytest.param(b'{"userId": "' + b"u" * 65 + b'", "actionId": "a1"}', "userId", id="long-user"),
    pytest.param(b'{"userId": "u1", "actionId": "' + b"a" * 129 + b'"}', "actionId", id="long-action-id"),
    pytest.param(b'{"userId": "u1", "actionId": "caf\\u00e9"}', "actionId", id="non-ascii-action-id"),
    pytest.param(b'{"userId": "u1", "actionId": "a\\nb"}', "actionId", id="newline-action-id"),
    pytest.param(b'{"userId": "u1"}', "actionId", id="missing-action-id"),
    pytest.param(b"{}", "userId", id="empty-object"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_BODIES)
async def test_bad_increment_body_is_400_naming_the_field(client: Client, raw: bytes, field: str) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    response = await client.post("/scores/increment", data=raw, headers=headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert field in error["details"]["fields"]
    assert (await client.get("/scores/u1")).status == 404


async def test_body_over_4_kib_is_413(client: Client) -> None:
    padding = "x" * (4096 - len('{"userId": "u1", "actionId": ""}') + 1)
    raw = f'{{"userId": "u1", "actionId": "{padding}"}}'.encode()
    assert len(raw) == 4097
    response = await client.post("/scores/increment", data=raw, headers={**auth(), "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_415(client: Client, content_type: str | None) -> None:
    headers = auth() | ({"Content-Type": content_type} if content_type else {})
    response = await client.post("/scores/increment", data=b'{"userId": "u1", "actionId": "a1"}', headers=headers)
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_json_with_charset_is_accepted(client: Client) -> None:
    headers = {**auth(), "Content-Type": "application/json; charset=utf-8"}
    response = await client.post("/scores/increment", data=b'{"userId": "u1", "actionId": "a1"}', headers=headers)
    assert response.status == 200


@pytest.mark.parametrize("user_id", ["a%20b", "x" * 65, "%C3%A9"])
async def test_bad_user_id_in_path_is_400(client: Client, user_id: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        path = f"/scores/{user_id}" if method == "GET" else f"/users/{user_id}"
        response = await client.request(method, path, json={"displayName": "x"}, headers=auth())
        assert response.status == 400, method
        assert "userId" in (await response.json())["error"]["details"]["fields"]


async def test_unknown_route_and_method_use_the_error_body(client: Client) -> None:
    for path in ("/nope", "/no%0Ape", "/static/nope", "/static/../README.md"):
        missing = await client.get(path)
        assert (missing.status, (await missing.json())["error"]["code"]) == (404, "NOT_FOUND"), path
    wrong = await client.patch("/top")
    assert (wrong.status, (await wrong.json())["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")
    assert "GET" in wrong.headers["Allow"]


async def test_an_unexpected_failure_is_500_without_internals(settings: Any, aiohttp_client: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web

    from app.http import routes
    from app.web import create_app

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail at /srv/app.py line 42")

    # a bug stand-in: the URL table is ours to extend in a test
    monkeypatch.setattr(routes, "ROUTES", [*routes.ROUTES, ("GET", "/broken", broken)])
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/broken")
    assert response.status == 500
    text = await response.text()
    assert "secret" not in text and "Traceback" not in text
    assert await response.json() == {"error": {"code": "INTERNAL_ERROR", "message": "internal error", "details": {}}}


def test_every_route_is_guarded(settings: Any) -> None:
    """A route added beside the URL table (not through ROUTES) would answer failures as aiohttp's
    plain text, and would not be reached at all behind the catch-all route."""
    from app.web import create_app

    app = create_app(settings)
    assert all(getattr(route.handler, "guarded", False) for route in app.router.routes())
    assert list(app.router.resources())[-1].canonical == "/{path}"  # the catch-all comes last
