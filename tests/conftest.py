"""Session-wide fixtures shared by integration and e2e tests: the real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from downtime_operator.adapters.postgres import apply_migrations

REPO = Path(__file__).resolve().parents[1]
START_SCRIPT = REPO / "scripts" / "start-postgres.sh"

DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of a role that may create databases; starts the local server if needed."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit
    result = subprocess.run(
        ["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"start-postgres.sh failed ({result.returncode}):\n{result.stderr}")
    last = result.stdout.strip().splitlines()[-1]
    key, _, dsn = last.partition("=")
    assert key == "DATABASE_URL", f"unexpected last line from start-postgres.sh: {last!r}"
    return dsn


def with_database(dsn: str, database: str) -> str:
    base, _, _ = dsn.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}"


@pytest.fixture
async def make_database(postgres_dsn: str) -> AsyncIterator[DatabaseFactory]:
    """Factory of fresh, empty databases (no migrations), all dropped after the test.

    The drop uses a new connection: a test may have restarted the server in between.
    """
    created: list[str] = []

    async def make() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return with_database(postgres_dsn, name)

    try:
        yield make
    finally:
        if created:
            admin = await asyncpg.connect(postgres_dsn)
            try:
                for name in created:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


@pytest.fixture(scope="module")
async def migrated_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """One migrated database per test module, dropped at the module's end."""
    admin = await asyncpg.connect(postgres_dsn)
    name = f"test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(postgres_dsn, name)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
