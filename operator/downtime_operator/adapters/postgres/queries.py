"""The admin API's queries on PostgreSQL: paged lists, period statistics, guarded transitions.

Separate from ``store.py`` (the monitoring services' port) because these answer people, not the
runner: keyset pages, statistics computed in one statement, and resolve/acknowledge that only
act on an incident that is still open. As in the store, every value is a ``$n`` parameter and
the SQL text is assembled from constants only; ``list_query`` and ``STATISTICS_SQL`` are public
so the benchmark can EXPLAIN exactly what the API runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres import rows
from downtime_operator.adapters.postgres.log_captures import final_capture_on_resolve
from downtime_operator.domain.models import Incident
from downtime_operator.domain.statistics import MICROS, MonitorDowntime, PeriodStatistics
from downtime_operator.services.admin_ports import (
    IncidentAlreadyResolvedError,
    IncidentFilter,
    IncidentPage,
    PageCursor,
    StoreUnavailableError,
)

LIST_COLUMNS = (
    "incident_id, monitor_namespace, monitor_name, k8s_name, health_endpoint, environment,"
    " started_at, detected_at, ended_at, duration_seconds, severity, status, error_message,"
    " http_status_code, failed_checks, notes, logs_capture_status, logs_count, logs_truncated,"
    " logs_file_path, created_at, updated_at"
)
"""A list row: everything but the bulky columns (response body, captured logs, JSON blobs)."""

_NEWEST_FIRST = "ORDER BY started_at DESC, incident_id DESC"

_SPAN = "tstzrange(started_at, COALESCE(ended_at, 'infinity'::timestamptz))"
"""The expression of the span index (migration 0004): the planner only uses it verbatim."""

FUTURE_END_SQL = f"""
SELECT min(started_at) FROM downtime_incidents
WHERE {_SPAN} && tstzrange($1, NULL) AND status = 'resolved' AND ended_at > $1
"""
"""The earliest start of a resolved incident that ends after the period (a clock ahead of ours).

Whole days are read from the rollups only up to that incident's day, so the rollups never hold
an incident that the period cuts at its end.
"""

_EDGE_COLUMNS = (
    "severity, status, monitor_namespace, monitor_name, started_at, ended_at,"
    " GREATEST(started_at, $1) AS clip_start,"
    " LEAST(COALESCE(ended_at, $2), $2) AS clip_end,"
    " GREATEST(started_at, $1, covered_before) AS fresh_start"
)
"""Clipped bounds computed here, so that ``downtime_micros`` gets plain columns: with an
expression argument used twice in its body PostgreSQL will not inline it, and a real function
call per row costs more than the rest of the row's work."""
_OVERLAPS_START = "COALESCE(ended_at, 'infinity'::timestamptz) > $1"

