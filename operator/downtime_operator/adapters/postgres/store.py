"""``IncidentStore`` on PostgreSQL (asyncpg), plus the seed's reporting and retention queries.

The database, not this process, enforces "one open incident per monitor": the partial unique
index turns a duplicate from a second replica or a restarted operator into an
``OpenIncidentExistsError`` carrying the incident that already exists. Every value is passed as
a ``$n`` parameter; the only SQL text assembled at run time is made of constants from ``rows``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres import rows
from downtime_operator.adapters.postgres.log_captures import final_capture_on_resolve
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity
from downtime_operator.domain.severity import SeverityChange
from downtime_operator.domain.statistics import DowntimeSpan, seed_statistics
from downtime_operator.services.ports import ExpiredIncident, OpenIncidentExistsError

_SELECT = f"SELECT {rows.INCIDENT_COLUMNS} FROM downtime_incidents"

_RESOLVE_SQL = f"""
UPDATE downtime_incidents
SET status = 'resolved',
    -- Clamp: a clock that stepped back must not violate ended_at >= started_at.
    ended_at = GREATEST($2, started_at),
    duration_seconds = GREATEST(EXTRACT(EPOCH FROM ($2 - started_at))::float8, 0),
    notes = CASE
        WHEN $3::text IS NULL OR $3::text = '' THEN notes
        WHEN notes IS NULL OR notes = '' THEN $3::text
        ELSE notes || E'\\n' || $3::text
    END,
    {final_capture_on_resolve("$2")}
WHERE incident_id = $1 AND status <> 'resolved'
RETURNING {rows.INCIDENT_COLUMNS}
"""

# In one statement, so the list and the severity cannot disagree. SET reads the row as it was:
# a change is appended only when the severity changes, so a retried write appends nothing.
_ESCALATE_SQL = """
UPDATE downtime_incidents
SET severity_changes = CASE
        WHEN severity = $2 THEN severity_changes
        ELSE COALESCE(severity_changes, '[]'::jsonb) || jsonb_build_array($3::text::jsonb)
    END,
    severity = $2,
    failed_checks = $4
WHERE incident_id = $1
"""

# Overlap with [start, end]: began before the end and had not ended before the start.
_OVERLAPS = "started_at <= $2 AND COALESCE(ended_at, 'infinity') >= $1"

_STATISTICS_SQL = f"""
SELECT severity, status, count(*) AS incidents,
       COALESCE(sum(GREATEST(EXTRACT(EPOCH FROM (
           LEAST(COALESCE(ended_at, $2), $2) - GREATEST(started_at, $1)
       )), 0)), 0)::float8 AS seconds
