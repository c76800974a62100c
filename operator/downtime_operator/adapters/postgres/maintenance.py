"""``MaintenanceLedger`` in PostgreSQL: ``downtime_maintenance_periods`` (migration 0008)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from downtime_operator.adapters.postgres.rows import require_aware
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import Span


class PostgresMaintenanceLedger:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def open_maintenance(self, *, monitor: MonitorRef, at: datetime, reason: str) -> None:
        await self._pool.execute(
            """
            INSERT INTO downtime_maintenance_periods
                (monitor_namespace, monitor_name, started_at, reason)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (monitor_namespace, monitor_name) WHERE ended_at IS NULL DO NOTHING
            """,
            monitor.namespace,
            monitor.name,
            require_aware(at, "at"),
            reason,
        )

    async def close_maintenance(self, *, monitor: MonitorRef, at: datetime) -> None:
        await self._pool.execute(
            """
            UPDATE downtime_maintenance_periods SET ended_at = GREATEST($3, started_at)
            WHERE monitor_namespace = $1 AND monitor_name = $2 AND ended_at IS NULL
            """,
            monitor.namespace,
            monitor.name,
            require_aware(at, "at"),
        )

    async def maintenance_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[Span]]:
        until = require_aware(until, "until")
        found = await self._pool.fetch(
            """
            SELECT monitor_namespace, monitor_name, started_at,
                   LEAST(COALESCE(ended_at, $2), $2) AS ended_at
            FROM downtime_maintenance_periods
            WHERE started_at < $2 AND COALESCE(ended_at, $2) > $1
            ORDER BY started_at
            """,
            require_aware(since, "since"),
            until,
        )
        spans: dict[MonitorRef, list[Span]] = {}
        for row in found:
            monitor = MonitorRef(namespace=row["monitor_namespace"], name=row["monitor_name"])
            spans.setdefault(monitor, []).append((row["started_at"], row["ended_at"]))
        return spans
