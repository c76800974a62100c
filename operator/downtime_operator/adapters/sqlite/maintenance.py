"""``MaintenanceLedger`` in SQLite: ``downtime_maintenance_periods`` (``schema``)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from downtime_operator.adapters.sqlite.columns import parse_timestamp, timestamp
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import Span


class SqliteMaintenanceLedger:
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def open_maintenance(self, *, monitor: MonitorRef, at: datetime, reason: str) -> None:
        started = timestamp(at, "at")

        def record(conn: sqlite3.Connection) -> None:
            with self._db.write():
                conn.execute(
                    "INSERT INTO downtime_maintenance_periods"
                    " (monitor_namespace, monitor_name, started_at, reason) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (monitor_namespace, monitor_name) WHERE ended_at IS NULL"
                    " DO NOTHING",
                    (monitor.namespace, monitor.name, started, reason),
                )

        await self._db.run(record, self._db.conn)

    async def close_maintenance(self, *, monitor: MonitorRef, at: datetime) -> None:
        ended = timestamp(at, "at")

        def record(conn: sqlite3.Connection) -> None:
            # Fixed-width UTC text: MAX of the texts is the later instant (see ``schema``).
            with self._db.write():
                conn.execute(
                    "UPDATE downtime_maintenance_periods SET ended_at = MAX(?, started_at)"
                    " WHERE monitor_namespace = ? AND monitor_name = ? AND ended_at IS NULL",
                    (ended, monitor.namespace, monitor.name),
                )

        await self._db.run(record, self._db.conn)

    async def maintenance_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[Span]]:
        params = {"since": timestamp(since, "since"), "until": timestamp(until, "until")}

        def fetch(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
            return list(
                conn.execute(
                    "SELECT monitor_namespace, monitor_name, started_at,"
                    " MIN(COALESCE(ended_at, :until), :until)"
                    " FROM downtime_maintenance_periods"
                    " WHERE started_at < :until AND COALESCE(ended_at, :until) > :since"
                    " ORDER BY started_at",
                    params,
                )
            )

        spans: dict[MonitorRef, list[Span]] = {}
        for namespace, name, started, ended in await self._db.run(fetch, self._db.conn):
            start, end = parse_timestamp(started), parse_timestamp(ended)
            assert start is not None and end is not None  # NOT NULL, and COALESCEd
            spans.setdefault(MonitorRef(namespace=namespace, name=name), []).append((start, end))
        return spans
