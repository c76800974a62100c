"""Every SQLite port over one file (one connection and its worker thread)."""

from __future__ import annotations

from pathlib import Path

from downtime_operator.adapters.sqlite.log_captures import SqliteLogCaptures
from downtime_operator.adapters.sqlite.outbox import SqliteOutbox
from downtime_operator.adapters.sqlite.queries import SqliteAuditLog, SqliteIncidentQueries
from downtime_operator.adapters.sqlite.store import SqliteIncidentStore


class SqliteBackend:
    shared_with_clusters = False

    def __init__(self, store: SqliteIncidentStore, *, path: Path | str) -> None:
        self._store = store
        database = store.database
        self.captures = SqliteLogCaptures(database)
        self.queries = SqliteIncidentQueries(database)
        self.audit = SqliteAuditLog(database)
        self.notifications = SqliteOutbox(database)
        self.description = f"SQLite {Path(path).resolve()}"

    @classmethod
    async def open(cls, path: Path | str) -> SqliteBackend:
        """Open (or create) the file; its schema is brought up to date on opening."""
        return cls(await SqliteIncidentStore.open(path), path=path)

    @property
    def incidents(self) -> SqliteIncidentStore:
        return self._store

    async def migrate(self) -> list[str]:
        return []

    async def close(self) -> None:
        await self._store.close()
