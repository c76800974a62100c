"""The admin API's ports on the SQLite file: lists, statistics, guarded transitions, audit.

The standalone monitor serves the same admin API as the operator (``monitor --api-port``), so
these answer exactly as ``adapters.postgres.queries`` and ``audit`` do; the contract tests hold
both to one scenario set. A standalone file holds one monitor's incidents, so statistics are
computed from the overlapping rows by the domain's definition instead of from rollups.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres.queries import LIST_COLUMNS
from downtime_operator.adapters.postgres.rows import clean_text, require_aware, to_json_text
from downtime_operator.adapters.sqlite import columns
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.adapters.sqlite.store import get_row, resolve_open_row
from downtime_operator.domain.models import Incident, IncidentStatus
from downtime_operator.domain.report import AuditedCall
from downtime_operator.domain.statistics import IncidentSpan, PeriodStatistics, period_statistics
from downtime_operator.services.admin_ports import (
    AuditEntry,
    IncidentAlreadyResolvedError,
    IncidentFilter,
    IncidentPage,
    PageCursor,
    StoreUnavailableError,
)

T = TypeVar("T")

_NEWEST_FIRST = "ORDER BY started_at DESC, incident_id DESC"


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """A file that stays locked or cannot be read is "unavailable" (503), as a database is."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailableError(f"SQLite unavailable: {exc}") from exc


class SqliteIncidentQueries:
    """``IncidentQueries`` and ``IncidentTransitions`` over the process's ``SqliteDatabase``."""

    def __init__(self, database: SqliteDatabase, keys: LogKeyRing | None = None) -> None:
        self._db = database
        self._keys = LogKeyRing() if keys is None else keys

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with _store_errors():
            return await self._db.run(fn, self._db.conn)

    async def list_incidents(
        self, *, filters: IncidentFilter, limit: int, after: PageCursor | None
    ) -> IncidentPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        params: dict[str, Any] = {"limit": limit + 1}
        conditions: list[str] = []
        # Only constant column names enter the SQL; the values are parameters.
        for column, value in filters.equalities().items():
            params[column] = value
            conditions.append(f"{column} = :{column}")
        if after is not None:
            # Fixed-width UTC text and lower-case UUID text order as PostgreSQL's values do.
            params["after_started"] = columns.timestamp(after.started_at, "cursor")
            params["after_id"] = str(after.incident_id)
            conditions.append("(started_at, incident_id) < (:after_started, :after_id)")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {LIST_COLUMNS} FROM downtime_incidents{where} {_NEWEST_FIRST} LIMIT :limit"
        found = await self._run(
            lambda conn: [
                columns.details_from_row(r, self._keys) for r in conn.execute(sql, params)
            ]
        )
        return IncidentPage.of(found, limit=limit)

    async def ongoing_incidents(self) -> list[dict[str, Any]]:
        sql = (
            f"SELECT {LIST_COLUMNS} FROM downtime_incidents"
            f" WHERE status IN ('ongoing', 'investigating') {_NEWEST_FIRST}"
        )
        return await self._run(
            lambda conn: [columns.details_from_row(r, self._keys) for r in conn.execute(sql)]
        )

    async def incident_details(self, incident_id: UUID) -> dict[str, Any] | None:
        def details(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                f"SELECT {columns.DETAIL_COLUMNS} FROM downtime_incidents WHERE incident_id = ?",
                (str(incident_id),),
            ).fetchone()
            return None if row is None else columns.details_from_row(row, self._keys)

        return await self._run(details)

    async def statistics(self, *, since: datetime, until: datetime) -> PeriodStatistics:
        params = {
            "since": columns.timestamp(since, "since"),
            "until": columns.timestamp(until, "until"),
        }

        def spans(conn: sqlite3.Connection) -> list[IncidentSpan]:
            return [
                IncidentSpan(
                    severity=r["severity"],
                    status=r["status"],
                    namespace=r["monitor_namespace"] or "",
                    name=r["monitor_name"],
                    started_at=columns.parse_timestamp(r["started_at"]) or since,
                    ended_at=columns.parse_timestamp(r["ended_at"]),
                )
                for r in conn.execute(
                    "SELECT severity, status, monitor_namespace, monitor_name, started_at,"
                    " ended_at FROM downtime_incidents WHERE started_at < :until"
                    " AND (ended_at IS NULL OR ended_at > :since)",
                    params,
                )
            ]

        return period_statistics(await self._run(spans), since=since, until=until)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- IncidentTransitions ---------------------------------------------------------------

    async def resolve_open_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None
    ) -> Incident | None:
        ended_at = require_aware(ended_at, "ended_at")
        notes = clean_text(notes)
        return await self._transition(
            incident_id,
            lambda conn, incident: resolve_open_row(
                conn, incident, ended_at=ended_at, notes=notes, keys=self._keys
            ),
        )

    async def acknowledge_open_incident(
        self, incident_id: UUID, *, notes: str | None
    ) -> Incident | None:
        notes = clean_text(notes)

        def acknowledge(conn: sqlite3.Connection, incident: Incident) -> Incident:
            conn.execute(
                "UPDATE downtime_incidents SET status = 'investigating', notes = ?,"
                " updated_at = ? WHERE incident_id = ?",
                (
                    columns.appended_notes(incident.notes, notes),
                    columns.timestamp(datetime.now(UTC), "now"),
                    str(incident_id),
                ),
            )
            acknowledged = get_row(conn, incident_id, self._keys)
            assert acknowledged is not None  # same transaction
            return acknowledged

        return await self._transition(incident_id, acknowledge)

    async def annotate_incident(
        self, incident_id: UUID, *, root_cause: str | None, note: str | None
    ) -> Incident | None:
        root_cause, note = clean_text(root_cause), clean_text(note)

        def annotate(conn: sqlite3.Connection) -> Incident | None:
            # Whatever the status: the post-mortem is written after the end.
            with self._db.write():
                incident = get_row(conn, incident_id, self._keys)
                if incident is None:
                    return None
                conn.execute(
                    "UPDATE downtime_incidents SET root_cause = ?, notes = ?, updated_at = ?"
                    " WHERE incident_id = ?",
                    (
                        incident.root_cause if root_cause is None else root_cause,
                        columns.appended_notes(incident.notes, note),
                        columns.timestamp(datetime.now(UTC), "now"),
                        str(incident_id),
                    ),
                )
                return get_row(conn, incident_id, self._keys)

        return await self._run(annotate)

    async def _transition(
        self, incident_id: UUID, change: Callable[[sqlite3.Connection, Incident], Incident]
    ) -> Incident | None:
        """Apply ``change`` to an open incident in one write transaction; None if unknown."""

        def transition(conn: sqlite3.Connection) -> Incident | None:
            with self._db.write():
                incident = get_row(conn, incident_id, self._keys)
                if incident is None:
                    return None
                if incident.status is IncidentStatus.RESOLVED:
                    raise IncidentAlreadyResolvedError(incident)
                return change(conn, incident)

        return await self._run(transition)


