"""Real PostgreSQL for the integration tests, started by the test session itself.

``postgres_dsn`` (runs ``scripts/start-postgres.sh`` unless ``TEST_DATABASE_URL`` is set),
``make_database`` and ``migrated_dsn`` (one migrated throw-away database per module) come from
``tests/conftest.py``. Here: each store test starts from an empty table, because creating and
dropping a database costs ~0.7 s while emptying a small table costs ~1 ms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.conftest import DatabaseFactory
from tests.support.monitor_process import processes, start_monitor, target

from downtime_operator.adapters.postgres import PostgresIncidentStore

__all__ = ["processes", "start_monitor", "target"]  # fixtures of the standalone monitor tests


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the server, so `-m "not postgres"` can skip them."""
    for item in items:
        if "postgres_dsn" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest) -> DatabaseFactory | None:
    """For a command run on either store: PostgreSQL databases for the postgres half, None for
    SQLite (a plain fixture, so only the PostgreSQL half asks for the server)."""
    if request.param == "sqlite":
        return None
    factory: DatabaseFactory = request.getfixturevalue("make_database")
    return factory


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
