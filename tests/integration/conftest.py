"""Real PostgreSQL for the integration tests, started by the test session itself.

``postgres_dsn`` (runs ``scripts/start-postgres.sh`` unless ``TEST_DATABASE_URL`` is set) and
``make_database`` come from ``tests/conftest.py``. Here: each test module gets its own migrated
throw-away database and each store test starts from an empty table, because creating and
dropping a database costs ~0.7 s while emptying a small table costs ~1 ms.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from downtime_operator.adapters.postgres import PostgresIncidentStore, apply_migrations


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the server, so `-m "not postgres"` can skip them."""
    for item in items:
        if "postgres_dsn" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def _with_database(dsn: str, database: str) -> str:
    base, _, _ = dsn.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}"


@pytest.fixture(scope="module")
async def migrated_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """One migrated database per test module, dropped at the module's end."""
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
