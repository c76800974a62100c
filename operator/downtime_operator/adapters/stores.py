"""The one choice of store: PostgreSQL when a DSN is given, else the embedded SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres.backend import PostgresBackend
from downtime_operator.adapters.sqlite.backend import SqliteBackend


class StoreOpenError(Exception):
    """The SQLite file cannot be opened or created (the message says why)."""


async def open_store_backend(
    *,
    dsn: str | None,
    db_path: Path,
    min_size: int = 0,
    max_size: int = 10,
    keys: LogKeyRing | None = None,
) -> PostgresBackend | SqliteBackend:
    """Connect or open; PostgreSQL connects lazily (``min_size`` 0), so a database that is down
    at start delays the writes instead of stopping the process."""
    if dsn is not None:
        return await PostgresBackend.connect(dsn, min_size=min_size, max_size=max_size, keys=keys)
    try:
        return await SqliteBackend.open(db_path, keys)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise StoreOpenError(f"cannot use {str(db_path)!r}: {exc}") from exc
