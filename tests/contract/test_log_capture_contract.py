"""Log capture below Kubernetes, on every store: test Loki -> capture service -> store and files.

The standalone monitor captures into its SQLite file exactly as the operator does into
PostgreSQL, and the unit tests' in-memory fake as both do: plans that survive a restart, one
record per due capture, the final capture after resolution, and the same filters and analysis
for the API.

Every scenario runs with captured data stored plain and sealed (``log_keys``): with log
encryption keys, the same answers (issue 14).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.loki import LokiClient
from downtime_operator.adapters.sealed_columns import SEALED_COLUMNS, opened
from downtime_operator.assembly import resource_pipeline
from downtime_operator.domain.log_capture import CapturePlan
from downtime_operator.domain.models import (
    Incident,
    LogCaptureState,
    LogStorage,
    MonitorRef,
    Severity,
)
from downtime_operator.domain.window import format_unix_ns, to_unix_ns
from downtime_operator.services.log_capture import LogCaptureDeps, LogCaptureService
from downtime_operator.services.ports import LogCaptureStore
from tests.contract.stores import AnyStore, captures_for, make_incident, ports_for, raw_row
from tests.support.loki_server import LokiServer
from tests.unit.fakes import FakeClock, MemoryStore, RecordingResources

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
QUERY = '{app="api"}'
INJECTION = "'; DROP TABLE downtime_incidents; --"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def plan(**changes: Any) -> CapturePlan:
    base: dict[str, Any] = {
        "enabled": True,
        "query": QUERY,
        "before": timedelta(seconds=60),
        "after": timedelta(seconds=30),
    }
    return CapturePlan(**{**base, **changes})


def line(i: int) -> str:
    """Line ``i`` of the application: a level, logger and message that filters can find."""
    kind = i % 4
    if kind == 0:
        return json.dumps(
            {"level": "error", "logger": "app.db", "message": f"ConnectionError: db-{i} refused"}
        )
    if kind == 1:
        return f'level=warn logger=app.http msg="slow request {i}"'
    if kind == 2:
        return json.dumps({"level": "info", "logger": "apple", "message": f"served {i}"})
    return f"plain line {i} mentions REFUSED"


TEST_KEY = bytes(range(32))


@pytest.fixture(params=["plain", "sealed"])
def log_keys(request: pytest.FixtureRequest, store_location: tuple[str, str]) -> LogKeyRing:
    """Each scenario with captured data stored plain, then sealed under a key."""
    if request.param == "plain":
        return LogKeyRing()
    if store_location[0] == "memory":
        pytest.skip("the in-memory fake keeps nothing at rest")
    return LogKeyRing({"k1": TEST_KEY})


class World:
    def __init__(
        self, store: AnyStore, loki: LokiServer, client: LokiClient, files: Path, keys: LogKeyRing
    ) -> None:
        self.store = store
        self.keys = keys
        self.loki = loki
        self.captures: LogCaptureStore = captures_for(store)
        self.clock = FakeClock(at(0))
        self.resources = RecordingResources()
        self.events = resource_pipeline(self.resources)
        self.files = LocalLogFiles(directory=files, keys=keys)
        self.client = client

    def service(self, *, source: LokiClient | None = None, loki: bool = True) -> LogCaptureService:
        return LogCaptureService(
            LogCaptureDeps(
                store=self.captures,
                files=self.files,
                events=self.events,
                clock=self.clock,
                source=(source or self.client) if loki else None,
            )
        )

    async def incident(self, capture: CapturePlan, *, started: float = 100) -> Incident:
        incident = Incident(
            incident_id=uuid.uuid4(),
            monitor=MonitorRef(namespace="default", name=f"api-{uuid.uuid4().hex[:6]}"),
            k8s_name="api-20260310-120140",
            health_endpoint="http://api/health",
            environment="production",
            started_at=at(started),
            detected_at=at(started + 20),
            severity=Severity.HIGH,
        )
        await self.store.create_incident(incident)
        await self.captures.schedule_log_capture(
            incident.incident_id, plan=capture, due_at=incident.detected_at
        )
        return incident

    async def run_due(self, seconds: float, service: LogCaptureService | None = None) -> int:
        self.clock.current = at(seconds)
        try:
            return await (service or self.service()).run_due()
        finally:
            assert await self.events.drained(5)

    async def row(self, incident: Incident) -> dict[str, Any]:
        raw = await raw_row(self.store, "downtime_incidents", "incident_id", incident.incident_id)
        found = opened(self.keys, raw, SEALED_COLUMNS, strict=True)  # as the store reads it
        return {
            **found,
            "logs_json": found["logs_captured"],
            "analysis_json": found["log_analysis"],
        }


@pytest.fixture
def loki() -> Iterator[LokiServer]:
    with LokiServer(max_entries=5000) as server:
        yield server


@pytest.fixture
async def world(
    store: AnyStore, loki: LokiServer, tmp_path: Path, log_keys: LogKeyRing
) -> AsyncIterator[World]:
    async with LokiClient(url=loki.url, deadline=10, base_delay=0.01, max_delay=0.05) as client:
        world = World(store, loki, client, tmp_path / "logs", log_keys)
        world.events.start()
        yield world
        await world.events.close(drain_timeout=5)


def stamp(i: int, *, first: float = 0, step: float = 0.1) -> int:
    return to_unix_ns(at(first + i * step))


def push_lines(loki: LokiServer, count: int, *, first: float = 0, step: float = 0.1) -> None:
    loki.push({"app": "api"}, [(stamp(i, first=first, step=step), line(i)) for i in range(count)])


async def test_first_capture_then_final_capture_after_resolution(world: World) -> None:
    push_lines(world.loki, 3000)  # 0 .. 300 s, ten a second
    incident = await world.incident(plan())
    assert await world.run_due(119) == 0  # due at detection (120 s)
    assert await world.run_due(125) == 1
    row = await world.row(incident)
    assert row["logs_capture_status"] == "captured"
    assert (row["logs_window_start"], row["logs_window_end"]) == (at(40), at(125))
    assert row["logs_count"] == 850 and row["logs_available"] == 850
    assert row["logs_truncated"] is False and row["logs_file_path"] is None
    assert len(json.loads(row["logs_json"])) == 850
    analysis = json.loads(row["analysis_json"])
    assert analysis["error_types"] == {"ConnectionError": 213}
    assert analysis["top_errors"][0] == ["ConnectionError: db-<n> refused", 213]

    resolved = await world.store.resolve_incident(incident.incident_id, ended_at=at(200))
    assert resolved is not None and resolved.logs_state is LogCaptureState.PENDING
    row = await world.row(incident)
    assert (row["logs_capture_status"], row["logs_capture_due_at"]) == ("pending", at(230))
    assert await world.run_due(229) == 0
    assert await world.run_due(231) == 1
    row = await world.row(incident)
    assert row["logs_capture_status"] == "captured"
    assert (row["logs_window_start"], row["logs_window_end"]) == (at(40), at(230))
    assert row["logs_count"] == 1900 and row["logs_capture_runs"] == 2
    assert row["logs_captured"] is None and row["logs_file_path"] is not None  # > 1000: a file
    stored = await world.files.read(row["logs_file_path"], incident_id=incident.incident_id)
    assert len(stored) == 1900 and stored[0]["timestamp"] == "2026-03-10T12:00:40.000000000Z"
    assert await world.run_due(400) == 0  # once per due time
    assert [r.state for _, r in world.resources.log_captures] == [LogCaptureState.CAPTURED] * 2


async def test_max_lines_keeps_the_onset_and_counts_what_loki_had(world: World) -> None:
    push_lines(world.loki, 3000)
    incident = await world.incident(plan(max_lines=500))
    await world.run_due(125)
    row = await world.row(incident)
    assert (row["logs_count"], row["logs_available"], row["logs_truncated"]) == (500, 850, True)
    entries = json.loads(row["logs_json"])
    assert entries[0]["timestamp"] == "2026-03-10T12:00:40.000000000Z"  # the earliest are kept


async def test_filters_give_the_same_exact_answers_from_jsonb_and_from_a_file(
    world: World,
) -> None:
    """Acceptance 6: level, logger_name and search over both storages; injection is text."""
    push_lines(world.loki, 1200, first=50, step=0.05)  # 50 .. 110 s
    in_db = await world.incident(plan(storage=LogStorage.DATABASE))
    in_file = await world.incident(plan(storage=LogStorage.FILE))
    assert await world.run_due(125) == 2
    db_row, file_row = await world.row(in_db), await world.row(in_file)
    assert db_row["logs_file_path"] is None and len(json.loads(db_row["logs_json"])) == 1200
    assert file_row["logs_captured"] is None
    assert await asyncio.to_thread(Path(file_row["logs_file_path"]).exists)

    service = world.service()
    cases: list[tuple[dict[str, str], list[int]]] = [
        ({"level": "ERROR"}, [i for i in range(1200) if i % 4 == 0]),
        ({"level": "warning"}, [i for i in range(1200) if i % 4 == 1]),
        ({"logger_name": "app"}, [i for i in range(1200) if i % 4 in (0, 1)]),
        ({"logger_name": "app.db"}, [i for i in range(1200) if i % 4 == 0]),
        ({"logger_name": "apple"}, [i for i in range(1200) if i % 4 == 2]),
        ({"search": "refused"}, [i for i in range(1200) if i % 4 in (0, 3)]),
        ({"search": "REFUSED", "level": "error"}, [i for i in range(1200) if i % 4 == 0]),
        ({"search": "db-1000 "}, [1000]),
        ({"search": INJECTION}, []),
        ({"logger_name": INJECTION, "level": INJECTION}, []),
        ({}, list(range(1200))),
    ]
    for filters, expected in cases:
        for incident in (in_db, in_file):
            found = await service.get_filtered_logs(incident.incident_id, **filters)
            assert found is not None
            assert [f["timestamp"] for f in found] == [
                format_unix_ns(stamp(i, first=50, step=0.05)) for i in expected
            ], (filters, incident is in_db)
    assert len(await world.store.get_recent_incidents()) == 2
    assert await service.get_filtered_logs(uuid.uuid4()) is None


async def test_two_429s_then_success_is_captured(world: World) -> None:
    """Acceptance 3a through the service: the capture state is captured."""
    push_lines(world.loki, 10)
    incident = await world.incident(plan(), started=0)
    world.loki.inject("429", "429")
    await world.run_due(30)
    assert (await world.row(incident))["logs_capture_status"] == "captured"
    assert [r.status for r in world.loki.requests] == [429, 429, 200]


async def test_persistent_500_fails_after_the_deadline_and_the_incident_is_intact(
    world: World, loki: LokiServer
) -> None:
    """Acceptance 3b: logs.state failed with Loki's text; nothing else about the incident moves."""
    incident = await world.incident(plan())
    before = await world.store.get_incident(incident.incident_id)
    loki.fail_always = "500:rpc error: code = Unavailable desc = no queriers"
    async with LokiClient(url=loki.url, deadline=1.0, base_delay=0.05, max_delay=0.2) as quick:
        await world.run_due(125, world.service(source=quick))
    row = await world.row(incident)
    assert row["logs_capture_status"] == "failed"
    assert "HTTP 500: rpc error: code = Unavailable desc = no queriers" in row["logs_capture_error"]
    assert "deadline" in row["logs_capture_error"]
    after = await world.store.get_incident(incident.incident_id)
    assert before is not None and after is not None
    assert after == Incident(**{**before.__dict__, "logs_state": LogCaptureState.FAILED})
    [(_, shown)] = world.resources.log_captures
    assert shown.state is LogCaptureState.FAILED and shown.error == row["logs_capture_error"]


