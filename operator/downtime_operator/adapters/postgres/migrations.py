"""Numbered SQL migrations shipped inside the package, applied once each, in order.

Why transaction-scoped advisory locks (``pg_advisory_xact_lock``) rather than a session lock
held across the run: they are released by COMMIT/ROLLBACK or a dropped connection, so a crashed
replica can never leave the lock behind, and they behave the same through a transaction-mode
pooler (Supabase's pgbouncer), where session state does not survive between transactions. Each
migration re-checks the ledger after taking the lock, so two replicas starting at once apply
every migration exactly once and in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

# "downtime" in ASCII: a fixed key, so every replica and `downtime-operator migrate` contend
# for the same lock.
MIGRATION_LOCK_KEY = 0x646F776E74696D65

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS downtime_schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


def load_migrations() -> list[Migration]:
    """Migrations from the package's ``migrations/`` folder, ordered by their number prefix."""
    folder = resources.files("downtime_operator.adapters.postgres") / "migrations"
    found = [
        Migration(version=entry.name.removesuffix(".sql"), sql=entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def apply_migrations(
    conn_or_pool: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    migrations: list[Migration] | None = None,
) -> list[str]:
    """Apply the pending migrations; return the versions this call applied (often none)."""
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            return await _apply(conn, migrations)
    return await _apply(conn_or_pool, migrations)


async def _apply(
    conn: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any],
    migrations: list[Migration] | None,
) -> list[str]:
    todo = load_migrations() if migrations is None else migrations
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(_LEDGER_DDL)
        applied = {
            r["version"] for r in await conn.fetch("SELECT version FROM downtime_schema_migrations")
        }
    applied_now: list[str] = []
    for migration in todo:
        if migration.version in applied:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            done = await conn.fetchval(
                "SELECT true FROM downtime_schema_migrations WHERE version = $1",
                migration.version,
            )
            if done:  # another replica got here first while we waited for the lock
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO downtime_schema_migrations (version, applied_at) VALUES ($1, now())",
                migration.version,
            )
        applied_now.append(migration.version)
    return applied_now