STATISTICS_SQL = f"""
WITH edge AS MATERIALIZED (
    -- Partial first day, and the last partial day (or the whole period without full days).
    SELECT {_EDGE_COLUMNS} FROM downtime_incidents
    WHERE started_at >= $1 AND started_at < $3 AND {_OVERLAPS_START}
    UNION ALL
    SELECT {_EDGE_COLUMNS} FROM downtime_incidents
    WHERE started_at >= $4 AND started_at < $2 AND {_OVERLAPS_START}
    UNION ALL
    -- Began before the period and still running at its start.
    SELECT {_EDGE_COLUMNS} FROM downtime_incidents
    WHERE {_SPAN} @> $1 AND started_at < $1
    UNION ALL
    -- Began on a whole day but still open: never in the rollups.
    SELECT {_EDGE_COLUMNS} FROM downtime_incidents
    WHERE status IN ('ongoing', 'investigating') AND started_at >= $3 AND started_at < $4
),
exact AS (
    SELECT severity, status, COALESCE(monitor_namespace, '') AS monitor_namespace, monitor_name,
           downtime_micros(clip_start, clip_end) AS micros,
           downtime_micros(fresh_start, clip_end) AS union_micros,
           CASE WHEN status = 'resolved' AND ended_at <= $2
                THEN downtime_micros(started_at, ended_at) END AS resolved_micros
    FROM edge
),
groups AS (
    SELECT severity, status, count(*) AS incidents, sum(micros) AS micros,
           max(micros) AS longest, count(resolved_micros) AS resolved,
           sum(resolved_micros) AS resolved_micros
    FROM exact
    GROUP BY severity, status
    UNION ALL
    -- Whole days: every incident there is resolved, ended in the period and lies inside it.
    SELECT severity, 'resolved', sum(incidents), sum(micros), max(longest_micros),
           sum(incidents), sum(micros)
    FROM downtime_incident_days
    WHERE day >= $5 AND day < $6
    GROUP BY severity
),
monitors AS (
    SELECT monitor_namespace, monitor_name, sum(incidents) AS incidents,
           sum(union_micros) AS union_micros
    FROM (
        SELECT monitor_namespace, monitor_name, 1 AS incidents, union_micros
        FROM exact WHERE monitor_name IS NOT NULL
        UNION ALL
        SELECT s.monitor_namespace, s.monitor_name, s.incidents, s.union_micros
        FROM unnest($7::smallint[], $8::integer[]) AS span(level, bucket)
        JOIN downtime_monitor_spans s USING (level, bucket)
    ) parts
    GROUP BY monitor_namespace, monitor_name
)
SELECT
    (SELECT COALESCE(json_agg(groups), '[]')::text FROM groups) AS groups,
    (SELECT COALESCE(json_agg(monitors ORDER BY monitor_namespace, monitor_name), '[]')::text
       FROM monitors) AS monitors
"""
"""Whole UTC days [$5, $6) from the rollups; everything else in [$1, $2) row by row.

$3 and $4 are the timestamps of $5 and $6; $7 and $8 the (level, bucket) spans of those days in
``downtime_monitor_spans``. Per-incident figures are whole microseconds.
"""

SPAN_LEVELS = 8
"""The highest level of ``downtime_monitor_spans`` (migration 0004): spans of up to 256 days."""
_EPOCH_DAY = date(1970, 1, 1)


def day_spans(first: date, last: date) -> tuple[list[int], list[int]]:
    """The aligned spans (levels, buckets) that tile the days ``[first, last)`` exactly.

    Greedy from the left: at each step the largest aligned span that still fits, so a range of
    n days takes about 2 * log2(n) spans.
    """
    levels: list[int] = []
    buckets: list[int] = []
    day, end = (first - _EPOCH_DAY).days, (last - _EPOCH_DAY).days
    while day < end:
        level = SPAN_LEVELS
        while level and (day % (1 << level) or day + (1 << level) > end):
            level -= 1
        levels.append(level)
        buckets.append(day >> level)
        day += 1 << level
    return levels, buckets


_DAY = timedelta(days=1)


def _day_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def whole_days(
    *, since: datetime, until: datetime, future_end_from: datetime | None
) -> tuple[datetime, datetime]:
    """The whole UTC days inside ``[since, until)`` that the rollups may answer for.

    They stop before the day of ``future_end_from`` (see FUTURE_END_SQL). Without any, both
    bounds are ``since``: the whole period is then read row by row.
    """
    first = _day_floor(since)
    if first < since:
        first += _DAY
    last = _day_floor(until)
    if future_end_from is not None:
        last = min(last, _day_floor(future_end_from))
    if last <= first:
        return since, since
    return first, last


def statistics_params(
    *, since: datetime, until: datetime, future_end_from: datetime | None
) -> list[Any]:
    first, last = whole_days(since=since, until=until, future_end_from=future_end_from)
    levels, buckets = day_spans(first.date(), last.date())
    return [since, until, first, last, first.date(), last.date(), levels, buckets]


_NOTES = """CASE
        WHEN $2::text IS NULL OR $2::text = '' THEN notes
        WHEN notes IS NULL OR notes = '' THEN $2::text
        ELSE notes || E'\\n' || $2::text
    END"""