async def test_400_fails_at_once(world: World, loki: LokiServer) -> None:
    """Acceptance 3c: bad LogQL is recorded as the capture error, with one request to Loki."""
    incident = await world.incident(plan(query='{app="api"} |= "x" | badparser'))
    await world.run_due(125)
    row = await world.row(incident)
    assert row["logs_capture_status"] == "failed"
    assert row["logs_capture_error"].startswith("Loki refused the query: HTTP 400: parse error")
    assert len(loki.requests) == 1


async def test_two_replicas_run_a_due_capture_once(world: World) -> None:
    push_lines(world.loki, 100)
    incident = await world.incident(plan())
    world.loki.inject("slow:0.3")  # the first replica is still fetching when the second looks
    ran = await asyncio.gather(world.run_due(125), world.run_due(125))
    assert sorted(ran) == [0, 1]
    row = await world.row(incident)
    assert (row["logs_capture_status"], row["logs_capture_runs"]) == ("captured", 1)
    assert len(world.loki.requests) == 1


async def test_without_loki_captures_are_recorded_as_disabled(world: World) -> None:
    incident = await world.incident(plan())
    await world.run_due(125, world.service(loki=False))
    row = await world.row(incident)
    assert (row["logs_capture_status"], row["logs_capture_error"]) == (
        "disabled",
        "Loki is not configured",
    )
    assert world.loki.requests == []
    resolved = await world.store.resolve_incident(incident.incident_id, ended_at=at(200))
    assert resolved is not None and resolved.logs_state is LogCaptureState.DISABLED


