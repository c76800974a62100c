"""``MetricsCaptureStore`` on the SQLite file (schema versions 8 and 9).

The same rules as ``adapters.postgres.metric_captures``; a claim is a ``BEGIN IMMEDIATE``
transaction here, exclusive against other processes on the same file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from downtime_operator.adapters.postgres.metric_captures import due_capture
from downtime_operator.adapters.postgres.rows import to_json_text
from downtime_operator.adapters.sqlite import columns
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.domain.prometheus import DueMetricsCapture, MetricsPlan, plan_json

_SCHEDULE_SQL = """
UPDATE downtime_incidents SET metrics_queries = :plan, metrics_capture_due_at = :due_at
WHERE incident_id = :id AND metrics_queries IS NULL
"""

_DUE_SQL = """
SELECT incident_id, started_at, ended_at, metrics_queries, metrics_capture_due_at
FROM downtime_incidents
WHERE metrics_capture_due_at IS NOT NULL AND metrics_capture_due_at <= :now
  AND (metrics_capture_claimed_until IS NULL OR metrics_capture_claimed_until <= :now)
ORDER BY metrics_capture_due_at
LIMIT 1
"""

_RECORD_SQL = """
UPDATE downtime_incidents
SET metrics_snapshot = json_set(COALESCE(metrics_snapshot, '{}'), '$.prometheus', json(:capture)),
    metrics_capture_due_at = NULL,
    metrics_capture_claimed_until = NULL,
    metrics_capture_runs = metrics_capture_runs + 1,
    updated_at = :now
WHERE incident_id = :id AND metrics_capture_due_at = :due
"""


def final_metrics_due(metrics_queries: str | None, *, ended_at: datetime) -> str | None:
    """The final run's due time (stored text) for a resolve at ``ended_at``; None when nothing
    was planned, as PostgreSQL's ``final_metrics_capture_on_resolve`` computes it."""
    if metrics_queries is None:
        return None
    after = float(json.loads(metrics_queries)["after_seconds"])
    return columns.timestamp(ended_at + timedelta(seconds=after), "due_at")


class SqliteMetricCaptures:
    """Implements ``MetricsCaptureStore``; shares the incident store's ``SqliteDatabase``."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def schedule_metrics_capture(
        self, incident_id: UUID, *, plan: MetricsPlan, due_at: datetime
    ) -> None:
        params = {
            "id": str(incident_id),
            "plan": to_json_text(plan_json(plan)),
            "due_at": columns.timestamp(due_at, "due_at"),
        }

        def schedule() -> None:
            with self._db.write() as conn:
                conn.execute(_SCHEDULE_SQL, params)

        await self._db.run(schedule)

    async def claim_due_metrics_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> DueMetricsCapture | None:
        now_text = columns.timestamp(now, "now")
        lease_text = columns.timestamp(lease_until, "lease")

        def claim() -> DueMetricsCapture | None:
            with self._db.write() as conn:
                row = conn.execute(_DUE_SQL, {"now": now_text}).fetchone()
                if row is None:
                    return None
                due = due_capture(
                    {
                        "incident_id": row["incident_id"],
                        "started_at": columns.parse_timestamp(row["started_at"]),
                        "ended_at": columns.parse_timestamp(row["ended_at"]),
                        "metrics_queries": row["metrics_queries"],
                    },
                    due_at=_required(columns.parse_timestamp(row["metrics_capture_due_at"])),
                )
                # An unreadable plan is dropped rather than claimed again and again.
                conn.execute(
                    "UPDATE downtime_incidents SET metrics_capture_claimed_until = ?,"
                    " metrics_capture_due_at = ? WHERE incident_id = ?",
                    (
                        lease_text,
                        None if due is None else row["metrics_capture_due_at"],
                        row["incident_id"],
                    ),
                )
                return due

        return await self._db.run(claim)

    async def record_metrics_capture(
        self, incident_id: UUID, *, capture: dict[str, Any], due_at: datetime
    ) -> bool:
        params = {
            "id": str(incident_id),
            "capture": to_json_text(capture),
            "due": columns.timestamp(due_at, "due_at"),
            "now": columns.timestamp(datetime.now(UTC), "now"),
        }

        def record() -> bool:
            with self._db.write() as conn:
                return conn.execute(_RECORD_SQL, params).rowcount > 0

        return await self._db.run(record)

    async def release_metrics_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        params = (str(incident_id), columns.timestamp(due_at, "due_at"))

        def release() -> None:
            with self._db.write() as conn:
                conn.execute(
                    "UPDATE downtime_incidents SET metrics_capture_claimed_until = NULL"
                    " WHERE incident_id = ? AND metrics_capture_due_at = ?",
                    params,
                )

        await self._db.run(release)


def _required(moment: datetime | None) -> datetime:
    assert moment is not None  # selected by a due time
    return moment
