"""Operations: metrics move with traffic, /readyz follows PostgreSQL, request ids and JSON logs, SIGTERM."""
from __future__ import annotations

import json
import logging
import re
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.config import Settings
from app.ops.logs import JsonFormatter, RequestIdFilter
from tests.conftest import SECRET, PostgresSchema, auth, clear_of_window_end, eventually
from tests.servers import environment, running, serve_command
from tests.tcp_proxy import TcpProxy


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


async def _metrics(client: Any) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return str(await response.text())


async def test_metrics_move_with_traffic(client: Any) -> None:
    body = {"userId": "u1", "actionId": "a1"}
    for _ in range(2):  # applied, then duplicate
        await client.post("/scores/increment", json=body, headers=auth())
    await client.post("/scores/increment", json={"userId": "u1"}, headers=auth())
    await client.get("/scores/nobody")
    text = await _metrics(client)
    increments = "scoreboard_increments_total"
    assert _sample(text, increments, '{code="",outcome="applied"}') == 1
    assert _sample(text, increments, '{code="",outcome="duplicate"}') == 1
    assert _sample(text, increments, '{code="VALIDATION_FAILED",outcome="rejected"}') == 1
    count = "scoreboard_request_duration_seconds_count"
    assert _sample(text, count, '{method="GET",route="/scores/{userId}"}') == 1  # the route, not the URL
    assert _sample(text, 'scoreboard_read_model{counter="runs"}') >= 1
    assert "scoreboard_open_streams 0.0" in text

    async def pushed() -> None:  # through the bus: Redis delivers it a moment later
        assert _sample(await _metrics(client), 'scoreboard_hub{counter="pushes"}') >= 1

    await eventually(pushed)


async def test_open_streams_and_rate_limit_hits_are_counted(make_client: Any, settings: Settings) -> None:
    from dataclasses import replace

    client = await make_client(replace(settings, rate_limit_user="1/minute"))
    await clear_of_window_end(60, 10)
    for action_id in ("a1", "a2"):
        await client.post("/scores/increment", json={"userId": "u1", "actionId": action_id}, headers=auth())
    async with client.get("/stream") as stream:
        await stream.content.readuntil(b"\n\n")
        text = await _metrics(client)
    assert "scoreboard_open_streams 1.0" in text
    assert _sample(text, "scoreboard_rate_limit_hits_total", '{route="/scores/increment"}') == 1
    assert _sample(text, "scoreboard_increments_total", '{code="RATE_LIMITED",outcome="rejected"}') == 1


async def test_request_id_is_echoed_or_generated(client: Any) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    for bad in ("x" * 65, "a b"):
        generated = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])


async def test_one_json_access_line_per_request_without_the_token(client: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    headers = {**auth(sub="backend-7"), "X-Request-ID": "req-1"}
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        await client.post("/scores/increment", json={"userId": "u1", "actionId": "a1"}, headers=headers)
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    access = [line for line in lines if line["logger"] == "app.access"]
    assert len(access) == 1
    assert access[0]["requestId"] == "req-1"
    assert access[0]["request"] == {"method": "POST", "route": "/scores/increment", "status": 200,
                                    "latencyMs": access[0]["request"]["latencyMs"], "sub": "backend-7"}
    audit = [line for line in lines if "audit" in line]
    assert audit[0]["audit"]["caller"] == "backend-7" and audit[0]["requestId"] == "req-1"
    assert headers["Authorization"].split()[1] not in caplog.text


async def test_readyz_reports_redis_and_healthz_the_pid(client: Any, settings: Settings) -> None:
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert ready["redis"] == ("ok" if settings.redis_url else "not configured")
    assert ready["streams"] == {"open": 0, "max": settings.stream_max, "openFilesLimit": settings.open_files}
    assert isinstance((await (await client.get("/healthz")).json())["pid"], int)


async def test_readyz_stays_ready_when_only_redis_is_down(make_client: Any, tmp_path: Path) -> None:
    settings = Settings(jwt_secret=SECRET, database_url=f"sqlite:///{tmp_path}/db.sqlite",
                        redis_url="redis://127.0.0.1:1/0")
    client = await make_client(settings)
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["redis"] == "unavailable"



async def test_readyz_turns_503_without_postgres_and_back(make_client: Any, postgres_schema: PostgresSchema,
                                                          proxy: TcpProxy) -> None:
    url = urlsplit(postgres_schema.url)
    via_proxy = url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}").geturl()
    client = await make_client(Settings(jwt_secret=SECRET, database_url=via_proxy, db_timeout=2.0))
    assert (await client.get("/readyz")).status == 200
    await proxy.stop()
    down = await client.get("/readyz")
    assert down.status == 503
    assert "database" in (await down.json())["failed"]
    await proxy.start()

    async def ready() -> None:  # a pooled connection broken by the outage may fail once more
        assert (await client.get("/readyz")).status == 200

    await eventually(ready, within=5.0)


def test_sigterm_ends_streams_and_exits_within_the_timeout(tmp_path: Path) -> None:
    env = environment(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite", SHUTDOWN_TIMEOUT="5")
    with running(serve_command(), env, tmp_path / "server.log") as server:
        stream = urllib.request.urlopen(server.url + "/stream", timeout=10)
        stream.readline()  # the stream is open
        seconds = server.terminate()
        rest = stream.read()  # returns only if the server ended the chunked body (else timeout or IncompleteRead)
        assert stream.isclosed() and rest.endswith(b"\n\n")  # whole frames, then a clean end
    print(f"SIGTERM to exit: {seconds:.2f} s")
    assert server.process.returncode == 0
    assert seconds < 5


def test_a_real_process_writes_one_json_access_line_per_request_from_its_log_thread(tmp_path: Path) -> None:
    from tests.servers import environment, running, serve_command

    log = tmp_path / "app.log"
    env = environment(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite", LOG_FORMAT="json")
    with running(serve_command(), env, log) as server:
        request = urllib.request.Request(server.url + "/top?limit=3", headers={"X-Request-ID": "from-the-test"})
        urllib.request.urlopen(request, timeout=5).close()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "app.access" and line["requestId"] == "from-the-test"]
    assert len(access) == 1  # written by the time the process exits
    assert access[0]["request"]["route"] == "/top" and access[0]["request"]["status"] == 200
    assert access[0]["message"] == "GET /top 200"
