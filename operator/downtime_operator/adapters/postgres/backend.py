"""Every PostgreSQL port over one connection pool."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.key_rotation import KeyRotation, PostgresSealedRows
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.postgres.audit import PostgresAuditLog
from downtime_operator.adapters.postgres.kube_context import PostgresKubeContexts
from downtime_operator.adapters.postgres.log_captures import PostgresLogCaptures
from downtime_operator.adapters.postgres.maintenance import PostgresMaintenanceLedger
from downtime_operator.adapters.postgres.metric_captures import PostgresMetricCaptures
from downtime_operator.adapters.postgres.migrations import apply_migrations
from downtime_operator.adapters.postgres.outbox import PostgresOutbox
from downtime_operator.adapters.postgres.queries import PostgresIncidentQueries, connect_pool
from downtime_operator.adapters.postgres.store import PostgresIncidentStore


class PostgresBackend:
    shared_with_clusters = True

    def __init__(self, store: PostgresIncidentStore, *, dsn: str) -> None:
        self._store = store
        pool = store.pool
        self.keys = store.keys
        self.captures = PostgresLogCaptures(pool, self.keys)
        self.queries = PostgresIncidentQueries(pool, self.keys)
        self.audit = PostgresAuditLog(pool)
        self.notifications = PostgresOutbox(pool)
        self.metric_captures = PostgresMetricCaptures(pool)
        self.kube_contexts = PostgresKubeContexts(pool)
        self.maintenance = PostgresMaintenanceLedger(pool)
        parts = urlsplit(dsn)
        self.description = f"PostgreSQL {parts.hostname}:{parts.port or 5432}{parts.path}"

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 0, max_size: int = 10, keys: LogKeyRing | None = None
    ) -> PostgresBackend:
        """``min_size=0``: no connection yet, so a database that is down at start delays the
        writes (they queue) instead of stopping the process. The pool plans each call with its
        values (``connect_pool``), which the admin API's queries need. ``keys`` seal and open what
        was captured from outside (none: stored plain)."""
        pool = await connect_pool(dsn, min_size=min_size, max_size=max_size)
        return cls(PostgresIncidentStore(pool, keys), dsn=dsn)

    @property
    def incidents(self) -> PostgresIncidentStore:
        return self._store

    def capture_files(self, directory: Path) -> LocalLogFiles:
        return LocalLogFiles(directory=directory, keys=self.keys)

    def key_rotation(self, directory: Path) -> KeyRotation:
        """``rotate-keys`` over this store's rows and the captured-log files of ``directory``."""
        return KeyRotation(
            PostgresSealedRows(self._store.pool), self.capture_files(directory), self.keys
        )

    async def migrate(self) -> list[str]:
        return await apply_migrations(self._store.pool)

    async def close(self) -> None:
        await self._store.close()
