"""Migrations: versioned (a second run changes nothing) and all-or-nothing, on both dialects."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

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
        return {row[0] for row in _query(dialect, url, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    schema = url.split("?schema=")[1]
    return {row[0] for row in _query(dialect, url, "SELECT table_name FROM information_schema.tables "
                                     f"WHERE table_schema = '{schema}'")}


def _query(dialect: str, url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one statement (committed), in the migrated schema."""
    if dialect == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("PRAGMA foreign_keys=ON")  # as the store opens it
            return conn.execute(sql).fetchall()
    base, schema = url.split("?schema=")
    conn = psycopg2.connect(base, options=f"-c search_path={schema}")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_second_run_applies_nothing(database: tuple[str, str]) -> None:
    dialect, url = database
    assert migrate(url) == ["0001_scores", "0002_flags", "0003_changes", "0004_boards",
                            "0005_board_scores_unchecked"]
    assert {"users", "score_events", "boards", "board_scores"} <= _tables(dialect, url)
    assert migrate(url) == []


def test_board_scores_keep_their_rows_and_rank_index_without_the_foreign_key(
        database: tuple[str, str], tmp_path: Path) -> None:
    dialect, url = database
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / dialect / "0005_board_scores_unchecked.sql").unlink()
    migrate(url, sql_dir)
    _query(dialect, url, "INSERT INTO users (user_id, score, seq) VALUES ('a', 5, 1)")
    _query(dialect, url, "INSERT INTO board_scores VALUES ('main', '2026-W49', 'a', 5, 1)")
    with pytest.raises(Exception, match="(?i)foreign key"):
        _query(dialect, url, "INSERT INTO board_scores VALUES ('main', '2026-W49', 'nobody', 1, 2)")
    assert migrate(url) == ["0005_board_scores_unchecked"]
    assert _query(dialect, url, "SELECT board_id, period_key, user_id, score, seq FROM board_scores") == [
        ("main", "2026-W49", "a", 5, 1)]
    indexes = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'board_scores'"
               if dialect == "sqlite" else "SELECT indexname FROM pg_indexes WHERE tablename = 'board_scores' "
               f"AND schemaname = '{url.split('?schema=')[1]}'")
    assert "board_scores_rank" in {row[0] for row in _query(dialect, url, indexes)}
    # What the migration is for: the row's user is no longer looked up (the write statement vouches).
    _query(dialect, url, "INSERT INTO board_scores VALUES ('main', '2026-W49', 'nobody', 1, 2)")


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