_RESOLVE_SQL = f"""
UPDATE downtime_incidents
SET status = 'resolved',
    ended_at = GREATEST($3, started_at),
    duration_seconds = GREATEST(EXTRACT(EPOCH FROM ($3 - started_at))::float8, 0),
    notes = {_NOTES},
    {final_capture_on_resolve("$3")}
WHERE incident_id = $1 AND status <> 'resolved'
RETURNING {rows.INCIDENT_COLUMNS}
"""

_ACKNOWLEDGE_SQL = f"""
UPDATE downtime_incidents
SET status = 'investigating', notes = {_NOTES}
WHERE incident_id = $1 AND status <> 'resolved'
RETURNING {rows.INCIDENT_COLUMNS}
"""

# Whatever the status: the post-mortem is written after the end.
_ANNOTATE_SQL = f"""
UPDATE downtime_incidents
SET root_cause = COALESCE($3::text, root_cause), notes = {_NOTES}
WHERE incident_id = $1
RETURNING {rows.INCIDENT_COLUMNS}
"""


def list_query(
    *, filters: IncidentFilter, limit: int, after: PageCursor | None
) -> tuple[str, list[Any]]:
    """SQL and parameters for one page; asks for one row more to learn if a next page exists."""
    params: list[Any] = []
    conditions: list[str] = []

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    for column, value in filters.equalities().items():
        conditions.append(f"{column} = {bind(value)}")
    if after is not None:
        conditions.append(
            f"(started_at, incident_id) < ({bind(after.started_at)}, {bind(after.incident_id)})"
        )
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    limit_param = bind(limit + 1)
    return (
        f"SELECT {LIST_COLUMNS} FROM downtime_incidents{where} {_NEWEST_FIRST} LIMIT {limit_param}",
        params,
    )


async def _plan_with_values(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute("SET plan_cache_mode = force_custom_plan")


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Nothing to undo: these queries leave no session state but the setting above.

    (asyncpg still rolls back a transaction left open.) The default reset would run RESET ALL,
    dropping that setting, and cost a round trip on every request.
    """


async def connect_pool(dsn: str, *, min_size: int = 0, max_size: int = 5) -> asyncpg.Pool[Any]:
    """A pool for these queries, planned with the values of each call.

    asyncpg prepares statements, and after five runs PostgreSQL may switch to a generic plan
    made for an average parameter: for ``status = $1`` (a rare "investigating" vs. a common
    "resolved") or a period's bounds that can be a poor plan, tens of milliseconds instead of
    one. Planning each call costs well under a millisecond. With ``min_size`` 0 nothing
    connects up front, so an unreachable database is reported by the queries (and /readyz), not
    at start-up.
    """
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_plan_with_values, reset=_keep_session
    )


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Connection trouble or a schema not in place yet becomes the port's StoreUnavailableError
    (503); anything else is a bug."""
    try:
        yield
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
    ) as exc:
        raise StoreUnavailableError(f"PostgreSQL unavailable: {type(exc).__name__}") from exc
    except asyncpg.UndefinedTableError as exc:
        # Served before the migrations ran (the database was down at start, or they are still
        # running): not ready yet, rather than an internal error.
        raise StoreUnavailableError("PostgreSQL schema not migrated yet") from exc


