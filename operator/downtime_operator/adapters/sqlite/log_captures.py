"""``LogCaptureStore`` on the SQLite file: the standalone monitor's captures survive a restart.

The same rules as ``adapters.postgres.log_captures`` (whose docstring explains them): the plan is
stored with the incident, a claim is a lease, and a result is written only while its capture is
still pending with the due time it was claimed for. A claim is a ``BEGIN IMMEDIATE`` transaction
here, which makes it exclusive against other processes on the same file as ``FOR UPDATE SKIP
LOCKED`` does against other replicas.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any
from uuid import UUID

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres.log_captures import (
    captured_values,
    plan_from_row,
    stored_capture,
)
from downtime_operator.adapters.postgres.rows import clean_text
from downtime_operator.adapters.sqlite import columns
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.domain.log_capture import (
    CapturePlan,
    CaptureResult,
    PendingCapture,
    StoredCapture,
)
from downtime_operator.domain.models import LogCaptureState

_PLAN_COLUMNS = (
    "logs_query, logs_before_seconds, logs_after_seconds, logs_max_lines, logs_storage,"
    " logs_capture_error, logs_capture_due_at, logs_file_path"
)

_SCHEDULE_SQL = """
UPDATE downtime_incidents
SET logs_query = :query, logs_before_seconds = :before, logs_after_seconds = :after,
    logs_max_lines = :max_lines, logs_storage = :storage, logs_capture_status = :state,
    logs_capture_due_at = :due_at, logs_capture_error = :error
WHERE incident_id = :id AND logs_capture_status IS NULL
"""

_DUE_SQL = """
SELECT incident_id FROM downtime_incidents
WHERE logs_capture_status = 'pending' AND logs_capture_due_at <= :now
  AND (logs_capture_claimed_until IS NULL OR logs_capture_claimed_until <= :now)
ORDER BY logs_capture_due_at
LIMIT 1
"""

# :due is the due time a scheduled run was claimed for, NULL for a manual run; :at the run's time.
_APPLIES = (
    "incident_id = :id AND (:due IS NULL"
    " OR (logs_capture_status = 'pending' AND logs_capture_due_at = :due))"
)
# A manual run leaves a capture scheduled for later pending; otherwise the run's state stands.
_STATUS_AFTER = (
    "CASE WHEN :due IS NULL AND logs_capture_status = 'pending'"
    " AND logs_capture_due_at > :at THEN 'pending' ELSE :state END"
)

_RECORD_CAPTURED_SQL = f"""
UPDATE downtime_incidents
SET logs_capture_status = {_STATUS_AFTER},
    logs_capture_error = NULL,
    logs_captured = :records,
    logs_file_path = :file_path,
    logs_count = :count,
    logs_truncated = :truncated,
    logs_available = :available,
    log_analysis = :analysis,
    logs_window_start = :window_start,
    logs_window_end = :window_end,
    logs_captured_at = :at,
    logs_capture_runs = logs_capture_runs + 1,
    logs_capture_claimed_until = NULL
WHERE {_APPLIES}
"""

# Failed or disabled: the entries an earlier run stored stay; only the state and error change.
_RECORD_NOT_CAPTURED_SQL = f"""
UPDATE downtime_incidents
SET logs_capture_status = {_STATUS_AFTER},
    logs_capture_error = :error,
    logs_capture_runs = logs_capture_runs + 1,
    logs_capture_claimed_until = NULL
