"""Maintenance periods (issue 15): one scenario set, run on SQLite and on PostgreSQL.

The ledger is also the SLO's source: the last test feeds what each store answers to the SLO
figures and holds them to a brute-force count, for random periods (acceptance 1, both stores).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.postgres.maintenance import PostgresMaintenanceLedger
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.adapters.sqlite.maintenance import SqliteMaintenanceLedger
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import SloSpec, Timeline, slo_figures
from downtime_operator.services.slo.ports import MaintenanceLedger
from tests.contract.stores import T0, AnyStore, Stores

pytestmark = pytest.mark.sql_only("the maintenance periods are a table of the SQL stores")

API = MonitorRef(namespace="shop", name="api")
WEB = MonitorRef(namespace="shop", name="web")


async def ledger_of(store: AnyStore, *, empty: bool = True) -> MaintenanceLedger:
    """The ledger beside the store, over its connections; ``empty``: with no period yet."""
    if isinstance(store, PostgresIncidentStore):
        if empty:
            await store.pool.execute("DELETE FROM downtime_maintenance_periods")
        return PostgresMaintenanceLedger(store.pool)
    assert isinstance(store, SqliteIncidentStore)
    database = store.database
    if empty:
        await database.run(database.conn.execute, "DELETE FROM downtime_maintenance_periods")
    return SqliteMaintenanceLedger(database)


async def test_a_period_opens_once_and_closes(stores: Stores) -> None:
    ledger = await ledger_of(await stores.open())
    await ledger.open_maintenance(monitor=API, at=T0, reason="upgrade")
    # Opening again (a second window, a retry, a restart) keeps the first start.
    await ledger.open_maintenance(monitor=API, at=T0 + timedelta(minutes=5), reason="other")
    open_now = await ledger.maintenance_spans(since=T0, until=T0 + timedelta(minutes=10))
    assert open_now == {API: [(T0, T0 + timedelta(minutes=10))]}  # open: runs to until

    await ledger.close_maintenance(monitor=API, at=T0 + timedelta(minutes=30))
    await ledger.close_maintenance(monitor=API, at=T0 + timedelta(minutes=40))  # nothing open
    spans = await ledger.maintenance_spans(since=T0 - timedelta(hours=1), until=T0 + timedelta(1))
    assert spans == {API: [(T0, T0 + timedelta(minutes=30))]}


async def test_periods_are_kept_per_monitor_and_read_for_all_at_once(stores: Stores) -> None:
    ledger = await ledger_of(await stores.open())
    for start, end in ((0, 10), (60, 70), (120, None)):
        await ledger.open_maintenance(monitor=API, at=T0 + timedelta(minutes=start), reason="")
        if end is not None:
            await ledger.close_maintenance(monitor=API, at=T0 + timedelta(minutes=end))
    await ledger.open_maintenance(monitor=WEB, at=T0 + timedelta(minutes=5), reason="")
    await ledger.close_maintenance(monitor=WEB, at=T0 + timedelta(minutes=6))

    # A restart reads what the first instance wrote.
    reopened = await ledger_of(await stores.open(), empty=False)
    spans = await reopened.maintenance_spans(
        since=T0 + timedelta(minutes=8), until=T0 + timedelta(minutes=130)
    )
    assert spans == {
        API: [
            (T0, T0 + timedelta(minutes=10)),
            (T0 + timedelta(minutes=60), T0 + timedelta(minutes=70)),
            (T0 + timedelta(minutes=120), T0 + timedelta(minutes=130)),
        ]
    }  # WEB's period ended before since: absent


async def test_a_period_never_ends_before_it_began(stores: Stores) -> None:
    """A clock step backwards between two replicas must not write an impossible row."""
    ledger = await ledger_of(await stores.open())
    await ledger.open_maintenance(monitor=API, at=T0, reason="")
    await ledger.close_maintenance(monitor=API, at=T0 - timedelta(seconds=3))
    spans = await ledger.maintenance_spans(since=T0 - timedelta(1), until=T0 + timedelta(1))
    assert spans == {API: [(T0, T0)]}


@st.composite
def periods(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Disjoint periods in whole seconds, as one monitor's open/close pairs are."""
    found: list[tuple[int, int]] = []
    cursor = draw(st.integers(-600, 600))
    for _ in range(draw(st.integers(0, 4))):
        start = cursor + draw(st.integers(0, 900))
        end = start + draw(st.integers(0, 900))
        found.append((start, end))
        cursor = end + 1
    return found


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    maintenance=periods(),
    outage=st.tuples(st.integers(-600, 3600), st.integers(0, 1800)),
    created=st.integers(-1200, 1800),
)
async def test_slo_from_the_stored_periods_equals_a_second_by_second_count(
    stores: Stores,
    maintenance: list[tuple[int, int]],
    outage: tuple[int, int],
    created: int,
) -> None:
    store = await stores.open()  # one per example, closed with it: examples share the fixture
    try:
        ledger = await ledger_of(store)
        for start, end in maintenance:
            await ledger.open_maintenance(monitor=API, at=T0 + timedelta(seconds=start), reason="")
            await ledger.close_maintenance(monitor=API, at=T0 + timedelta(seconds=end))
        now, window = T0 + timedelta(seconds=3600), 3600
        stored = await ledger.maintenance_spans(since=now - timedelta(seconds=window), until=now)
    finally:
        await stores.close(store)
    down_start, down_for = outage
    line = Timeline(
        incidents=[
            (T0 + timedelta(seconds=down_start), T0 + timedelta(seconds=down_start + down_for))
        ],
        maintenance=stored.get(API, []),
        created_at=T0 + timedelta(seconds=created),
        now=now,
    )
    figures = slo_figures(
        SloSpec(target=SloSpec.parse(objective="99").target, window=timedelta(seconds=window)),
        timeline=line,
    )
    judged = down = 0
    for second in range(0, window):
        if second < created or any(s <= second < e for s, e in maintenance):
            continue
        judged += 1
        down += down_start <= second < down_start + down_for
    assert figures.window.judged_seconds == judged
    assert figures.window.downtime_seconds == down
    assert figures.availability == pytest.approx(1 - down / judged if judged else 1.0)
