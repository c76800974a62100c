"""Commands run as real processes over either store: the store they find, and the run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from downtime_operator.adapters.postgres import PostgresIncidentStore, apply_migrations
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from tests.conftest import DatabaseFactory

Store = PostgresIncidentStore | SqliteIncidentStore


async def open_command_store(
    databases: DatabaseFactory | None, tmp_path: Path, env: Mapping[str, str]
) -> tuple[Store, list[str], dict[str, str]]:
    """A fresh store to fill (the caller closes it), with the command's arguments and
    environment that select it: a new SQLite file when ``databases`` is None, else a new
    migrated PostgreSQL database (``DATABASE_URL``)."""
    if databases is None:
        path = tmp_path / "incidents.db"
        return await SqliteIncidentStore.open(path), ["--db-path", str(path)], dict(env)
    dsn = await databases()
    store = await PostgresIncidentStore.connect(dsn, min_size=1, max_size=1)
    await apply_migrations(store.pool)
    return store, [], {**env, "DATABASE_URL": dsn}


def run_command(*argv: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``downtime-operator *argv``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "downtime_operator", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