WHERE {_APPLIES}
"""


def _plan_row(row: sqlite3.Row) -> dict[str, Any]:
    """``plan_from_row`` reads a mapping; the due time is decoded from its text."""
    plan = dict(zip(row.keys(), tuple(row), strict=True))
    plan["logs_capture_due_at"] = columns.parse_timestamp(plan["logs_capture_due_at"])
    return plan


class SqliteLogCaptures:
    """Implements ``LogCaptureStore``; shares the incident store's ``SqliteDatabase``."""

    def __init__(self, database: SqliteDatabase, keys: LogKeyRing | None = None) -> None:
        self._db = database
        self._keys = LogKeyRing() if keys is None else keys

    async def schedule_log_capture(
        self, incident_id: UUID, *, plan: CapturePlan, due_at: datetime
    ) -> None:
        state = LogCaptureState.PENDING if plan.enabled else LogCaptureState.DISABLED
        params = {
            "id": str(incident_id),
            "query": clean_text(plan.query),
            "before": plan.before.total_seconds(),
            "after": plan.after.total_seconds(),
            "max_lines": plan.max_lines,
            "storage": plan.storage.value,
            "state": state.value,
            "due_at": columns.timestamp(due_at, "due_at") if plan.enabled else None,
            "error": plan.disabled_reason,
        }

        def schedule() -> None:
            with self._db.write() as conn:
                conn.execute(_SCHEDULE_SQL, params)

        await self._db.run(schedule)

    async def claim_due_log_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> PendingCapture | None:
        now_text = columns.timestamp(now, "now")
        lease_text = columns.timestamp(lease_until, "lease")

        def claim() -> PendingCapture | None:
            with self._db.write() as conn:
                due = conn.execute(_DUE_SQL, {"now": now_text}).fetchone()
                if due is None:
                    return None
                conn.execute(
                    "UPDATE downtime_incidents SET logs_capture_claimed_until = ?"
                    " WHERE incident_id = ?",
                    (lease_text, due["incident_id"]),
                )
                row = conn.execute(
                    f"SELECT {columns.INCIDENT_COLUMNS}, {_PLAN_COLUMNS} FROM downtime_incidents"
                    " WHERE incident_id = ?",
                    (due["incident_id"],),
                ).fetchone()
            plan = _plan_row(row)
            return PendingCapture(
                incident=columns.incident_from_row(row, self._keys),
                plan=plan_from_row(plan),
                due_at=plan["logs_capture_due_at"],
                file_path=plan["logs_file_path"],
            )

        return await self._db.run(claim)

    async def record_log_capture(
        self,
        incident_id: UUID,
        *,
        result: CaptureResult,
        due_at: datetime | None,
        file_path: str | None = None,
    ) -> bool:
        params: dict[str, Any] = {
            "id": str(incident_id),
            "due": None if due_at is None else columns.timestamp(due_at, "due_at"),
            "at": columns.timestamp(result.captured_at, "captured_at"),
            "state": result.state.value,
        }
        if result.state is not LogCaptureState.CAPTURED:
            sql = _RECORD_NOT_CAPTURED_SQL
            params["error"] = clean_text(result.error)
        else:
            sql = _RECORD_CAPTURED_SQL
            window = result.window
            records, analysis = captured_values(self._keys, incident_id, result, file_path)
            params |= {
                "records": records,
                "file_path": file_path,
                "count": len(result.records),
                "truncated": int(result.truncated),
                "available": result.available,
                "analysis": analysis,
                "window_start": None if window is None else columns.timestamp(window.start, "w"),
                "window_end": None if window is None else columns.timestamp(window.end, "w"),
            }

        def record() -> bool:
            with self._db.write() as conn:
                return conn.execute(sql, params).rowcount > 0

        return await self._db.run(record)

    async def release_log_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        params = (str(incident_id), columns.timestamp(due_at, "due_at"))

        def release() -> None:
            with self._db.write() as conn:
                conn.execute(
                    "UPDATE downtime_incidents SET logs_capture_claimed_until = NULL"
                    " WHERE incident_id = ? AND logs_capture_status = 'pending'"
                    " AND logs_capture_due_at = ?",
                    params,
                )

        await self._db.run(release)

    async def get_log_capture(self, incident_id: UUID) -> StoredCapture | None:
        def get() -> StoredCapture | None:
            row = self._db.conn.execute(
                f"SELECT {columns.INCIDENT_COLUMNS}, {_PLAN_COLUMNS}, logs_captured, log_analysis"
                " FROM downtime_incidents WHERE incident_id = ?",
                (str(incident_id),),
            ).fetchone()
            if row is None:
                return None
            return stored_capture(
                _plan_row(row), columns.incident_from_row(row, self._keys), self._keys
            )

        return await self._db.run(get)
