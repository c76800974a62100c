"""Real PostgreSQL for the integration tests, started by the test session itself.

The session runs ``scripts/start-postgres.sh`` (installs/starts the server when needed) unless
``TEST_DATABASE_URL`` points at a server already (a role allowed to CREATE DATABASE). Each test
module gets its own throw-away database with the migrations applied, and each store test starts
from an empty table: creating and dropping a database costs ~0.7 s here, emptying a table ~1 ms.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from downtime_operator.adapters.postgres import PostgresIncidentStore, apply_migrations

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO / "scripts" / "start-postgres.sh"

def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.postgres)


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


def _with_database(dsn: str, database: str) -> str:
    base, _, _ = dsn.partition("?")  # our DSNs carry no query part worth keeping
    return f"{base.rsplit('/', 1)[0]}/{database}"


DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture
async def make_database(postgres_dsn: str) -> AsyncIterator[DatabaseFactory]:
    """Factory of fresh, empty databases (no migrations), all dropped after the test."""
    admin = await asyncpg.connect(postgres_dsn)
    created: list[str] = []

    async def make() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _with_database(postgres_dsn, name)

    try:
        yield make
    finally:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
async def migrated_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """One migrated database per test module."""
    admin = await asyncpg.connect(postgres_dsn)
    name = f"test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_database(postgres_dsn, name)
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


@pytest.fixture(scope="module")
async def module_store(migrated_dsn: str) -> AsyncIterator[PostgresIncidentStore]:
    store = await PostgresIncidentStore.connect(migrated_dsn, min_size=1, max_size=4)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(module_store: PostgresIncidentStore) -> PostgresIncidentStore:
    """The module's store over an empty ``downtime_incidents`` table."""
    await module_store.pool.execute("DELETE FROM downtime_incidents")
    return module_store


@pytest.fixture
async def db(store: PostgresIncidentStore) -> AsyncIterator[Any]:
    """A raw connection to the store's database, for inserting bad rows and peeking."""
    async with store.pool.acquire() as conn:
        yield conn