FROM downtime_incidents
WHERE {_OVERLAPS}
GROUP BY severity, status
"""

_CLEANUP_SQL = f"""
DELETE FROM downtime_incidents
WHERE status = 'resolved' AND ended_at < $1 AND (NOT $2::bool OR severity <> 'critical')
RETURNING {rows.INCIDENT_COLUMNS}
"""


def _utc_now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else rows.require_aware(now, "now")


class PostgresIncidentStore:
    """The system of record. Safe to share between tasks: each call borrows a pool connection."""

    def __init__(self, pool: asyncpg.Pool[Any], keys: LogKeyRing | None = None) -> None:
        self._pool = pool
        self._keys = LogKeyRing() if keys is None else keys

    @property
    def keys(self) -> LogKeyRing:
        return self._keys

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        keys: LogKeyRing | None = None,
        **pool_options: Any,
    ) -> PostgresIncidentStore:
        """Open a pool for ``dsn``; ``pool_options`` go to ``asyncpg.create_pool``.

        Behind a transaction-mode pooler (Supabase port 6543) pass ``statement_cache_size=0``.
        """
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **pool_options)
        return cls(pool, keys)

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    # -- IncidentStore ---------------------------------------------------------------------

    async def create_incident(self, incident: Incident) -> Incident:
        params = rows.insert_params(incident, self._keys)
        # Two attempts: the open incident we collided with may be resolved before we read it.
        for _ in range(2):
            try:
                row = await self._pool.fetchrow(rows.INSERT_SQL, *params)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != rows.OPEN_INCIDENT_INDEX:
                    raise
                existing = await self.get_open_incident(incident.monitor)
                if existing is None:
                    continue
                if existing.incident_id == incident.incident_id:
                    return existing  # a concurrent retry of this same create won the race
                raise OpenIncidentExistsError(existing) from exc
            if row is not None:
                return rows.incident_from_row(row, self._keys)
            # ON CONFLICT (incident_id) DO NOTHING: a retried create; return what is stored.
            stored = await self.get_incident(incident.incident_id)
            if stored is not None:
                return stored
        raise RuntimeError(f"could not create incident {incident.incident_id}: kept conflicting")

    async def update_incident(self, incident_id: UUID, fields: Mapping[str, Any]) -> None:
        if not fields:
            return
        sql, params = rows.build_update(incident_id, fields, self._keys)
        await self._pool.execute(sql, *params)

    async def escalate_incident(
        self, incident_id: UUID, *, change: SeverityChange, failed_checks: int
    ) -> None:
        await self._pool.execute(
            _ESCALATE_SQL,
            incident_id,
            Severity(change.severity).value,
            rows.to_json_text(change.to_json()),
            failed_checks,
        )

    async def resolve_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None = None
    ) -> Incident | None:
        ended_at = rows.require_aware(ended_at, "ended_at")
        row = await self._pool.fetchrow(_RESOLVE_SQL, incident_id, ended_at, rows.clean_text(notes))
        if row is not None:
            return rows.incident_from_row(row, self._keys)
        return await self.get_incident(incident_id)  # already resolved (unchanged) or unknown

    async def get_incident(self, incident_id: UUID) -> Incident | None:
        row = await self._pool.fetchrow(f"{_SELECT} WHERE incident_id = $1", incident_id)
        return None if row is None else rows.incident_from_row(row, self._keys)

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None:
        row = await self._pool.fetchrow(
            f"{_SELECT} WHERE monitor_namespace = $1 AND monitor_name = $2"
            " AND status <> 'resolved'",
            monitor.namespace,
            monitor.name,
        )
        return None if row is None else rows.incident_from_row(row, self._keys)

    async def get_ongoing_incidents(self) -> list[Incident]:
        found = await self._pool.fetch(
            f"{_SELECT} WHERE status IN ('ongoing', 'investigating')"
            " ORDER BY started_at DESC, incident_id"
        )
        return [rows.incident_from_row(r, self._keys) for r in found]

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
        params: list[Any] = []
        conditions: list[str] = []
        # Only constant column names enter the SQL; the values are parameters.
        for column, value in (
            ("status", None if status is None else IncidentStatus(status).value),
            ("severity", None if severity is None else Severity(severity).value),
            ("environment", environment),
        ):
            if value is not None:
                params.append(value)
                conditions.append(f"{column} = ${len(params)}")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        params.append(limit)
        found = await self._pool.fetch(
            f"{_SELECT}{where} ORDER BY started_at DESC, incident_id LIMIT ${len(params)}",
            *params,
        )
        return [rows.incident_from_row(r, self._keys) for r in found]

    # -- Beyond the port: the seed's reporting and retention functions ---------------------

    async def get_incidents_by_date_range(
        self, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Incident]:
        """Incidents that overlap [start, end] (ongoing ones run to "now"), newest first."""
        start = rows.require_aware(start, "start")
        end = rows.require_aware(end, "end")
        if end < start:
            raise ValueError("end must not be before start")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        found = await self._pool.fetch(
            f"{_SELECT} WHERE {_OVERLAPS} ORDER BY started_at DESC, incident_id LIMIT $3",
            start,
            end,
            limit,
        )
        return [rows.incident_from_row(r, self._keys) for r in found]

    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[DowntimeSpan]]:
        """Every monitor's incidents overlapping ``[since, until)``: one query for all uptimes."""
        found = await self._pool.fetch(
            """
            SELECT monitor_namespace, monitor_name, started_at, ended_at
            FROM downtime_incidents
            WHERE started_at < $2 AND COALESCE(ended_at, $2) > $1
            """,
            rows.require_aware(since, "since"),
            rows.require_aware(until, "until"),
        )
        spans: dict[MonitorRef, list[DowntimeSpan]] = {}
        for r in found:
            monitor = MonitorRef(namespace=r["monitor_namespace"], name=r["monitor_name"])
            spans.setdefault(monitor, []).append((r["started_at"], r["ended_at"]))
        return spans

    async def get_incident_statistics(
        self, days: int = 30, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """The seed's statistics over the last ``days``.

        Counts incidents overlapping the period; each one's downtime is clipped to the period
        (an ongoing one counts up to ``now``). Totals are sums per incident, so two monitors down
        at the same time count twice: it is incident-seconds, as the seed computed it.
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        end = _utc_now(now)
        start = end - timedelta(days=days)
        by_severity: dict[str, int] = {}
        by_status: dict[str, int] = {}
        total = 0
        seconds = 0.0
        for r in await self._pool.fetch(_STATISTICS_SQL, start, end):
            count = int(r["incidents"])
            total += count
            seconds += float(r["seconds"])
            by_severity[r["severity"]] = by_severity.get(r["severity"], 0) + count
            by_status[r["status"]] = by_status.get(r["status"], 0) + count
        return seed_statistics(
            incidents=total,
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
        cutoff = _utc_now(now) - timedelta(days=days)
        found = await self._pool.fetch(_CLEANUP_SQL, cutoff, keep_critical)
        return [rows.incident_from_row(r, self._keys) for r in found]

    async def find_expired_incidents(
        self, *, days: int, keep_critical: bool, now: datetime
    ) -> list[ExpiredIncident]:
        """What ``cleanup_old_incidents`` would delete, for the retention service (RetentionStore).

        It removes each one's CR and log file before ``delete_resolved_incident``.
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        cutoff = rows.require_aware(now, "now") - timedelta(days=days)
        found = await self._pool.fetch(
            f"SELECT {rows.INCIDENT_COLUMNS}, logs_file_path FROM downtime_incidents"
            " WHERE status = 'resolved' AND ended_at < $1"
            " AND (NOT $2::bool OR severity <> 'critical')"
            " ORDER BY ended_at, incident_id",
            cutoff,
            keep_critical,
        )
        return [
            ExpiredIncident(
                incident=rows.incident_from_row(r, self._keys), logs_file_path=r["logs_file_path"]
            )
            for r in found
        ]

    async def delete_resolved_incident(self, incident_id: UUID) -> bool:
        deleted = await self._pool.fetchval(
            "DELETE FROM downtime_incidents WHERE incident_id = $1 AND status = 'resolved'"
            " RETURNING true",
            incident_id,
        )
        return bool(deleted)

    async def get_incident_details(self, incident_id: UUID) -> dict[str, Any] | None:
        """Every column of one incident (captured logs, analysis, capture state) for the API."""
        row = await self._pool.fetchrow(
            f"SELECT {rows.DETAIL_COLUMNS} FROM downtime_incidents WHERE incident_id = $1",
            incident_id,
        )
        return None if row is None else rows.details_from_row(row, self._keys)

    async def get_due_log_captures(self, *, now: datetime | None = None) -> list[Incident]:
        """Incidents whose pending log capture is due, oldest first, so a restart finishes them."""
        found = await self._pool.fetch(
            f"{_SELECT} WHERE logs_capture_status = 'pending' AND logs_capture_due_at <= $1"
            " ORDER BY logs_capture_due_at",
            _utc_now(now),
        )
        return [rows.incident_from_row(r, self._keys) for r in found]
