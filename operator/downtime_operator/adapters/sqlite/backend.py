"""Every SQLite port over one file (one connection and its worker thread)."""

from __future__ import annotations

from pathlib import Path

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.key_rotation import KeyRotation, SqliteSealedRows
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.sqlite.kube_context import SqliteKubeContexts
from downtime_operator.adapters.sqlite.log_captures import SqliteLogCaptures
from downtime_operator.adapters.sqlite.maintenance import SqliteMaintenanceLedger
from downtime_operator.adapters.sqlite.metric_captures import SqliteMetricCaptures
from downtime_operator.adapters.sqlite.outbox import SqliteOutbox
from downtime_operator.adapters.sqlite.queries import SqliteAuditLog, SqliteIncidentQueries
from downtime_operator.adapters.sqlite.store import SqliteIncidentStore


class SqliteBackend:
    shared_with_clusters = False

    def __init__(self, store: SqliteIncidentStore, *, path: Path | str) -> None:
        self._store = store
        database = store.database
        self.keys = store.keys
        self.captures = SqliteLogCaptures(database, self.keys)
        self.queries = SqliteIncidentQueries(database, self.keys)
        self.audit = SqliteAuditLog(database)
        self.notifications = SqliteOutbox(database)
        self.metric_captures = SqliteMetricCaptures(database)
        self.kube_contexts = SqliteKubeContexts(database)
        self.maintenance = SqliteMaintenanceLedger(database)
        self.description = f"SQLite {Path(path).resolve()}"

    @classmethod
    async def open(cls, path: Path | str, keys: LogKeyRing | None = None) -> SqliteBackend:
        """Open (or create) the file; its schema is brought up to date on opening. ``keys``
        seal and open what was captured from outside (none: stored plain)."""
        return cls(await SqliteIncidentStore.open(path, keys), path=path)

    @property
    def incidents(self) -> SqliteIncidentStore:
        return self._store

    def capture_files(self, directory: Path) -> LocalLogFiles:
        return LocalLogFiles(directory=directory, keys=self.keys)

    def key_rotation(self, directory: Path) -> KeyRotation:
        """``rotate-keys`` over this store's rows and the captured-log files of ``directory``."""
        return KeyRotation(
            SqliteSealedRows(self._store.database), self.capture_files(directory), self.keys
        )

    async def migrate(self) -> list[str]:
        return []

    async def close(self) -> None:
        await self._store.close()
