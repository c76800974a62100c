"""The Prometheus part of the metrics snapshot on every SQL store: planned with the incident,
run at detection and again ``after`` past the end (whoever resolves), recorded once per due time,
beside the runner's own snapshot of the checks, and given back or taken over like the log
capture. The source is a fake here; the client meets the real Prometheus in
tests/integration/test_prometheus_client.py and the whole in tests/e2e/test_metrics_snapshot.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from downtime_operator.adapters.postgres.metric_captures import PostgresMetricCaptures
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.adapters.sqlite.metric_captures import SqliteMetricCaptures
from downtime_operator.domain.evidence import (
    ChecksDuring,
    LatencySummary,
    MetricsSnapshot,
    SnapshotStage,
    snapshot_json,
)
from downtime_operator.domain.prometheus import MetricQuery, MetricsPlan, Series
from downtime_operator.domain.window import CaptureWindow, format_unix_ns, to_unix_ns
from downtime_operator.services.metrics_capture import (
    NOT_CONFIGURED,
    MetricsCaptureDeps,
    MetricsCaptureService,
    MetricsCaptureStore,
    MetricsSourceError,
)
from tests.contract.stores import T0, AnyStore, Store, make_incident, raw_row, sql_store
from tests.unit.fakes import FakeClock

pytestmark = pytest.mark.sql_only("the metrics schedule is in columns of the SQL stores")

PLAN = MetricsPlan(
    queries=(
        MetricQuery(name="queue", query="app_queue_depth"),
        MetricQuery(name="broken", query="sum("),
    ),
    before=timedelta(seconds=60),
    after=timedelta(seconds=30),
)


def at(seconds: float) -> Any:
    return T0 + timedelta(seconds=seconds)


@dataclass
class FakeSource:
    asked: list[tuple[str, CaptureWindow, int]] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def query_range(
        self, query: str, *, window: CaptureWindow, step_seconds: int
    ) -> tuple[tuple[Series, ...], bool]:
        self.asked.append((query, window, step_seconds))
        if self.hold is not None:
            await self.hold.wait()
        if query == "sum(":
            raise MetricsSourceError("Prometheus refused the query: HTTP 400 bad_data: parse error")
        return (Series(labels={"job": "app"}, values=((window.start_ns / 1e9, "1"),)),), False


def captures_for(store: AnyStore) -> MetricsCaptureStore:
    found = sql_store(store)
    if isinstance(found, SqliteIncidentStore):
        return SqliteMetricCaptures(found.database)
    return PostgresMetricCaptures(found.pool)


@dataclass
class World:
    store: Store
    captures: MetricsCaptureStore
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    source: FakeSource = field(default_factory=FakeSource)

    def service(self, *, configured: bool = True) -> MetricsCaptureService:
        return MetricsCaptureService(
            MetricsCaptureDeps(
                store=self.captures,
                clock=self.clock,
                source=self.source if configured else None,
            )
        )

    async def run_due(self, seconds: float, *, configured: bool = True) -> int:
        self.clock.current = at(seconds)
        return await self.service(configured=configured).run_due()

    async def row(self, incident_id: uuid.UUID) -> dict[str, Any]:
        return await raw_row(self.store, "downtime_incidents", "incident_id", incident_id)

    async def prometheus(self, incident_id: uuid.UUID) -> dict[str, Any]:
        snapshot = json.loads((await self.row(incident_id))["metrics_snapshot"])
        found: dict[str, Any] = snapshot["prometheus"]
        return found


@pytest.fixture
def world(store: AnyStore) -> World:
    return World(sql_store(store), captures_for(store))


def checks_snapshot() -> MetricsSnapshot:
    return MetricsSnapshot(
        stage=SnapshotStage.DETECTION,
        checks_before=(),
        latency_before=LatencySummary(
            window_seconds=600, samples=0, since=None, p50_ms=None, p95_ms=None
        ),
        during=ChecksDuring(checks=3, failures=3),
    )


async def planned(world: World, **extra: Any) -> uuid.UUID:
    incident = await world.store.create_incident(make_incident(**extra))
    await world.captures.schedule_metrics_capture(
        incident.incident_id, plan=PLAN, due_at=incident.detected_at
    )
    return incident.incident_id


async def test_detection_then_final_run_after_the_resolution(world: World) -> None:
    incident_id = await planned(world, metrics_snapshot=checks_snapshot())
    assert await world.run_due(19) == 0  # due at detection (20 s)
    assert await world.run_due(25) == 1
    first = await world.prometheus(incident_id)
    assert (first["window_start"], first["window_end"]) == (
        format_unix_ns(to_unix_ns(at(-60))),
        format_unix_ns(to_unix_ns(at(25))),
    )
    assert first["final"] is False and first["step_seconds"] == 1
    queue, broken = first["queries"]
    assert queue["name"] == "queue" and queue["series"][0]["labels"] == {"job": "app"}
    assert broken["error"].endswith("HTTP 400 bad_data: parse error") and broken["series"] == []
    snapshot = json.loads((await world.row(incident_id))["metrics_snapshot"])
    assert snapshot["during"]["checks"] == 3  # the runner's part is kept beside it

    # The runner's resolution snapshot replaces its own part and keeps Prometheus'.
    await world.store.update_incident(
        incident_id, {"metrics_snapshot": snapshot_json(checks_snapshot())}
    )
    assert (await world.prometheus(incident_id)) == first
    await world.store.resolve_incident(incident_id, ended_at=at(200))
    row = await world.row(incident_id)
    assert row["metrics_capture_due_at"] == at(230)
    assert await world.run_due(229) == 0
    assert await world.run_due(231) == 1
    final = await world.prometheus(incident_id)
    assert final["final"] is True
    assert final["window_end"] == format_unix_ns(to_unix_ns(at(230)))
    assert await world.run_due(400) == 0  # once per due time
    row = await world.row(incident_id)
    assert row["metrics_capture_runs"] == 2 and row["metrics_capture_due_at"] is None
    assert [q for q, _, _ in world.source.asked] == ["app_queue_depth", "sum("] * 2


async def test_the_step_keeps_a_long_window_under_300_points(world: World) -> None:
    incident_id = await planned(world)
    await world.store.resolve_incident(incident_id, ended_at=at(3600))
    assert await world.run_due(3630) == 1
    assert (await world.prometheus(incident_id))["step_seconds"] == 13  # 3690 s / 300, up


async def test_a_resolve_before_the_first_run_leaves_only_the_final_one(world: World) -> None:
    incident_id = await planned(world)
    await world.store.resolve_incident(incident_id, ended_at=at(21))
    assert await world.run_due(40) == 0
    assert await world.run_due(51) == 1
    assert (await world.row(incident_id))["metrics_capture_runs"] == 1


async def test_no_plan_no_run_and_a_plan_is_kept_once(world: World) -> None:
    plain = await world.store.create_incident(make_incident("plain"))
    await world.store.resolve_incident(plain.incident_id, ended_at=at(30))
    incident_id = await planned(world, name="api")
    other = MetricsPlan(
        queries=(MetricQuery(name="x", query="up"),), before=PLAN.before, after=PLAN.after
    )
    await world.captures.schedule_metrics_capture(incident_id, plan=other, due_at=at(500))
    assert await world.run_due(25) == 1  # the first plan, due at detection
    assert [q for q, _, _ in world.source.asked] == ["app_queue_depth", "sum("]
    row = await world.row(plain.incident_id)
    assert row["metrics_snapshot"] is None and row["metrics_capture_due_at"] is None


async def test_without_prometheus_the_run_says_why(world: World) -> None:
    incident_id = await planned(world)
    assert await world.run_due(25, configured=False) == 1
    found = await world.prometheus(incident_id)
    assert (found["error"], found["queries"]) == (NOT_CONFIGURED, [])


async def test_a_claim_is_exclusive_until_its_lease_runs_out(world: World) -> None:
    incident_id = await planned(world)
    held = world.source.hold = asyncio.Event()
    world.clock.current = at(25)
    stuck = asyncio.create_task(world.service().run_due())
    await asyncio.sleep(0.2)
    assert await world.run_due(26) == 0  # held by the first
    world.source.hold = None
    assert await world.run_due(25 + 301) == 1  # its lease (5 min) ran out: taken over
    held.set()
    assert await stuck == 1  # the first one's result no longer applies
    assert (await world.row(incident_id))["metrics_capture_runs"] == 1


async def test_a_run_cut_short_gives_its_claim_back(world: World) -> None:
    incident_id = await planned(world)
    world.source.hold = asyncio.Event()
    world.clock.current = at(25)
    stuck = asyncio.create_task(world.service().run_due())
    await asyncio.sleep(0.2)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    world.source.hold = None
    assert await world.run_due(26) == 1
    assert (await world.row(incident_id))["metrics_capture_runs"] == 1
