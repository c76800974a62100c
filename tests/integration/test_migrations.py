"""Migrations against a real, fresh PostgreSQL database per test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from downtime_operator.adapters.postgres import apply_migrations, load_migrations
from downtime_operator.adapters.postgres.migrations import Migration
from downtime_operator.adapters.postgres.rows import OPEN_INCIDENT_INDEX

DatabaseFactory = Callable[[], Awaitable[str]]

ALL_VERSIONS = [m.version for m in load_migrations()]


def test_migrations_are_packaged_numbered_and_ordered() -> None:
    assert ALL_VERSIONS[0] == "0001_downtime_incidents"
    assert sorted(ALL_VERSIONS) == ALL_VERSIONS
    assert all(v[:4].isdigit() and v[4] == "_" for v in ALL_VERSIONS)
    # The store recognises the one-open-incident violation by this index name.
    assert OPEN_INCIDENT_INDEX in load_migrations()[0].sql
    folder = Path(__file__).parents[2] / "operator/downtime_operator/adapters/postgres/migrations"
    assert sorted(p.stem for p in folder.glob("*.sql")) == ALL_VERSIONS


async def _ledger(conn: asyncpg.Connection) -> list[str]:
    found = await conn.fetch("SELECT version FROM downtime_schema_migrations ORDER BY version")
    return [r["version"] for r in found]


async def test_apply_is_idempotent(make_database: DatabaseFactory) -> None:
    conn = await asyncpg.connect(await make_database())
    try:
        assert await apply_migrations(conn) == ALL_VERSIONS
        assert await apply_migrations(conn) == []
        assert await _ledger(conn) == ALL_VERSIONS
        assert await conn.fetchval("SELECT to_regclass('downtime_incidents') IS NOT NULL")
    finally:
        await conn.close()


async def test_concurrent_apply_runs_each_migration_once(make_database: DatabaseFactory) -> None:
    dsn = await make_database()
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        results = await asyncio.gather(apply_migrations(first), apply_migrations(second))
        assert sorted(results[0] + results[1]) == ALL_VERSIONS  # each applied exactly once
        assert await _ledger(first) == ALL_VERSIONS
    finally:
        await first.close()
        await second.close()


async def test_apply_accepts_a_pool(make_database: DatabaseFactory) -> None:
    async with asyncpg.create_pool(await make_database(), min_size=1, max_size=2) as pool:
        assert await apply_migrations(pool) == ALL_VERSIONS
        assert await apply_migrations(pool) == []


async def test_failed_migration_is_rolled_back_and_not_recorded(
    make_database: DatabaseFactory,
) -> None:
    conn = await asyncpg.connect(await make_database())
    broken = [
        *load_migrations(),
        Migration(version="9999_broken", sql="CREATE TABLE half_done (x int); SELECT 1 / 0;"),
    ]
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await apply_migrations(conn, broken)
        assert await _ledger(conn) == ALL_VERSIONS  # the good ones stay applied
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()


async def test_adopts_a_table_created_by_the_seed(make_database: DatabaseFactory) -> None:
    """A Supabase project that ran the seed's migration keeps its rows and gains the columns."""
    conn = await asyncpg.connect(await make_database())
    try:
        await conn.execute(
            """
            CREATE TABLE downtime_incidents (
                incident_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                started_at timestamptz NOT NULL, detected_at timestamptz NOT NULL,
                ended_at timestamptz, duration_seconds double precision,
                health_endpoint text NOT NULL, error_message text, http_status_code int,
                response_body text,
                status text NOT NULL DEFAULT 'ongoing'
                    CHECK (status IN ('ongoing', 'resolved', 'investigating')),
                severity text NOT NULL DEFAULT 'high'
                    CHECK (severity IN ('low', 'medium', 'high', 'critical')),
                logs_captured jsonb, logs_file_path text, metrics_snapshot jsonb,
                environment text NOT NULL DEFAULT 'production', server_info jsonb, notes text,
                created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
            );
            INSERT INTO downtime_incidents (started_at, detected_at, health_endpoint)
            VALUES (now() - interval '1 hour', now(), 'https://api.example/health');
            """
        )
        assert await apply_migrations(conn) == ALL_VERSIONS
        row = await conn.fetchrow("SELECT health_endpoint, failed_checks FROM downtime_incidents")
        assert row is not None
        assert dict(row) == {"health_endpoint": "https://api.example/health", "failed_checks": 0}
        index = await conn.fetchval("SELECT to_regclass($1)::text", OPEN_INCIDENT_INDEX)
        assert index == OPEN_INCIDENT_INDEX
    finally:
        await conn.close()


VALID = {
    "started_at": "2026-03-01T10:00:00Z",
    "detected_at": "2026-03-01T10:00:30Z",
    "ended_at": None,
    "status": "ongoing",
    "severity": "high",
    "logs_capture_status": None,
    "duration_seconds": None,
}


@pytest.mark.parametrize(
    ("change", "constraint"),
    [
        ({"status": "down"}, "downtime_incidents_status_check"),
        ({"severity": "urgent"}, "downtime_incidents_severity_check"),
        ({"logs_capture_status": "lost"}, "downtime_incidents_logs_capture_status_check"),
        ({"ended_at": "2026-03-01T09:59:59Z"}, "downtime_incidents_ended_after_start"),
        ({"detected_at": "2026-03-01T09:00:00Z"}, "downtime_incidents_detected_after_start"),
        ({"duration_seconds": -1.0}, "downtime_incidents_duration_nonnegative"),
        ({"status": "resolved"}, "downtime_incidents_resolved_has_end"),
    ],
)
async def test_check_constraints_reject_bad_rows(
    db: asyncpg.Connection, change: dict[str, object], constraint: str
) -> None:
    values = {**VALID, **change}
    insert = """
        INSERT INTO downtime_incidents (started_at, detected_at, ended_at, status, severity,
            logs_capture_status, duration_seconds, health_endpoint)
        VALUES ($1::text::timestamptz, $2::text::timestamptz, $3::text::timestamptz, $4, $5,
            $6, $7, 'https://x/health')
    """
    params = [values[k] for k in VALID]
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(insert, *params)
    assert caught.value.constraint_name == constraint
    # ...and the valid row itself is accepted, so each case fails for its own reason only.
    await db.execute(insert, *[VALID[k] for k in VALID])


async def test_updated_at_follows_every_update(db: asyncpg.Connection) -> None:
    incident_id = await db.fetchval(
        """INSERT INTO downtime_incidents (started_at, detected_at, health_endpoint, severity,
               created_at, updated_at)
           VALUES (now(), now(), 'https://x/health', 'low', '2020-01-01', '2020-01-01')
           RETURNING incident_id"""
    )
    await db.execute(
        "UPDATE downtime_incidents SET notes = 'n' WHERE incident_id = $1", incident_id
    )
    row = await db.fetchrow(
        "SELECT created_at, updated_at, now() AS now FROM downtime_incidents"
        " WHERE incident_id = $1",
        incident_id,
    )
    assert row is not None
    assert row["created_at"].year == 2020
    assert row["updated_at"] > row["created_at"]
    assert row["updated_at"] <= row["now"]
