"""A monitor in a maintenance window: checked, shown in Maintenance, no incident, recorded."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from downtime_operator.domain.maintenance import parse_window_spec
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import Span
from downtime_operator.services.slo.maintenance import (
    ActiveMaintenance,
    MaintenanceCalendar,
    MaintenanceKeeper,
    MaintenanceRecorder,
    WindowStatusPublisher,
)
from tests.unit.fakes import FakeClock
from tests.unit.test_monitor_runner import REF, SPEC, T0, World, outage


class MemoryLedger:
    """The ledger's contract (``tests/contract/test_maintenance_contract``), in memory."""

    def __init__(self) -> None:
        self.periods: dict[MonitorRef, list[list[datetime | None]]] = {}

    async def open_maintenance(self, *, monitor: MonitorRef, at: datetime, reason: str) -> None:
        periods = self.periods.setdefault(monitor, [])
        if not periods or periods[-1][1] is not None:
            periods.append([at, None])

    async def close_maintenance(self, *, monitor: MonitorRef, at: datetime) -> None:
        periods = self.periods.get(monitor, [])
        if periods and periods[-1][1] is None:
            start = periods[-1][0]
            assert start is not None
            periods[-1][1] = max(at, start)

    async def maintenance_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[Span]]:
        found: dict[MonitorRef, list[Span]] = {}
        for monitor, periods in self.periods.items():
            for start, end in periods:
                assert start is not None
                stop = until if end is None else min(end, until)
                if start < until and stop > since:
                    found.setdefault(monitor, []).append((start, stop))
        return found


class NeverRead:
    def in_maintenance_at_read(self, monitor: MonitorRef) -> bool | None:
        return False


async def run_with_windows(
    world: World, windows: Mapping[str, dict[str, object]], *, seconds: float
) -> MemoryLedger:
    """Run the monitor with these windows; the ledger once every write has been made."""
    calendar = MaintenanceCalendar()
    for name, spec in windows.items():
        calendar.put(namespace=REF.namespace, name=name, spec=parse_window_spec(spec))
    ledger = MemoryLedger()
    recorder = MaintenanceRecorder(ledger=ledger, open_periods=NeverRead())
    world.deps.maintenance = MaintenanceKeeper(calendar=calendar, recorder=recorder)
    await world.run(seconds=seconds)
    await recorder.drain()
    return ledger


FAST = {**SPEC, "interval": "5s", "timeout": "2s", "retryInterval": "5s"}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


async def test_an_outage_inside_a_window_opens_nothing_and_shows_maintenance() -> None:
    world = World(outage(30, 90), spec=FAST)
    ledger = await run_with_windows(
        world, {"deploy": {"monitors": [REF.name], "start": at(20), "end": at(100)}}, seconds=130
    )

    assert world.store.rows == {}  # no incident
    states = [p["state"] for p in world.resources.status_patches]
    assert "Maintenance" in states and "Down" not in states
    assert states[-1] == "Up"
    assert ledger.periods[REF] == [[T0 + timedelta(seconds=20), T0 + timedelta(seconds=100)]]


async def test_the_same_outage_outside_a_window_opens_an_incident() -> None:
    world = World(outage(30, 90), spec=FAST)
    await run_with_windows(
        world, {"other": {"monitors": ["web"], "start": at(20), "end": at(100)}}, seconds=130
    )

    [row] = world.store.rows.values()
    assert row.started_at == T0 + timedelta(seconds=30)
    assert "Maintenance" not in [p["state"] for p in world.resources.status_patches]


async def test_an_outage_that_outlasts_the_window_opens_its_incident_after_it() -> None:
    world = World(outage(30, 200), spec=FAST)
    await run_with_windows(
        world, {"deploy": {"monitors": [REF.name], "start": at(20), "end": at(100)}}, seconds=150
    )

    [row] = world.store.rows.values()
    assert row.started_at == T0 + timedelta(seconds=100)  # the first failure after the window


async def test_an_incident_open_when_the_window_starts_stays_open() -> None:
    world = World(outage(10, 200), spec=FAST)
    await run_with_windows(
        world, {"late": {"monitors": [REF.name], "start": at(60), "end": at(300)}}, seconds=150
    )

    [row] = world.store.rows.values()
    assert row.started_at == T0 + timedelta(seconds=10) and row.ended_at is None
    assert world.resources.status_patches[-1]["state"] == "Maintenance"


