"""Statistics are exact: clipping at the period start, ongoing incidents, overlaps in a monitor.

The fixture, with now = T and the 1-day period [T-1d, T):

    monitor        incident                          in period   clipped   full
    default/api    A  T-1d-1h .. T-1d+2h  resolved   yes         2h        3h
    default/api    B  T-1d+1h .. T-1d+3h  resolved   yes         2h        2h   (overlaps A)
    default/api    C  T-30m   .. now      ongoing    yes         30m
    team/web       D  T-3d    .. T-2d     resolved   no (before)
    team/web       E  T-10h   .. T-9h     resolved   yes         1h        1h   critical
    default/db     G  T-1d-1h .. T-1d     resolved   no (ends exactly at the start)
    default/cache  H  T-2d    .. now      investig.  yes         24h            medium
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from tests.support.api import KEYS, ApiUnderTest, clear, insert_incident, serve_api

from downtime_operator.domain.models import IncidentStatus, Severity

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture(scope="module")
async def api(migrated_dsn: str) -> AsyncIterator[ApiUnderTest]:
    async with serve_api(migrated_dsn) as served:
        await clear(served.pool)
        served.clock.pinned = T
        pool = served.pool
        await insert_incident(pool, name="api", started_at=T - D - H, ended_at=T - D + 2 * H)
        await insert_incident(pool, name="api", started_at=T - D + H, ended_at=T - D + 3 * H)
        await insert_incident(pool, name="api", started_at=T - H / 2)
        await insert_incident(
            pool, name="web", namespace="team", started_at=T - 3 * D, ended_at=T - 2 * D
        )
        await insert_incident(
            pool,
            name="web",
            namespace="team",
            started_at=T - 10 * H,
            ended_at=T - 9 * H,
            severity=Severity.CRITICAL,
        )
        await insert_incident(pool, name="db", started_at=T - D - H, ended_at=T - D)
        await insert_incident(
            pool,
            name="cache",
            started_at=T - 2 * D,
            status=IncidentStatus.INVESTIGATING,
            severity=Severity.MEDIUM,
        )
        yield served


async def statistics(api: ApiUnderTest, days: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEYS['ops']}"}) as session,
        session.get(api.url("/admin/downtime/statistics"), params={"days": days}) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


def uptime(downtime: float, days: int) -> float:
    return round(100 * (1 - downtime / (days * 86400)), 3)


async def test_one_day_clips_counts_ongoing_and_unions_overlaps(api: ApiUnderTest) -> None:
    body = await statistics(api, 1)
    assert body["period_start"] == "2026-05-31T12:00:00Z"
    assert body["period_end"] == "2026-06-01T12:00:00Z"
    total = 7200 + 7200 + 1800 + 3600 + 86400
    assert body["statistics"] == {
        "total_incidents": 5,
        "total_downtime_seconds": total,
        "average_duration_seconds": total / 5,
        "by_severity": {"high": 3, "critical": 1, "medium": 1},
        "by_status": {"resolved": 3, "ongoing": 1, "investigating": 1},
        "mttr_seconds": (10800 + 7200 + 3600) / 3,  # full durations of A, B, E
        "longest_incident_seconds": 86400.0,  # H, clipped to the period
        "monitors": [
            # A and B overlap by an hour: the union is 3h, not 4h; plus C's 30 minutes.
            {
                "namespace": "default",
                "name": "api",
                "incidents": 3,
                "downtime_seconds": 10800.0 + 1800.0,
                "uptime_percent": uptime(12600, 1),
            },
            {
                "namespace": "default",
                "name": "cache",
                "incidents": 1,
                "downtime_seconds": 86400.0,
                "uptime_percent": 0.0,
            },
            {
                "namespace": "team",
                "name": "web",
                "incidents": 1,
                "downtime_seconds": 3600.0,
                "uptime_percent": uptime(3600, 1),
            },
        ],
    }


async def test_thirty_days_take_everything_whole(api: ApiUnderTest) -> None:
    stats = (await statistics(api, 30))["statistics"]
    assert stats["total_incidents"] == 7
    assert stats["total_downtime_seconds"] == 10800 + 7200 + 1800 + 86400 + 3600 + 3600 + 172800
    assert stats["longest_incident_seconds"] == 172800.0
    assert stats["mttr_seconds"] == (10800 + 7200 + 86400 + 3600 + 3600) / 5
    downtime = {(m["namespace"], m["name"]): m["downtime_seconds"] for m in stats["monitors"]}
    assert downtime == {
        ("default", "api"): 14400.0 + 1800.0,  # A and B whole: T-1d-1h .. T-1d+3h
        ("default", "cache"): 172800.0,
        ("default", "db"): 3600.0,
        ("team", "web"): 86400.0 + 3600.0,
    }


async def test_an_empty_period(api: ApiUnderTest) -> None:
    api.clock.pinned = T - 30 * D
    try:
        body = await statistics(api, 7)
    finally:
        api.clock.pinned = T
    assert body["statistics"] == {
        "total_incidents": 0,
        "total_downtime_seconds": 0.0,
        "average_duration_seconds": 0.0,
        "by_severity": {},
        "by_status": {},
        "mttr_seconds": None,
        "longest_incident_seconds": 0.0,
        "monitors": [],
    }


# -- Against a brute-force count, through writes that move the rollups ------------------------

MICRO = timedelta(microseconds=1)


def micros(start: datetime, end: datetime) -> int:
    return max(0, (end - start) // MICRO)


def brute_force(rows: list[dict[str, Any]], since: datetime, until: datetime) -> dict[str, Any]:
    """The statistics by definition, from every row: what the rollups must agree with."""
    inside = [
        r
        for r in rows
        if (r["ended_at"] is None or r["ended_at"] > since) and r["started_at"] < until
    ]

    def span(r: dict[str, Any]) -> tuple[datetime, datetime]:
        end = until if r["ended_at"] is None else min(r["ended_at"], until)
        return max(r["started_at"], since), end

    clipped = [micros(*span(r)) for r in inside]
    resolved = [
        micros(r["started_at"], r["ended_at"])
        for r in inside
        if r["status"] == "resolved" and r["ended_at"] <= until
    ]
    by_severity: dict[str, int] = {}
    by_status: dict[str, int] = {}
    monitors: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for r in inside:
        by_severity[r["severity"]] = by_severity.get(r["severity"], 0) + 1
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        if r["monitor_name"] is not None:
            key = (r["monitor_namespace"], r["monitor_name"])
            monitors.setdefault(key, []).append(span(r))
    days = (until - since) / timedelta(days=1)
    out_monitors = []
    for (namespace, name), spans in sorted(monitors.items()):
        union = 0
        covered: datetime | None = None
        for start, end in sorted(spans):
            union += micros(start if covered is None else max(start, covered), end)
            covered = end if covered is None else max(covered, end)
        out_monitors.append(
            {
                "namespace": namespace,
                "name": name,
                "incidents": len(spans),
                "downtime_seconds": union / 1e6,
                "uptime_percent": uptime(union / 1e6, int(days)),
            }
        )
    return {
        "total_incidents": len(inside),
        "total_downtime_seconds": sum(clipped) / 1e6,
        "average_duration_seconds": sum(clipped) / 1e6 / len(inside) if inside else 0.0,
        "by_severity": by_severity,
        "by_status": by_status,
        "mttr_seconds": sum(resolved) / 1e6 / len(resolved) if resolved else None,
        "longest_incident_seconds": max(clipped, default=0) / 1e6,
        "monitors": out_monitors,
    }


async def random_incidents(pool: Any, rng: random.Random, now: datetime) -> None:
    """Incidents of four monitors over 40 days: overlapping ones, zero-length ones, ones on day
    boundaries, one open per monitor, resolved ones ending "in the future" (a clock ahead)."""
    severities = ["low", "medium", "high", "critical"]
    for m in range(4):
        namespace, name = f"ns-{m % 2}", f"svc-{m}"
        at = now - timedelta(days=40) + timedelta(minutes=rng.randrange(0, 600))
        for _ in range(rng.randrange(25, 40)):
            if rng.random() < 0.1:
                at = at.replace(hour=0, minute=0, second=0, microsecond=0)
            length = timedelta(
                microseconds=rng.choice(
                    [0, 1, rng.randrange(1, 10**10), rng.randrange(1, 2 * 10**11)]
                )
            )
            await insert_row(
                pool,
                namespace=namespace,
                name=name,
                started=at,
                ended=at + length,
                severity=rng.choice(severities),
            )
            if rng.random() < 0.2:  # an overlapping one, as old rows or a replay can leave
                inner = at + length * rng.random()
                await insert_row(
                    pool,
                    namespace=namespace,
                    name=name,
                    started=inner,
                    ended=inner + timedelta(hours=rng.randrange(0, 50)),
                    severity=rng.choice(severities),
                )
            at += length + timedelta(minutes=rng.randrange(1, 1500))
        if m < 3:
            status = "ongoing" if m else "investigating"
            await insert_row(
                pool,
                namespace=namespace,
                name=name,
                started=at,
                ended=None,
                severity=rng.choice(severities),
                status=status,
            )
    ahead = now - timedelta(days=rng.randrange(2, 9))
    await insert_row(
        pool, namespace="ns-1", name="svc-3", started=ahead, ended=now + timedelta(seconds=5)
    )
    yesterday = now - timedelta(days=1)  # a row of the seed's monitor: no monitor recorded
    await insert_row(pool, namespace=None, name=None, started=yesterday, ended=now)


async def insert_row(
    pool: Any,
    *,
    namespace: str | None,
    name: str | None,
    started: datetime,
    ended: datetime | None,
    severity: str = "high",
    status: str = "resolved",
) -> None:
    await pool.execute(
        "INSERT INTO downtime_incidents (incident_id, monitor_namespace, monitor_name, k8s_name,"
        " health_endpoint, started_at, detected_at, ended_at, severity, status)"
        " VALUES (gen_random_uuid(), $1, $2, $2, 'http://x/health', $3, $3, $4, $5, $6)",
        namespace,
        name,
        started,
        ended,
        severity,
        status,
    )


async def churn(pool: Any, rng: random.Random, now: datetime) -> None:
    """Writes after the fact: resolve, re-severity, delete, move an incident's start."""
    await pool.execute(
        "UPDATE downtime_incidents SET status = 'resolved', ended_at = GREATEST(started_at, $1)"
        " WHERE monitor_name = 'svc-1' AND status <> 'resolved'",
        now - timedelta(hours=rng.randrange(0, 5)),
    )
    ids = [r["incident_id"] for r in await pool.fetch("SELECT incident_id FROM downtime_incidents")]
    rng.shuffle(ids)
    for incident_id in ids[:6]:
        await pool.execute("DELETE FROM downtime_incidents WHERE incident_id = $1", incident_id)
    for incident_id in ids[6:12]:
        await pool.execute(
            "UPDATE downtime_incidents SET severity = 'critical' WHERE incident_id = $1",
            incident_id,
        )
    for incident_id in ids[12:16]:
        await pool.execute(
            "UPDATE downtime_incidents SET started_at = started_at - $2::interval,"
            " detected_at = started_at - $2::interval WHERE incident_id = $1",
            incident_id,
            timedelta(hours=rng.randrange(1, 60)),
        )