class PostgresIncidentQueries:
    """``IncidentQueries`` and ``IncidentTransitions`` over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool[Any], keys: LogKeyRing | None = None) -> None:
        self._pool = pool
        self._keys = LogKeyRing() if keys is None else keys

    async def list_incidents(
        self, *, filters: IncidentFilter, limit: int, after: PageCursor | None
    ) -> IncidentPage:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        sql, params = list_query(filters=filters, limit=limit, after=after)
        with store_errors():
            found = [dict(r) for r in await self._pool.fetch(sql, *params)]
        return IncidentPage.of(found, limit=limit)

    async def ongoing_incidents(self) -> list[dict[str, Any]]:
        with store_errors():
            found = await self._pool.fetch(
                f"SELECT {LIST_COLUMNS} FROM downtime_incidents"
                f" WHERE status IN ('ongoing', 'investigating') {_NEWEST_FIRST}"
            )
        return [dict(r) for r in found]

    async def incident_details(self, incident_id: UUID) -> dict[str, Any] | None:
        with store_errors():
            row = await self._pool.fetchrow(
                f"SELECT {rows.DETAIL_COLUMNS} FROM downtime_incidents WHERE incident_id = $1",
                incident_id,
            )
        return None if row is None else rows.details_from_row(row, self._keys)

    async def statistics(self, *, since: datetime, until: datetime) -> PeriodStatistics:
        since = rows.require_aware(since, "since")
        until = rows.require_aware(until, "until")
        if until <= since:
            raise ValueError("until must be after since")
        with store_errors():
            async with self._pool.acquire() as conn:
                future_end_from = await conn.fetchval(FUTURE_END_SQL, until)
                params = statistics_params(
                    since=since, until=until, future_end_from=future_end_from
                )
                row = await conn.fetchrow(STATISTICS_SQL, *params)
        assert row is not None  # a SELECT without FROM returns one row
        by_severity: dict[str, int] = {}
        by_status: dict[str, int] = {}
        total = resolved = 0
        micros = resolved_micros = longest = 0
        for group in json.loads(row["groups"]):
            count = int(group["incidents"])
            total += count
            by_severity[group["severity"]] = by_severity.get(group["severity"], 0) + count
            by_status[group["status"]] = by_status.get(group["status"], 0) + count
            micros += int(group["micros"])
            longest = max(longest, int(group["longest"]))
            resolved += int(group["resolved"])
            resolved_micros += int(group["resolved_micros"] or 0)
        return PeriodStatistics.from_micros(
            since=since,
            until=until,
            incidents=total,
            micros=micros,
            by_severity=by_severity,
            by_status=by_status,
            resolved=resolved,
            resolved_micros=resolved_micros,
            longest_micros=longest,
            monitors=[
                MonitorDowntime(
                    m["monitor_namespace"],
                    m["monitor_name"],
                    int(m["incidents"]),
                    int(m["union_micros"]) / MICROS,
                )
                for m in json.loads(row["monitors"])
            ],
        )

    async def ping(self) -> None:
        with store_errors():
            await self._pool.fetchval("SELECT 1")

    # -- IncidentTransitions ---------------------------------------------------------------

    async def resolve_open_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None
    ) -> Incident | None:
        ended_at = rows.require_aware(ended_at, "ended_at")
        with store_errors():
            row = await self._pool.fetchrow(
                _RESOLVE_SQL, incident_id, rows.clean_text(notes), ended_at
            )
        return await self._transitioned(incident_id, row)

    async def acknowledge_open_incident(
        self, incident_id: UUID, *, notes: str | None
    ) -> Incident | None:
        with store_errors():
            row = await self._pool.fetchrow(_ACKNOWLEDGE_SQL, incident_id, rows.clean_text(notes))
        return await self._transitioned(incident_id, row)

    async def annotate_incident(
        self, incident_id: UUID, *, root_cause: str | None, note: str | None
    ) -> Incident | None:
        with store_errors():
            row = await self._pool.fetchrow(
                _ANNOTATE_SQL, incident_id, rows.clean_text(note), rows.clean_text(root_cause)
            )
        return None if row is None else rows.incident_from_row(row, self._keys)

    async def _transitioned(
        self, incident_id: UUID, row: Mapping[str, Any] | None
    ) -> Incident | None:
        if row is not None:
            return rows.incident_from_row(row, self._keys)
        # Nothing matched: unknown, or resolved (nothing ever re-opens a resolved incident, so
        # this read cannot race back to "open").
        with store_errors():
            found = await self._pool.fetchrow(
                f"SELECT {rows.INCIDENT_COLUMNS} FROM downtime_incidents WHERE incident_id = $1",
                incident_id,
            )
        if found is None:
            return None
        raise IncidentAlreadyResolvedError(rows.incident_from_row(found, self._keys))
