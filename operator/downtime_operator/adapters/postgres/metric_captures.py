"""``MetricsCaptureStore`` on PostgreSQL: Prometheus queries planned, claimed and recorded with
the incident (migrations 0010 and 0011).

The rules are the log capture's (``log_captures``): a claim is a lease taken with ``FOR UPDATE
SKIP LOCKED``; a result is written only while the run is still due at the time it was claimed
for, so each due run is recorded once and one overtaken by the resolution is dropped. The
result goes into ``metrics_snapshot`` under ``prometheus``, set inside the stored object, so the
runner's own snapshot (its checks) and this one never overwrite each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from downtime_operator.adapters.postgres.rows import require_aware, to_json_text
from downtime_operator.domain.prometheus import (
    DueMetricsCapture,
    MetricsPlan,
    plan_from_json,
    plan_json,
)


def final_metrics_capture_on_resolve(ended_at: str) -> str:
    """SET item for a resolving UPDATE: planned queries are due again ``after`` past the end
    (``ended_at`` is the statement's parameter)."""
    return (
        "metrics_capture_due_at = CASE WHEN metrics_queries IS NULL THEN NULL"
        f" ELSE GREATEST({ended_at}, started_at)"
        " + make_interval(secs => (metrics_queries->>'after_seconds')::double precision) END"
    )


_SCHEDULE_SQL = """
UPDATE downtime_incidents
SET metrics_queries = $2::text::jsonb, metrics_capture_due_at = $3
WHERE incident_id = $1 AND metrics_queries IS NULL
"""

_CLAIM_SQL = """
UPDATE downtime_incidents SET metrics_capture_claimed_until = $2
WHERE incident_id = (
    SELECT incident_id FROM downtime_incidents
    WHERE metrics_capture_due_at <= $1
      AND (metrics_capture_claimed_until IS NULL OR metrics_capture_claimed_until <= $1)
    ORDER BY metrics_capture_due_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING incident_id, started_at, ended_at, metrics_queries::text AS metrics_queries,
          metrics_capture_due_at
"""

# The run is done: nothing is due until a resolution makes the final one due.
_RECORD_SQL = """
UPDATE downtime_incidents
SET metrics_snapshot = jsonb_set(COALESCE(metrics_snapshot, '{}'::jsonb), '{prometheus}',
                                 $3::text::jsonb),
    metrics_capture_due_at = NULL,
    metrics_capture_claimed_until = NULL,
    metrics_capture_runs = metrics_capture_runs + 1
WHERE incident_id = $1 AND metrics_capture_due_at = $2
RETURNING true
"""

_DROP_SQL = "UPDATE downtime_incidents SET metrics_capture_due_at = NULL WHERE incident_id = $1"

_RELEASE_SQL = """
UPDATE downtime_incidents SET metrics_capture_claimed_until = NULL
WHERE incident_id = $1 AND metrics_capture_due_at = $2
"""


def due_capture(row: Any, *, due_at: datetime) -> DueMetricsCapture | None:
    """The claimed row as a run; None when its plan is unreadable (written by someone else)."""
    plan = plan_from_json(row["metrics_queries"])
    if plan is None:
        return None
    return DueMetricsCapture(
        incident_id=UUID(str(row["incident_id"])),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        plan=plan,
        due_at=due_at,
    )


class PostgresMetricCaptures:
    """Implements ``MetricsCaptureStore``; shares the incident store's pool."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def schedule_metrics_capture(
        self, incident_id: UUID, *, plan: MetricsPlan, due_at: datetime
    ) -> None:
        await self._pool.execute(
            _SCHEDULE_SQL,
            incident_id,
            to_json_text(plan_json(plan)),
            require_aware(due_at, "due_at"),
        )

    async def claim_due_metrics_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> DueMetricsCapture | None:
        row = await self._pool.fetchrow(
            _CLAIM_SQL, require_aware(now, "now"), require_aware(lease_until, "lease")
        )
        if row is None:
            return None
        due = due_capture(row, due_at=row["metrics_capture_due_at"])
        if due is None:
            # An unreadable plan is dropped rather than claimed again and again.
            await self._pool.execute(_DROP_SQL, row["incident_id"])
        return due

    async def record_metrics_capture(
        self, incident_id: UUID, *, capture: dict[str, Any], due_at: datetime
    ) -> bool:
        applied = await self._pool.fetchval(_RECORD_SQL, incident_id, due_at, to_json_text(capture))
        return bool(applied)

    async def release_metrics_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        await self._pool.execute(_RELEASE_SQL, incident_id, due_at)