async def test_a_disabled_plan_is_stored_disabled_and_resolution_leaves_it(world: World) -> None:
    incident = await world.incident(
        plan(enabled=False, disabled_reason="logCapture.query is not set")
    )
    row = await world.row(incident)
    assert (row["logs_capture_status"], row["logs_capture_due_at"]) == ("disabled", None)
    assert row["logs_capture_error"] == "logCapture.query is not set"
    await world.store.resolve_incident(incident.incident_id, ended_at=at(200))
    assert (await world.row(incident))["logs_capture_status"] == "disabled"
    assert await world.run_due(1000) == 0


async def test_a_retried_plan_write_does_not_undo_a_capture(world: World) -> None:
    push_lines(world.loki, 10, first=100)
    incident = await world.incident(plan())
    await world.run_due(125)
    await world.captures.schedule_log_capture(
        incident.incident_id, plan=plan(), due_at=incident.detected_at
    )
    assert (await world.row(incident))["logs_capture_status"] == "captured"


async def test_capture_now_and_analysis_for_the_api(world: World) -> None:
    push_lines(world.loki, 3000)
    incident = await world.incident(plan())
    await world.run_due(125)
    await world.store.resolve_incident(incident.incident_id, ended_at=at(200))
    world.clock.current = at(210)
    view = await world.service().capture_now(incident.incident_id)
    assert view is not None
    assert (view["state"], view["lines"], view["available"]) == ("captured", 1700, 1700)
    row = await world.row(incident)
    assert (row["logs_capture_status"], row["logs_capture_due_at"]) == ("pending", at(230))
    analysis = await world.service().get_analysis(incident.incident_id)
    assert analysis is not None and analysis["total_logs"] == 1700
    assert analysis["warning_count"] == 425
    assert await world.service().capture_now(uuid.uuid4()) is None


