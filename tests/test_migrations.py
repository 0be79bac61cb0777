"""Migrations: versioned (a second run changes nothing) and all-or-nothing, on both dialects."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import psycopg2
import pytest

from app.store.migrations import SQL_DIR, migrate

DIALECTS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")]


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(dialect, url) of an empty database."""
    if request.param == "sqlite":
        return "sqlite", f"sqlite:///{tmp_path}/m.db"
    return "postgres", request.getfixturevalue("postgres_schema").url


def _tables(dialect: str, url: str) -> set[str]:
    if dialect == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    base, schema = url.split("?schema=")
    conn = psycopg2.connect(base)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_second_run_applies_nothing(database: tuple[str, str]) -> None:
    dialect, url = database
    assert migrate(url) == ["0001_scores", "0002_flags", "0003_changes", "0004_boards"]
    assert {"users", "score_events", "boards", "board_scores"} <= _tables(dialect, url)
    assert migrate(url) == []


def test_failed_migration_is_rolled_back_whole(database: tuple[str, str], tmp_path: Path) -> None:
    dialect, url = database
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / dialect / "0099_broken.sql").write_text(
        "CREATE TABLE half_done (id integer);\nINSERT INTO no_such_table VALUES (1);\n")
    with pytest.raises(Exception, match="no_such_table"):
        migrate(url, sql_dir)
    assert "half_done" not in _tables(dialect, url)
    assert "users" in _tables(dialect, url)  # the good migration before it stays applied
    (sql_dir / dialect / "0099_broken.sql").write_text("CREATE TABLE half_done (id integer);\n")
    assert migrate(url, sql_dir) == ["0099_broken"]
