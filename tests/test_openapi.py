"""GET /openapi.json: a valid OpenAPI 3 document of every route, and schemathesis finds no 500 against it."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import token
from tests.servers import BIN, environment, running, serve_command

# Not content_type_conformance: aiohttp's parser answers a request line over HEADER_LIMITS with a
# text/plain 400 before any middleware runs, so that refusal cannot carry the JSON error body.
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
METHODS = {"get", "put", "post", "delete", "patch"}


def _documented(route: web.AbstractRoute) -> str:
    resource = route.resource
    assert resource is not None
    return resource.canonical + ("/{path}" if isinstance(resource, web.StaticResource) else "")


async def test_every_route_is_documented(client: Any) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for route in client.app.router.routes():
        if route.method != "HEAD":
            assert route.method.lower() in document["paths"][_documented(route)], _documented(route)


async def test_every_operation_documents_its_errors(client: Any) -> None:
    document = await (await client.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        assert set(operations) <= METHODS
        for operation in operations.values():
            assert operation["responses"]["500"] == {"$ref": "#/components/responses/500"}, path
            if "security" in operation:
                assert {"401", "403"} <= set(operation["responses"]), path
    errors = document["components"]["responses"]
    assert errors["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "text/event-stream" in document["paths"]["/stream"]["get"]["responses"]["200"]["content"]


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    """The whole API fuzzed from its own document, which schemathesis also validates as OpenAPI 3
    (the stream excluded: it never ends)."""
    if not (BIN / "schemathesis").exists():
        pytest.skip("schemathesis is not installed")
    env = environment(DATABASE_URL=f"sqlite:///{tmp_path}/fuzz.db", LOG_FORMAT="text")
    bearer = token("scores:write users:write users:delete audit:read", sub="fuzz")
    with running(serve_command(), env, tmp_path / "server.log") as server:
        run = subprocess.run([
            str(BIN / "schemathesis"), "run", f"{server.url}/openapi.json", "--checks", CHECKS,
            "--exclude-path", "/stream", "--max-examples", "10", "--max-time", "40", "--no-color",
            "-H", f"Authorization: Bearer {bearer}", "--seed", "1",
        ], capture_output=True, text=True, timeout=90)
    cases = re.search(r"(\d+) generated", run.stdout)
    print(f"schemathesis: {cases[1] if cases else '?'} cases")
    failures = run.stdout.partition("FAILURES")[2].partition("WARNINGS")[0]
    assert run.returncode == 0, failures[:4000] or run.stdout[-4000:]
