"""One ``stores`` fixture per store implementation, so every contract test runs on each.

SQLite gets a fresh file per test. PostgreSQL (started by the session, see ``tests/conftest.py``)
gets one migrated database per module and an emptied table per test, as the integration tests
do; its parameter is marked ``postgres`` so ``-m "not postgres"`` runs the SQLite half alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from tests.contract.stores import Store, Stores


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(kind, where): a plain fixture, so only the PostgreSQL half asks for the server."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "downtime.db")
    return "postgres", str(request.getfixturevalue("migrated_dsn"))


@pytest.fixture
async def stores(store_location: tuple[str, str]) -> AsyncIterator[Stores]:
    kind, where = store_location

    async def open_store() -> Store:
        if kind == "sqlite":
            return await SqliteIncidentStore.open(where)
        return await PostgresIncidentStore.connect(where, min_size=1, max_size=4)

    kit = Stores(kind=kind, opener=open_store)
    if kind == "postgres":
        first = await kit.open()
        assert isinstance(first, PostgresIncidentStore)
        await first.pool.execute("DELETE FROM downtime_incidents")
    try:
        yield kit
    finally:
        await kit.close_all()


@pytest.fixture
async def store(stores: Stores) -> Store:
    return await stores.open()
