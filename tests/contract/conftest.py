"""One ``stores`` fixture per store implementation, so every contract test runs on each.

The memory store is the unit tests' fake (``tests.unit.fakes.MemoryStore``): every instance the
fixture opens shares one set of rows, as processes share a database. SQLite gets a fresh file per
test. PostgreSQL (started by the session, see ``tests/conftest.py``) gets one migrated database
per module and an emptied table per test, as the integration tests do; its parameter is marked
``postgres`` so ``-m "not postgres"`` runs the other two alone.

A test marked ``sql_only(reason)`` needs what the fake does not have, and is skipped on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from tests.contract.stores import AnyStore, Stores
from tests.unit.fakes import MemoryStore


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sql_only(reason): a contract test for the SQL stores only, skipped on the memory fake",
    )


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(kind, where): a plain fixture, so only the PostgreSQL half asks for the server."""
    if request.param == "memory":
        sql_only = request.node.get_closest_marker("sql_only")
        if sql_only is not None:
            pytest.skip(f"SQL stores only: {sql_only.args[0]}")
        return "memory", ""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "downtime.db")
    return "postgres", str(request.getfixturevalue("migrated_dsn"))


@pytest.fixture
def log_keys() -> LogKeyRing:
    """The SQL stores' log encryption keys: none (plain storage). A module overrides it to run
    its scenarios sealed too (``test_log_capture_contract``)."""
    return LogKeyRing()


@pytest.fixture
async def stores(store_location: tuple[str, str], log_keys: LogKeyRing) -> AsyncIterator[Stores]:
    kind, where = store_location
    memory = MemoryStore()  # the memory store's "database"

    async def open_store() -> AnyStore:
        if kind == "memory":
            return memory.reopen()
        if kind == "sqlite":
            return await SqliteIncidentStore.open(where, log_keys)
        return await PostgresIncidentStore.connect(where, min_size=1, max_size=4, keys=log_keys)

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
async def store(stores: Stores) -> AnyStore:
    return await stores.open()
