"""PostgreSQL going away mid-run: 503, nothing half-written, and recovery without a restart."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from app.config import Settings
from tests.conftest import SECRET, PostgresSchema, auth, eventually
from tests.tcp_proxy import TcpProxy


async def test_database_outage_is_503_then_recovers(make_client: Any, postgres_schema: PostgresSchema,
                                                   proxy: TcpProxy) -> None:
    url = urlsplit(postgres_schema.url)
    via_proxy = url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}").geturl()
    settings = Settings(jwt_secret=SECRET, database_url=via_proxy, db_timeout=2.0)
    client = await make_client(settings)

    async def increment(action_id: str) -> Any:
        body = {"userId": "u1", "actionId": action_id}
        return await client.post("/scores/increment", json=body, headers=auth())

    assert (await increment("before")).status == 200
    await proxy.stop()
    failed = await increment("during")
    assert failed.status == 503
    assert (await failed.json())["error"]["code"] == "SERVICE_UNAVAILABLE"

    await proxy.start()
    responses: list[Any] = []

    async def applied() -> None:  # a pooled connection broken by the outage may fail once more
        responses.append(await increment("during"))
        assert responses[-1].status == 200

    await eventually(applied, within=5.0)
    assert (await responses[-1].json())["newScore"] == 20  # "during" was not half-applied before
    assert _count(postgres_schema, "score_events") == 2


def _count(schema: PostgresSchema, table: str) -> int:
    import psycopg2

    conn = psycopg2.connect(schema.base_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {schema.name}.{table}")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


async def test_boards_during_a_database_outage_are_503_and_lose_nothing(
        make_client: Any, postgres_schema: PostgresSchema, proxy: TcpProxy) -> None:
    url = urlsplit(postgres_schema.url)
    via_proxy = url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}").geturl()
    client = await make_client(Settings(jwt_secret=SECRET, database_url=via_proxy, db_timeout=2.0))
    board = {"title": "B", "periods": ["all", "daily"]}
    assert (await client.put("/boards/b", json=board, headers=auth("boards:write"))).status == 200
    await proxy.stop()
    body = {"userId": "u1", "actionId": "during"}
    assert (await client.post("/scores/increment", json=body, headers=auth())).status == 503
    stream = await client.get("/boards/b/stream?period=daily")  # refused before the headers
    assert (stream.status, (await stream.json())["error"]["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert (await client.put("/boards/c", json=board, headers=auth("boards:write"))).status == 503
    await proxy.start()

    async def applied() -> None:
        response = await client.post("/scores/increment", json=body, headers=auth())
        assert response.status == 200

    await eventually(applied, within=5.0)
    for period in ("all", "daily"):
        top = await (await client.get(f"/boards/b/top?period={period}")).json()
        assert [(e["userId"], e["score"]) for e in top["entries"]] == [("u1", 10)]
    assert _count(postgres_schema, "board_scores") == 2