async def test_a_selector_window_applies_to_labelled_monitors_only() -> None:
    calendar = MaintenanceCalendar()
    calendar.put(
        namespace="shop",
        name="payments",
        spec=parse_window_spec(
            {
                "selector": {
                    "matchLabels": {"team": "payments"},
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
                },
                "cron": "0 3 * * *",
                "duration": "1h",
                "reason": "nightly deploy",
            }
        ),
    )
    api = MonitorRef(namespace="shop", name="api")
    inside = T0.replace(hour=3, minute=30)
    active = calendar.active(api, labels={"team": "payments"}, at=inside)
    assert active == ActiveMaintenance(
        window="shop/payments",
        reason="nightly deploy",
        start=T0.replace(hour=3),
        end=T0.replace(hour=4),
    )
    assert calendar.active(api, labels={"team": "payments", "tier": "db"}, at=inside) is None
    assert calendar.active(api, labels={"team": "search"}, at=inside) is None
    assert calendar.active(api, labels={"team": "payments"}, at=inside + timedelta(hours=1)) is None
    other = MonitorRef(namespace="other", name="api")
    assert calendar.active(other, labels={"team": "payments"}, at=inside) is None
    calendar.remove(namespace="shop", name="payments")
    assert calendar.active(api, labels={"team": "payments"}, at=inside) is None


async def test_a_period_left_open_by_a_stopped_process_is_closed() -> None:
    """The store still shows the monitor in maintenance (the process stopped during a window
    since deleted): its first check outside any window closes the period."""

    class ShownOpen:
        def in_maintenance_at_read(self, monitor: MonitorRef) -> bool | None:
            return True

    world = World(outage(0, 0), spec=FAST)
    ledger = MemoryLedger()
    await ledger.open_maintenance(monitor=REF, at=T0 - timedelta(hours=1), reason="")
    recorder = MaintenanceRecorder(ledger=ledger, open_periods=ShownOpen())
    world.deps.maintenance = MaintenanceKeeper(calendar=MaintenanceCalendar(), recorder=recorder)
    await world.run(seconds=1)
    await recorder.drain()
    [[start, end]] = ledger.periods[REF]
    assert start == T0 - timedelta(hours=1) and end is not None and end >= T0


class RecordingStatuses:
    def __init__(self, *, failing: int = 0) -> None:
        self.written: list[tuple[str, str, dict[str, object]]] = []
        self.failing = failing

    async def patch_window_status(
        self, *, namespace: str, name: str, status: Mapping[str, object]
    ) -> None:
        if self.failing:
            self.failing -= 1
            raise ConnectionError("API server away")
        self.written.append((namespace, name, dict(status)))


async def test_each_window_shows_whether_it_is_open_its_next_start_and_its_monitors() -> None:
    calendar = MaintenanceCalendar()
    calendar.put(
        namespace="shop",
        name="nightly",
        spec=parse_window_spec(
            {
                "selector": {"matchLabels": {"team": "payments"}},
                "cron": "0 3 * * *",
                "duration": "1h",
            }
        ),
    )
    for name, team in (("api", "payments"), ("web", "payments"), ("db", "storage")):
        calendar.note_monitor(MonitorRef(namespace="shop", name=name), labels={"team": team})
    calendar.note_monitor(MonitorRef(namespace="other", name="api"), labels={"team": "payments"})
    clock = FakeClock(T0.replace(hour=3, minute=30))
    writer = RecordingStatuses(failing=1)
    publisher = WindowStatusPublisher(calendar=calendar, writer=writer, clock=clock)

    await publisher.publish()  # the write fails: tried again next time
    await publisher.publish()
    await publisher.publish()  # unchanged: not written again
    assert writer.written == [
        (
            "shop",
            "nightly",
            {
                "active": True,
                "nextStart": "2026-01-02T03:00:00Z",
                "monitors": 2,
                "currentPeriod": {"start": "2026-01-01T03:00:00Z", "end": "2026-01-01T04:00:00Z"},
            },
        )
    ]
    calendar.forget_monitor(MonitorRef(namespace="shop", name="web"))
    clock.current = T0.replace(hour=5)
    await publisher.publish()
    assert writer.written[-1][2] == {
        "active": False,
        "nextStart": "2026-01-02T03:00:00Z",
        "monitors": 1,
        "currentPeriod": None,
    }
