"""``LogCaptureStore`` on PostgreSQL: capture plans, claims and results, kept with the incident.

Why the database holds the schedule: a capture due at ``ended_at + after`` must happen even if
the operator restarts in between, and exactly once even with two replicas. The claim is a lease
(``logs_capture_claimed_until``) taken with ``FOR UPDATE SKIP LOCKED``; a result is written only
while its capture is still pending with the due time it was claimed for, so a run is recorded
once and a run overtaken by a newer schedule (the incident resolved meanwhile) is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres import rows
from downtime_operator.adapters.postgres.metric_captures import final_metrics_capture_on_resolve
from downtime_operator.adapters.sealed_columns import LOGS_SEALED, opened, seal_stored
from downtime_operator.domain.log_capture import (
    DEFAULT_AFTER,
    CapturePlan,
    CaptureResult,
    PendingCapture,
    StoredCapture,
)
from downtime_operator.domain.models import Incident, LogCaptureState, LogStorage

_PLANNED = "logs_capture_status IN ('pending', 'captured', 'failed')"


def final_capture_on_resolve(ended_at: str) -> str:
    """SET items for a resolving UPDATE: a planned capture (logs, Prometheus series) becomes
    pending, due ``after`` past the end. ``ended_at`` is the statement's parameter (``$2``).
    Every resolve statement uses it, so the final capture follows whoever resolves (the runner,
    the admin API)."""
    return (
        f"logs_capture_status = CASE WHEN {_PLANNED} THEN 'pending'"
        " ELSE logs_capture_status END,"
        f" logs_capture_due_at = CASE WHEN {_PLANNED} THEN GREATEST({ended_at}, started_at)"
        " + make_interval(secs => COALESCE(logs_after_seconds,"
        f" {DEFAULT_AFTER.total_seconds():g})) ELSE logs_capture_due_at END,"
        f" {final_metrics_capture_on_resolve(ended_at)}"
    )


_PLAN_COLUMNS = (
    "logs_query, logs_before_seconds, logs_after_seconds, logs_max_lines, logs_storage,"
    " logs_capture_error, logs_capture_due_at"
)

_SCHEDULE_SQL = """
UPDATE downtime_incidents
SET logs_query = $2, logs_before_seconds = $3, logs_after_seconds = $4, logs_max_lines = $5,
    logs_storage = $6, logs_capture_status = $7, logs_capture_due_at = $8,
    logs_capture_error = $9
