"""The stores under contract, and incidents to feed them.

Three stores: PostgreSQL, the embedded SQLite file, and the unit tests' in-memory fake, which is
held to the same scenarios so it cannot drift from them. A test that needs what only a SQL store
has (its other tables, the seed's reporting functions, the admin API's ports) is marked
``sql_only`` and is skipped on the fake (``conftest``).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.postgres.audit import PostgresAuditLog
from downtime_operator.adapters.postgres.log_captures import PostgresLogCaptures
from downtime_operator.adapters.postgres.queries import PostgresIncidentQueries
from downtime_operator.adapters.postgres.rows import to_json_text
from downtime_operator.adapters.sqlite import (
    SqliteAuditLog,
    SqliteIncidentQueries,
    SqliteIncidentStore,
    SqliteLogCaptures,
)
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity
from downtime_operator.services.admin_ports import AuditLog
from downtime_operator.services.ports import LogCaptureStore
from tests.unit.fakes import CAPTURE_COLUMNS, MemoryStore

Store = PostgresIncidentStore | SqliteIncidentStore
"""A SQL store: tables underneath (``raw_row``), the admin API's ports beside it (``ports_for``)."""
AnyStore = Store | MemoryStore
"""Any store under contract, the in-memory fake included."""
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def sql_store(store: AnyStore) -> Store:
    """The store of a test marked ``sql_only`` (the fixture skips the memory fake for it)."""
    assert not isinstance(store, MemoryStore), "sql_only"
    return store


class Stores:
    """Opens instances of one store over the same data: a second instance is a restart."""

    def __init__(self, *, kind: str, opener: Callable[[], Awaitable[AnyStore]]) -> None:
        self.kind = kind
        self._opener = opener
        self._opened: list[AnyStore] = []

    async def open(self) -> AnyStore:
        store = await self._opener()
        self._opened.append(store)
        return store

    async def close(self, store: AnyStore) -> None:
        self._opened.remove(store)
        await store.close()

    async def close_all(self) -> None:
        while self._opened:
            await self._opened.pop().close()


def make_incident(
    name: str = "api",
    *,
    namespace: str = "default",
    started_at: datetime = T0,
    ended_at: datetime | None = None,
    severity: Severity = Severity.HIGH,
    status: IncidentStatus | None = None,
    environment: str = "production",
    **extra: Any,
) -> Incident:
    if status is None:
        status = IncidentStatus.ONGOING if ended_at is None else IncidentStatus.RESOLVED
    return Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace=namespace, name=name),
        k8s_name=f"{name}-{started_at:%Y%m%d-%H%M%S}",
        health_endpoint=f"https://{name}.example/health",
        environment=environment,
        started_at=started_at,
        detected_at=started_at + timedelta(seconds=20),
        severity=severity,
        status=status,
        ended_at=ended_at,
        **extra,
    )


def ids(incidents: list[Incident]) -> list[uuid.UUID]:
    return [i.incident_id for i in incidents]


@dataclass(frozen=True)
class Ports:
    """A store's other ports, over the same data: what the admin API and log capture use."""

    captures: LogCaptureStore
    queries: PostgresIncidentQueries | SqliteIncidentQueries
    audit: AuditLog


def ports_for(store: Store) -> Ports:
    if isinstance(store, SqliteIncidentStore):
        db = store.database
        return Ports(
            SqliteLogCaptures(db, store.keys),
            SqliteIncidentQueries(db, store.keys),
            SqliteAuditLog(db),
        )
    pool = store.pool
    return Ports(
        PostgresLogCaptures(pool, store.keys),
        PostgresIncidentQueries(pool, store.keys),
        PostgresAuditLog(pool),
    )


def captures_for(store: AnyStore) -> LogCaptureStore:
    """The store's ``LogCaptureStore`` over the same data; the fake is its own."""
    return store if isinstance(store, MemoryStore) else ports_for(store).captures


_SQLITE_TIMESTAMPS = (
    "started_at",
    "detected_at",
    "ended_at",
    "created_at",
    "updated_at",
    "logs_capture_due_at",
    "logs_window_start",
    "logs_window_end",
    "logs_captured_at",
    "logs_capture_claimed_until",
    "metrics_capture_due_at",
    "metrics_capture_claimed_until",
)


async def raw_row(store: AnyStore, table: str, key: str, value: Any) -> dict[str, Any]:
    """Every column of one row, typed as asyncpg returns them (JSON columns stay text).

    ``table`` and ``key`` are the tests' own constants. The fake has incidents only, and of
    their columns those its ``CaptureRow`` holds beyond ``Incident``'s fields.
    """
    if isinstance(store, MemoryStore):
        assert (table, key) == ("downtime_incidents", "incident_id"), "mark the test sql_only"
        return _memory_row(store, value)
    if isinstance(store, PostgresIncidentStore):
        found = await store.pool.fetchrow(f"SELECT * FROM {table} WHERE {key} = $1", value)
        assert found is not None
        return dict(found)

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        found = conn.execute(f"SELECT * FROM {table} WHERE {key} = ?", (str(value),)).fetchone()
        assert found is not None
        return dict(zip(found.keys(), tuple(found), strict=True))

    row = await store.database.run(read, store.database.conn)
    if row.get("incident_id") is not None:
        row["incident_id"] = uuid.UUID(row["incident_id"])
    for column in (*_SQLITE_TIMESTAMPS, "at", "finished_at"):
        if row.get(column) is not None:
            row[column] = datetime.fromisoformat(row[column])
    if row.get("logs_truncated") is not None:
        row["logs_truncated"] = bool(row["logs_truncated"])
    return row


def _memory_row(store: MemoryStore, incident_id: uuid.UUID) -> dict[str, Any]:
    row, capture = store.rows[incident_id], store.captures[incident_id]
    window = capture.window
    return {
        "incident_id": incident_id,
        "logs_capture_status": None if row.logs_state is None else row.logs_state.value,
        **{column: getattr(capture, name) for column, name in CAPTURE_COLUMNS.items()},
        "logs_captured": to_json_text(capture.records),
        "log_analysis": to_json_text(capture.analysis),
        "logs_available": capture.available,
        "logs_capture_runs": capture.runs,
        "logs_capture_claimed_until": capture.claimed_until,
        "logs_window_start": None if window is None else window.start,
        "logs_window_end": None if window is None else window.end,
        "severity_changes": to_json_text(capture.severity_changes),
    }
