"""Applies the numbered SQL migrations in sql/<dialect>/ with yoyo: versioned, each one whole or not at all."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yoyo

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def migrate(database_url: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply what is missing and return the ids applied; a second run applies nothing."""
    dialect = "sqlite" if urlsplit(database_url).scheme == "sqlite" else "postgres"
    backend = yoyo.get_backend(database_url.replace("postgres://", "postgresql://", 1))
    try:
        migrations = yoyo.read_migrations(str(sql_dir / dialect))
        with backend.lock():
            missing = backend.to_apply(migrations)
            backend.apply_migrations(missing)
        return [migration.id for migration in missing]
    finally:
        backend.connection.close()