class SqliteAuditLog:
    """``AuditLog`` in the file's ``downtime_audit_log`` table (schema version 2)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def record_attempt(self, entry: AuditEntry) -> int:
        params = (
            columns.timestamp(entry.at, "at"),
            clean_text(entry.key_name),
            entry.action,
            None if entry.incident_id is None else str(entry.incident_id),
            to_json_text(dict(entry.parameters)),
            clean_text(entry.remote_addr),
        )

        def insert(conn: sqlite3.Connection) -> int:
            with self._db.write():
                cursor = conn.execute(
                    "INSERT INTO downtime_audit_log"
                    " (at, key_name, action, incident_id, parameters, remote_addr)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    params,
                )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        with _store_errors():
            return await self._db.run(insert, self._db.conn)

    async def for_incident(self, incident_id: UUID) -> list[AuditedCall]:
        def read(conn: sqlite3.Connection) -> list[AuditedCall]:
            return [
                AuditedCall(
                    at=datetime.fromisoformat(r["at"]),
                    actor=r["key_name"],
                    action=r["action"],
                    parameters=json.loads(r["parameters"]),
                    outcome=r["outcome"],
                )
                for r in conn.execute(
                    "SELECT at, key_name, action, parameters, outcome FROM downtime_audit_log"
                    " WHERE incident_id = ? ORDER BY audit_id",
                    (str(incident_id),),
                )
            ]

        with _store_errors():
            return await self._db.run(read, self._db.conn)

    async def record_outcome(self, entry_id: int, *, outcome: str, status_code: int) -> None:
        params = (outcome, status_code, columns.timestamp(datetime.now(UTC), "now"), entry_id)

        def update(conn: sqlite3.Connection) -> None:
            with self._db.write():
                conn.execute(
                    "UPDATE downtime_audit_log SET outcome = ?, status_code = ?, finished_at = ?"
                    " WHERE audit_id = ?",
                    params,
                )

        with _store_errors():
            await self._db.run(update, self._db.conn)