@pytest.mark.sql_only("the admin API's IncidentTransitions are not faked")
async def test_a_manual_resolve_schedules_the_final_capture_too(world: World) -> None:
    """The admin API's resolve, not only the runner's, makes the final capture due."""
    push_lines(world.loki, 3000)
    incident = await world.incident(plan())
    await world.run_due(125)
    assert not isinstance(world.store, MemoryStore)
    queries = ports_for(world.store).queries
    resolved = await queries.resolve_open_incident(incident.incident_id, ended_at=at(200), notes="")
    assert resolved is not None and resolved.logs_state is LogCaptureState.PENDING
    row = await world.row(incident)
    assert (row["logs_capture_status"], row["logs_capture_due_at"]) == ("pending", at(230))
    assert await world.run_due(231) == 1
    assert (await world.row(incident))["logs_capture_runs"] == 2


async def test_the_stored_plan_says_why_nothing_will_run(world: World) -> None:
    """What ``capture_now`` runs: no plan, or a capture disabled since, runs nothing, saying why."""
    unplanned = await world.store.create_incident(make_incident("unplanned"))
    stored = await world.captures.get_log_capture(unplanned.incident_id)
    assert stored is not None and stored.state is None
    assert stored.plan == CapturePlan(
        enabled=False, disabled_reason="no log capture was planned for this incident"
    )
    incident = await world.incident(plan())
    await world.run_due(125, world.service(loki=False))
    stored = await world.captures.get_log_capture(incident.incident_id)
    assert stored is not None
    assert (stored.state, stored.plan.enabled, stored.plan.disabled_reason) == (
        LogCaptureState.DISABLED,
        False,
        "Loki is not configured",
    )
    view = await world.service().capture_now(incident.incident_id)
    assert view is not None and view["state"] == "disabled"
    assert world.loki.requests == []
