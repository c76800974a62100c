"""``IncidentStore`` on an embedded SQLite file: the standalone monitor needs no database server.

Same logical schema and behaviour as ``PostgresIncidentStore`` (the contract tests run one
scenario set against both), including "one open incident per monitor" as a partial unique index.
How the file is opened, and why one thread owns it, is in ``database``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres.rows import (
    clean_text,
    duration_between,
    keep_prometheus,
    require_aware,
    to_json_text,
)
from downtime_operator.adapters.sqlite import columns
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.adapters.sqlite.metric_captures import final_metrics_due
from downtime_operator.domain.log_capture import DEFAULT_AFTER
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity
from downtime_operator.domain.severity import SeverityChange
from downtime_operator.domain.statistics import DowntimeSpan, clipped_seconds, seed_statistics
from downtime_operator.services.ports import ExpiredIncident, OpenIncidentExistsError

_SELECT = f"SELECT {columns.INCIDENT_COLUMNS} FROM downtime_incidents"
_OPEN = "status <> 'resolved'"
_EXPIRED = (
    "status = 'resolved' AND ended_at < :cutoff AND (NOT :keep_critical OR severity <> 'critical')"
)


def _utc_now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else require_aware(now, "now")


def _is_open_incident_conflict(exc: sqlite3.IntegrityError) -> bool:
    # SQLite names the index's columns, not the index: these two are unique only there.
    return "downtime_incidents.monitor_namespace, downtime_incidents.monitor_name" in str(exc)


_PLANNED_CAPTURE = ("pending", "captured", "failed")


def resolve_open_row(
    conn: sqlite3.Connection,
    incident: Incident,
    *,
    ended_at: datetime,
    notes: str | None,
    keys: LogKeyRing,
) -> Incident:
    """Resolve an open incident inside the caller's write transaction; return it resolved.

    As in PostgreSQL, every resolve goes through here (the runner's and the admin API's), so a
    planned capture (logs, Prometheus series) becomes pending again, due ``after`` past the end:
    the final capture follows whoever resolves.
    """
    # Clamp: a clock that stepped back must not put the end before the start.
    ended_at = max(ended_at, incident.started_at)
    plan = conn.execute(
        "SELECT logs_capture_status, logs_capture_due_at, logs_after_seconds, metrics_queries"
        " FROM downtime_incidents WHERE incident_id = ?",
        (str(incident.incident_id),),
    ).fetchone()
    capture_status, due_at = plan["logs_capture_status"], plan["logs_capture_due_at"]
    if capture_status in _PLANNED_CAPTURE:
        after = plan["logs_after_seconds"]
        capture_status = "pending"
        due_at = columns.timestamp(
            ended_at + (DEFAULT_AFTER if after is None else timedelta(seconds=after)), "due_at"
        )
    conn.execute(
        "UPDATE downtime_incidents SET status = 'resolved', ended_at = ?, duration_seconds = ?,"
        " notes = ?, logs_capture_status = ?, logs_capture_due_at = ?,"
        " metrics_capture_due_at = ?, updated_at = ?"
        " WHERE incident_id = ?",
        (
            columns.timestamp(ended_at, "ended_at"),
            duration_between(incident.started_at, ended_at),
            columns.appended_notes(incident.notes, notes),
            capture_status,
            due_at,
            final_metrics_due(plan["metrics_queries"], ended_at=ended_at),
            columns.timestamp(datetime.now(UTC), "now"),
            str(incident.incident_id),
        ),
    )
    resolved = get_row(conn, incident.incident_id, keys)
    assert resolved is not None  # same transaction
    return resolved


def get_row(conn: sqlite3.Connection, incident_id: UUID, keys: LogKeyRing) -> Incident | None:
    row = conn.execute(f"{_SELECT} WHERE incident_id = ?", (str(incident_id),)).fetchone()
    return None if row is None else columns.incident_from_row(row, keys)


class SqliteIncidentStore:
    """Open with ``await SqliteIncidentStore.open(path)``; the file is created on first use."""

    def __init__(self, database: SqliteDatabase, keys: LogKeyRing | None = None) -> None:
        self.keys = LogKeyRing() if keys is None else keys
        """Seal and open what was captured from outside (none: stored plain)."""
        self.database = database
        """Shared with the capture store, admin queries and audit log of the same process."""
        self._conn = database.conn
        self._run = database.run

    @classmethod
    async def open(cls, path: Path | str, keys: LogKeyRing | None = None) -> SqliteIncidentStore:
        return cls(await SqliteDatabase.open(path), keys)

    async def close(self) -> None:
        await self.database.close()

    # -- IncidentStore ---------------------------------------------------------------------

    async def create_incident(self, incident: Incident) -> Incident:
        params = columns.insert_params(incident, now=datetime.now(UTC), keys=self.keys)
        return await self._run(self._create, incident, params)

    def _create(self, incident: Incident, params: tuple[Any, ...]) -> Incident:
        with self.database.write():
            stored = self._get(incident.incident_id)
            if stored is not None:  # a retried create: return what is stored, untouched
                return stored
            try:
                self._conn.execute(columns.INSERT_SQL, params)
            except sqlite3.IntegrityError as exc:
                if not _is_open_incident_conflict(exc):
                    raise ValueError(f"incident {incident.incident_id} refused: {exc}") from exc
                existing = self._open_incident(incident.monitor)
                assert existing is not None  # same write transaction as the failed insert
                raise OpenIncidentExistsError(existing) from exc
            created = self._get(incident.incident_id)
        assert created is not None
        return created

    async def update_incident(self, incident_id: UUID, fields: Mapping[str, Any]) -> None:
        if not fields:
            return
        values = columns.update_values(incident_id, fields, self.keys)
        await self._run(self._update, incident_id, values, "duration_seconds" not in fields)

    def _update(self, incident_id: UUID, values: dict[str, Any], derive_duration: bool) -> None:
        with self.database.write():
            row = self._conn.execute(
                "SELECT started_at, metrics_snapshot FROM downtime_incidents WHERE incident_id = ?",
                (str(incident_id),),
            ).fetchone()
            if row is None:
                return
            if "metrics_snapshot" in values:
                values["metrics_snapshot"] = keep_prometheus(
                    values["metrics_snapshot"], stored=row["metrics_snapshot"]
                )
            if "ended_at" in values and derive_duration:
                # Setting ended_at alone recomputes the duration so the two never disagree.
                ended_at = columns.parse_timestamp(values["ended_at"])
                started_at = columns.parse_timestamp(row["started_at"])
                assert started_at is not None
                values["duration_seconds"] = (
                    None if ended_at is None else duration_between(started_at, ended_at)
                )
            values["updated_at"] = columns.timestamp(datetime.now(UTC), "now")
            # Column names come from the whitelist in ``columns.UPDATABLE``, never from callers.
            assignments = ", ".join(f"{name} = :{name}" for name in values)
            try:
                self._conn.execute(
                    f"UPDATE downtime_incidents SET {assignments} WHERE incident_id = :_id",
                    {**values, "_id": str(incident_id)},
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"incident {incident_id} update refused: {exc}") from exc

    async def escalate_incident(
        self, incident_id: UUID, *, change: SeverityChange, failed_checks: int
    ) -> None:
        await self._run(self._escalate, incident_id, change, failed_checks)

    def _escalate(self, incident_id: UUID, change: SeverityChange, failed_checks: int) -> None:
        # One write transaction, as PostgreSQL's one statement: read, append, write.
        with self.database.write():
            row = self._conn.execute(
                "SELECT severity, severity_changes FROM downtime_incidents WHERE incident_id = ?",
                (str(incident_id),),
            ).fetchone()
            if row is None:
                return
            changes = row["severity_changes"]
            if row["severity"] != change.severity.value:  # else a retry: appended already
                listed = [] if changes is None else json.loads(changes)
                changes = to_json_text([*listed, change.to_json()])
            self._conn.execute(
                "UPDATE downtime_incidents SET severity = ?, severity_changes = ?,"
                " failed_checks = ?, updated_at = ? WHERE incident_id = ?",
                (
                    change.severity.value,
                    changes,
                    failed_checks,
                    columns.timestamp(datetime.now(UTC), "now"),
                    str(incident_id),
                ),
            )

    async def resolve_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None = None
    ) -> Incident | None:
        ended_at = require_aware(ended_at, "ended_at")
        return await self._run(self._resolve, incident_id, ended_at, clean_text(notes))

    def _resolve(self, incident_id: UUID, ended_at: datetime, notes: str | None) -> Incident | None:
        with self.database.write():
            incident = self._get(incident_id)
            if incident is None or incident.status is IncidentStatus.RESOLVED:
                return incident  # unknown, or already resolved: unchanged
            return resolve_open_row(
                self._conn, incident, ended_at=ended_at, notes=notes, keys=self.keys
            )

    async def get_incident(self, incident_id: UUID) -> Incident | None:
        return await self._run(self._get, incident_id)

    def _get(self, incident_id: UUID) -> Incident | None:
        return get_row(self._conn, incident_id, self.keys)

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None:
        return await self._run(self._open_incident, monitor)

    def _open_incident(self, monitor: MonitorRef) -> Incident | None:
        row = self._conn.execute(
            f"{_SELECT} WHERE monitor_namespace = ? AND monitor_name = ? AND {_OPEN}",
            (monitor.namespace, monitor.name),
        ).fetchone()
        return None if row is None else columns.incident_from_row(row, self.keys)

    async def get_ongoing_incidents(self) -> list[Incident]:
        return await self._fetch(
            f"{_SELECT} WHERE status IN ('ongoing', 'investigating')"
            " ORDER BY started_at DESC, incident_id",
            {},
        )

    async def get_recent_incidents(
        self,
        *,
        limit: int = 50,
        status: IncidentStatus | None = None,
        severity: Severity | None = None,
        environment: str | None = None,
    ) -> list[Incident]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        params: dict[str, Any] = {"limit": limit}
        conditions: list[str] = []
        # Only constant column names enter the SQL; the values are parameters.
        for column, value in (
            ("status", None if status is None else IncidentStatus(status).value),
            ("severity", None if severity is None else Severity(severity).value),
            ("environment", environment),
        ):
            if value is not None:
                params[column] = value
                conditions.append(f"{column} = :{column}")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return await self._fetch(
            f"{_SELECT}{where} ORDER BY started_at DESC, incident_id LIMIT :limit", params
        )

    async def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Incident]:
        def fetch() -> list[Incident]:
            return [
                columns.incident_from_row(r, self.keys) for r in self._conn.execute(sql, params)
            ]

        return await self._run(fetch)

    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[DowntimeSpan]]:
        """Every monitor's incidents overlapping ``[since, until)``: one query for all uptimes."""
        since = require_aware(since, "since")
        until = require_aware(until, "until")
        found = await self._fetch(
            f"{_SELECT} WHERE started_at < :until AND (ended_at IS NULL OR ended_at > :since)",
            {
                "since": columns.timestamp(since, "since"),
                "until": columns.timestamp(until, "until"),
            },
        )
        spans: dict[MonitorRef, list[DowntimeSpan]] = {}
        for incident in found:
            spans.setdefault(incident.monitor, []).append((incident.started_at, incident.ended_at))
        return spans

    # -- Beyond the port: the seed's reporting and retention functions ---------------------

    async def get_incidents_by_date_range(
        self, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Incident]:
        """Incidents that overlap [start, end] (ongoing ones run to "now"), newest first."""
        start = require_aware(start, "start")
        end = require_aware(end, "end")
        if end < start:
            raise ValueError("end must not be before start")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return await self._overlapping(start, end, limit=limit)

    async def _overlapping(self, start: datetime, end: datetime, *, limit: int) -> list[Incident]:
        """Began before ``end`` and had not ended before ``start``; ``limit=-1``: all of them."""
        return await self._fetch(
            f"{_SELECT} WHERE started_at <= :end AND (ended_at IS NULL OR ended_at >= :start)"
            " ORDER BY started_at DESC, incident_id LIMIT :limit",
            {
                "start": columns.timestamp(start, "start"),
                "end": columns.timestamp(end, "end"),
                "limit": limit,
            },
        )

    async def get_incident_statistics(
        self, days: int = 30, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """The seed's statistics over the last ``days``, computed as the PostgreSQL store does:
        incidents overlapping the period, each one's downtime clipped to it (incident-seconds).
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        end = _utc_now(now)
        start = end - timedelta(days=days)
        found = await self._overlapping(start, end, limit=-1)
        by_severity: dict[str, int] = {}
        by_status: dict[str, int] = {}
        seconds = 0.0
        for incident in found:
            seconds += clipped_seconds(
                (incident.started_at, incident.ended_at), since=start, until=end
            )
            by_severity[incident.severity.value] = by_severity.get(incident.severity.value, 0) + 1
            by_status[incident.status.value] = by_status.get(incident.status.value, 0) + 1
        return seed_statistics(
            incidents=len(found),
            downtime_seconds=seconds,
            by_severity=by_severity,
            by_status=by_status,
        )

    async def cleanup_old_incidents(
        self, days: int = 90, keep_critical: bool = True, *, now: datetime | None = None
    ) -> list[Incident]:
        """Delete resolved incidents that ended more than ``days`` ago; return them.

        Open incidents are never deleted, however old: they are still being tracked.
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        params = self._expiry_params(days, keep_critical, _utc_now(now))

        def cleanup() -> list[Incident]:
            with self.database.write():
                found = [
                    columns.incident_from_row(r, self.keys)
                    for r in self._conn.execute(f"{_SELECT} WHERE {_EXPIRED}", params)
                ]
                self._conn.execute(f"DELETE FROM downtime_incidents WHERE {_EXPIRED}", params)
            return found

        return await self._run(cleanup)

    @staticmethod
    def _expiry_params(days: int, keep_critical: bool, now: datetime) -> dict[str, Any]:
        return {
            "cutoff": columns.timestamp(now - timedelta(days=days), "cutoff"),
            "keep_critical": int(keep_critical),
        }

    async def find_expired_incidents(
        self, *, days: int, keep_critical: bool, now: datetime
    ) -> list[ExpiredIncident]:
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        params = self._expiry_params(days, keep_critical, require_aware(now, "now"))

        def find() -> list[ExpiredIncident]:
            return [
                ExpiredIncident(
                    incident=columns.incident_from_row(r, self.keys),
                    logs_file_path=r["logs_file_path"],
                )
                for r in self._conn.execute(
                    f"SELECT {columns.INCIDENT_COLUMNS}, logs_file_path FROM downtime_incidents"
                    f" WHERE {_EXPIRED} ORDER BY ended_at, incident_id",
                    params,
                )
            ]

        return await self._run(find)

    async def delete_resolved_incident(self, incident_id: UUID) -> bool:
        def delete() -> bool:
            with self.database.write():
                cursor = self._conn.execute(
                    "DELETE FROM downtime_incidents WHERE incident_id = ? AND status = 'resolved'",
                    (str(incident_id),),
                )
            return cursor.rowcount > 0

        return await self._run(delete)

    async def get_incident_details(self, incident_id: UUID) -> dict[str, Any] | None:
        """Every column of one incident (captured logs, analysis, capture state) for the API."""

        def details() -> dict[str, Any] | None:
            row = self._conn.execute(
                f"SELECT {columns.DETAIL_COLUMNS} FROM downtime_incidents WHERE incident_id = ?",
                (str(incident_id),),
            ).fetchone()
            return None if row is None else columns.details_from_row(row, self.keys)

        return await self._run(details)

    async def get_due_log_captures(self, *, now: datetime | None = None) -> list[Incident]:
        """Incidents whose pending log capture is due, oldest first, so a restart finishes them."""
        return await self._fetch(
            f"{_SELECT} WHERE logs_capture_status = 'pending' AND logs_capture_due_at <= :now"
            " ORDER BY logs_capture_due_at",
            {"now": columns.timestamp(_utc_now(now), "now")},
        )