WHERE incident_id = $1 AND logs_capture_status IS NULL
"""

_CLAIM_SQL = f"""
UPDATE downtime_incidents SET logs_capture_claimed_until = $2
WHERE incident_id = (
    SELECT incident_id FROM downtime_incidents
    WHERE logs_capture_status = 'pending' AND logs_capture_due_at <= $1
      AND (logs_capture_claimed_until IS NULL OR logs_capture_claimed_until <= $1)
    ORDER BY logs_capture_due_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {rows.INCIDENT_COLUMNS}, {_PLAN_COLUMNS}, logs_file_path
"""

# $2: the due time a scheduled run was claimed for, NULL for a manual run. $3: the run's time.
_APPLIES = (
    "incident_id = $1 AND ($2::timestamptz IS NULL"
    " OR (logs_capture_status = 'pending' AND logs_capture_due_at = $2))"
)
# A manual run leaves a capture scheduled for later pending; otherwise the run's state stands.
_STATUS_AFTER = (
    "CASE WHEN $2::timestamptz IS NULL AND logs_capture_status = 'pending'"
    " AND logs_capture_due_at > $3 THEN 'pending' ELSE $4 END"
)

_RECORD_CAPTURED_SQL = f"""
UPDATE downtime_incidents
SET logs_capture_status = {_STATUS_AFTER},
    logs_capture_error = NULL,
    logs_captured = $5::text::jsonb,
    logs_file_path = $6,
    logs_count = $7,
    logs_truncated = $8,
    logs_available = $9,
    log_analysis = $10::text::jsonb,
    logs_window_start = $11,
    logs_window_end = $12,
    logs_captured_at = $3,
    logs_capture_runs = logs_capture_runs + 1,
    logs_capture_claimed_until = NULL
WHERE {_APPLIES}
RETURNING true
"""

# Failed or disabled: the entries an earlier run stored stay; only the state and error change.
_RECORD_NOT_CAPTURED_SQL = f"""
UPDATE downtime_incidents
SET logs_capture_status = {_STATUS_AFTER},
    logs_capture_error = $5,
    logs_capture_runs = logs_capture_runs + 1,
    logs_capture_claimed_until = NULL
WHERE {_APPLIES}
RETURNING true
"""

_RELEASE_SQL = """
UPDATE downtime_incidents SET logs_capture_claimed_until = NULL
WHERE incident_id = $1 AND logs_capture_status = 'pending' AND logs_capture_due_at = $2
"""

_GET_SQL = f"""
SELECT {rows.INCIDENT_COLUMNS}, {_PLAN_COLUMNS}, logs_file_path,
       logs_captured::text AS logs_captured, log_analysis::text AS log_analysis
FROM downtime_incidents WHERE incident_id = $1
"""


def _seconds(value: timedelta) -> float:
    return value.total_seconds()


def plan_from_row(row: Mapping[str, Any]) -> CapturePlan:
    """The stored plan. No query (incidents from before log capture) means nothing to run."""
    state = row["logs_capture_status"]
    query = row["logs_query"]
    enabled = state != LogCaptureState.DISABLED.value and query is not None
    before = row["logs_before_seconds"]
    after = row["logs_after_seconds"]
    reason = None
    if not enabled:
        reason = row["logs_capture_error"] or "no log capture was planned for this incident"
    return CapturePlan(
        enabled=enabled,
        query=query,
        before=timedelta(minutes=5) if before is None else timedelta(seconds=before),
        after=DEFAULT_AFTER if after is None else timedelta(seconds=after),
        max_lines=row["logs_max_lines"] or 10000,
        storage=LogStorage(row["logs_storage"] or LogStorage.AUTO.value),
        disabled_reason=reason,
    )


def stored_capture(row: Mapping[str, Any], incident: Incident, keys: LogKeyRing) -> StoredCapture:
    """The capture columns of a row (JSON as text, due time decoded) as a ``StoredCapture``;
    raises SealedDataError when the captured logs cannot be opened (never served)."""
    row = opened(keys, row, LOGS_SEALED, strict=True)
    state = row["logs_capture_status"]
    return StoredCapture(
        incident=incident,
        plan=plan_from_row(row),
        state=LogCaptureState(state) if state else None,
        due_at=row["logs_capture_due_at"],
        records=_json(row["logs_captured"]),
        file_path=row["logs_file_path"],
        analysis=_json(row["log_analysis"]),
    )


def captured_values(
    keys: LogKeyRing, incident_id: UUID, result: CaptureResult, file_path: str | None
) -> tuple[str | None, str | None]:
    """``logs_captured`` (None when the entries are in a file) and ``log_analysis`` of a captured
    run, as sealed JSON text."""
    records = None if file_path is not None else rows.to_json_text(result.records)
    analysis = None if result.analysis is None else rows.to_json_text(result.analysis.to_dict())
    return (
        seal_stored(keys, incident_id, "logs_captured", records),
        seal_stored(keys, incident_id, "log_analysis", analysis),
    )


class PostgresLogCaptures:
    """Implements ``LogCaptureStore``; shares the incident store's pool."""

    def __init__(self, pool: asyncpg.Pool[Any], keys: LogKeyRing | None = None) -> None:
        self._pool = pool
        self._keys = LogKeyRing() if keys is None else keys

    async def schedule_log_capture(
        self, incident_id: UUID, *, plan: CapturePlan, due_at: datetime
    ) -> None:
        state = LogCaptureState.PENDING if plan.enabled else LogCaptureState.DISABLED
        await self._pool.execute(
            _SCHEDULE_SQL,
            incident_id,
            rows.clean_text(plan.query),
            _seconds(plan.before),
            _seconds(plan.after),
            plan.max_lines,
            plan.storage.value,
            state.value,
            rows.require_aware(due_at, "due_at") if plan.enabled else None,
            plan.disabled_reason,
        )

    async def claim_due_log_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> PendingCapture | None:
        row = await self._pool.fetchrow(
            _CLAIM_SQL, rows.require_aware(now, "now"), rows.require_aware(lease_until, "lease")
        )
        if row is None:
            return None
        return PendingCapture(
            incident=rows.incident_from_row(row, self._keys),
            plan=plan_from_row(row),
            due_at=row["logs_capture_due_at"],
            file_path=row["logs_file_path"],
        )

    async def record_log_capture(
        self,
        incident_id: UUID,
        *,
        result: CaptureResult,
        due_at: datetime | None,
        file_path: str | None = None,
    ) -> bool:
        common = (incident_id, due_at, result.captured_at, result.state.value)
        if result.state is not LogCaptureState.CAPTURED:
            applied = await self._pool.fetchval(
                _RECORD_NOT_CAPTURED_SQL, *common, rows.clean_text(result.error)
            )
            return bool(applied)
        window = result.window
        records, analysis = captured_values(self._keys, incident_id, result, file_path)
        applied = await self._pool.fetchval(
            _RECORD_CAPTURED_SQL,
            *common,
            records,
            file_path,
            len(result.records),
            result.truncated,
            result.available,
            analysis,
            None if window is None else window.start,
            None if window is None else window.end,
        )
        return bool(applied)

    async def release_log_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        await self._pool.execute(_RELEASE_SQL, incident_id, due_at)

    async def get_log_capture(self, incident_id: UUID) -> StoredCapture | None:
        row = await self._pool.fetchrow(_GET_SQL, incident_id)
        return (
            None
            if row is None
            else stored_capture(row, rows.incident_from_row(row, self._keys), self._keys)
        )


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