async def rollups_are_consistent(pool: Any) -> None:
    """What the triggers maintained equals what a recomputation from the rows gives."""
    stale = await pool.fetchval(
        """
        SELECT count(*) FROM downtime_incidents i JOIN (
            SELECT incident_id, max(COALESCE(ended_at, 'infinity'::timestamptz)) OVER (
                PARTITION BY monitor_namespace, monitor_name ORDER BY started_at, incident_id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered
            FROM downtime_incidents WHERE monitor_name IS NOT NULL
        ) w USING (incident_id)
        WHERE i.covered_before IS DISTINCT FROM w.covered
        """
    )
    assert stale == 0
    differences = await pool.fetchval(
        """
        SELECT count(*) FROM (
            (SELECT day, severity, incidents, micros, longest_micros FROM downtime_incident_days
             EXCEPT
             SELECT (started_at AT TIME ZONE 'UTC')::date, severity, count(*)::int,
                    sum(downtime_micros(started_at, ended_at))::bigint,
                    max(downtime_micros(started_at, ended_at))
             FROM downtime_incidents WHERE status = 'resolved' GROUP BY 1, 2)
            UNION ALL
            (SELECT (started_at AT TIME ZONE 'UTC')::date, severity, count(*)::int,
                    sum(downtime_micros(started_at, ended_at))::bigint,
                    max(downtime_micros(started_at, ended_at))
             FROM downtime_incidents WHERE status = 'resolved' GROUP BY 1, 2
             EXCEPT
             SELECT day, severity, incidents, micros, longest_micros FROM downtime_incident_days)
        ) d
        """
    )
    assert differences == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_statistics_equal_a_brute_force_count(migrated_dsn: str, seed: int) -> None:
    rng = random.Random(seed)
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=rng.randrange(86400))
    async with serve_api(migrated_dsn) as api:
        await clear(api.pool)
        await random_incidents(api.pool, rng, now)
        for phase in ("as written", "after churn"):
            await rollups_are_consistent(api.pool)
            rows = [dict(r) for r in await api.pool.fetch("SELECT * FROM downtime_incidents")]
            for moment in (now, now.replace(hour=0, minute=0, second=0, microsecond=0), now - D):
                api.clock.pinned = moment
                for days in (1, 2, 7, 30, 45):
                    body = await statistics(api, days)
                    expected = brute_force(rows, moment - days * D, moment)
                    assert body["statistics"] == expected, (phase, moment, days)
            await churn(api.pool, rng, now)
        # The set-based rebuild (migration, bulk loads) agrees with what the triggers kept.
        kept = await rollup_tables(api.pool)
        await api.pool.execute("SELECT downtime_rebuild_rollups()")
        assert await rollup_tables(api.pool) == kept


async def rollup_tables(pool: Any) -> list[list[tuple[Any, ...]]]:
    return [
        [tuple(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4")]
        for table in ("downtime_incident_days", "downtime_monitor_spans")
    ]
