"""The capture lifecycle with fakes: planned at detection, final after resolution, exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from downtime_operator.adapters.kube.bodies import incident_status, log_capture_status
from downtime_operator.domain.analysis import analyze_logs_for_errors
from downtime_operator.domain.log_capture import CaptureResult, LogQuery, failed
from downtime_operator.domain.log_entries import LogBatch, LogEntry
from downtime_operator.domain.models import (
    Incident,
    IncidentStatus,
    LogCaptureState,
    LogStorage,
    MonitorRef,
    Severity,
)
from downtime_operator.domain.window import CaptureWindow, to_unix_ns
from downtime_operator.services.log_capture import LogCaptureDeps, LogCaptureService
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.ports import (
    IncidentLogs,
    IncidentLogStatus,
    LogCaptureStore,
)
from tests.unit.engine_kit import EngineKit
from tests.unit.fakes import (
    ClockStop,
    FakeClock,
    FakeLogSource,
    MemoryFiles,
    MemoryStore,
    RecordingResources,
    ScriptedProber,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REF = MonitorRef(namespace="default", name="api")
CAPTURE = {"query": '{app="api"}', "before": "60s", "after": "30s"}
SPEC: dict[str, Any] = {
    "url": "http://127.0.0.1:1/health",
    "interval": "10s",
    "timeout": "5s",
    "retryInterval": "10s",
    "failureThreshold": 3,
    "logCapture": CAPTURE,
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entry(seconds: float, message: str, level: str = "ERROR") -> LogEntry:
    return LogEntry(
        timestamp_ns=to_unix_ns(at(seconds)), message=message, level=level, logger="app"
    )


def outage(start: float, end: float) -> Callable[[datetime], bool]:
    return lambda now: start <= (now - T0).total_seconds() < end


class World:
    """Runner, capture service and fakes sharing one clock; outage from 100 s to 200 s."""

    def __init__(
        self, *, spec: dict[str, Any] | None = None, loki: bool = True, storage_limit: int = 0
    ) -> None:
        self.clock = FakeClock(T0)
        self.store = MemoryStore()
        self.resources = RecordingResources()
        self.files = MemoryFiles()
        self.source = FakeLogSource(
            [entry(s, f"boom at {s}s") for s in range(0, 400, 5)]
            + [entry(s + 1, "all good", "INFO") for s in range(0, 400, 5)]
        )
        self.spec = dict(spec or SPEC)
        self.kit = EngineKit(
            prober=ScriptedProber(self.clock, outage(100, 200)),
            store=self.store,
            captures=self.store,
            resources=self.resources,
            clock=self.clock,
            loki_configured=loki,
        )
        self.pipeline = self.kit.pipeline
        self.deps = self.kit.deps
        self.runner = MonitorRunner(ref=REF, deps=self.deps)
        self.service = self.new_service()

    def new_service(self) -> LogCaptureService:
        """A capture service as a freshly started operator would have it (nothing in memory)."""
        return LogCaptureService(
            LogCaptureDeps(
                store=self.store,
                files=self.files,
                events=self.pipeline,
                clock=self.clock,
                source=self.source,
            )
        )

    async def run_until(self, seconds: float) -> None:
        """Check until ``T0 + seconds`` with the incident pipeline running."""
        self.kit.start()
        stop = ClockStop(self.clock, at(seconds))
        await self.runner.run(read_spec=lambda: SpecSnapshot(spec=self.spec), stop=stop)
        await self.kit.settle()

    async def capture_due(self, service: LogCaptureService | None = None) -> int:
        self.kit.start()
        ran = await (service or self.service).run_due()
        await self.kit.settle()
        return ran

    @property
    def incident_id(self) -> Any:
        [incident_id] = self.store.rows
        return incident_id


async def test_first_capture_at_detection_then_final_after_end_replaces_it() -> None:
    world = World()
    await world.run_until(150)  # started at 100, detected at 120 (failures at 100, 110, 120)
    incident = world.store.rows[world.incident_id]
    assert incident.logs_state is LogCaptureState.PENDING
    assert world.resources.incidents[incident.k8s_name].logs_state is LogCaptureState.PENDING
    capture = world.store.captures[world.incident_id]
    assert capture.due_at == at(120)

    assert await world.capture_due() == 1
    [first_query] = world.source.queries
    assert (first_query.window.start, first_query.window.end) == (at(40), at(150))
    assert incident.logs_state is LogCaptureState.CAPTURED
    assert capture.records is not None and len(capture.records) == 44  # 40..146 s, 2 per 5 s
    [(name, shown)] = world.resources.log_captures
    assert name == incident.k8s_name and shown.state is LogCaptureState.CAPTURED

    await world.run_until(215)  # ended at 200: the final capture is due at 230
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.logs_state is LogCaptureState.PENDING
    assert capture.due_at == at(230)
    assert await world.capture_due() == 0  # not yet due

    await world.run_until(240)
    assert await world.capture_due() == 1
    final = world.source.queries[-1]
    assert (final.window.start, final.window.end) == (at(40), at(230))
    assert incident.logs_state is LogCaptureState.CAPTURED
    assert capture.records is not None and len(capture.records) == 76  # replaced, not appended
    assert capture.runs == 2
    assert capture.analysis is not None and capture.analysis["error_count"] == 38
    assert await world.capture_due() == 0  # exactly once per due time
    assert [r.state for _, r in world.resources.log_captures] == [LogCaptureState.CAPTURED] * 2


async def test_without_loki_the_capture_is_disabled_and_nothing_fails() -> None:
    world = World(loki=False)
    await world.run_until(400)
    incident = world.store.rows[world.incident_id]
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.logs_state is LogCaptureState.DISABLED
    assert world.store.captures[world.incident_id].error == "Loki is not configured"
    assert world.resources.incidents[incident.k8s_name].logs_state is LogCaptureState.DISABLED
    assert await world.capture_due() == 0
    assert world.source.queries == []


async def test_a_monitor_can_turn_capture_off() -> None:
    world = World(spec={**SPEC, "logCapture": {**CAPTURE, "enabled": False}})
    await world.run_until(400)
    assert world.store.rows[world.incident_id].logs_state is LogCaptureState.DISABLED
    assert world.store.captures[world.incident_id].error == "disabled by logCapture.enabled"
    assert await world.capture_due() == 0


async def test_a_failed_capture_is_recorded_and_the_final_one_still_runs() -> None:
    world = World()
    await world.run_until(150)
    world.source.error = "Loki refused the query: HTTP 400: parse error at line 1"
    await world.capture_due()
    incident = world.store.rows[world.incident_id]
    capture = world.store.captures[world.incident_id]
    assert incident.logs_state is LogCaptureState.FAILED
    assert capture.error == "Loki refused the query: HTTP 400: parse error at line 1"
    assert incident.status is IncidentStatus.ONGOING  # the incident itself is untouched
    [(_, shown)] = world.resources.log_captures
    assert shown.state is LogCaptureState.FAILED and shown.error == capture.error

    world.source.error = None
    await world.run_until(240)
    assert incident.logs_state is LogCaptureState.PENDING  # failed captures are retried finally
    await world.capture_due()
    assert incident.logs_state is LogCaptureState.CAPTURED
    assert capture.error is None


async def test_a_restarted_operator_runs_an_overdue_final_capture_once() -> None:
    world = World()
    await world.run_until(150)
    await world.capture_due()
    await world.run_until(210)  # resolved at 200; the final capture is due at 230
    # The operator is down from 210 to 300; a new process has only the store.
    world.clock.current = at(300)
    restarted = world.new_service()
    assert await world.capture_due(restarted) == 1
    assert await world.capture_due(restarted) == 0
    assert await world.capture_due(world.new_service()) == 0
    final = world.source.queries[-1]
    assert (final.window.start, final.window.end) == (at(40), at(230))
    assert world.store.captures[world.incident_id].runs == 2


async def test_a_claimed_capture_is_not_run_twice_and_a_cancelled_one_is_given_back() -> None:
    world = World()
    await world.run_until(150)
    claimed = await world.store.claim_due_log_capture(now=at(150), lease_until=at(450))
    assert claimed is not None
    assert await world.capture_due() == 0  # another replica holds it
    gate = asyncio.Event()

    async def hang(query: Any) -> Any:
        await gate.wait()

    await world.store.release_log_capture(world.incident_id, due_at=claimed.due_at)
    world.source.fetch = hang  # type: ignore[method-assign]
    task = asyncio.create_task(world.service.run_due())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert world.store.captures[world.incident_id].claimed_until is None  # given back


async def test_a_run_overtaken_by_the_resolution_is_not_recorded() -> None:
    world = World()
    await world.run_until(150)
    gate = asyncio.Event()
    fetch = world.source.fetch

    async def slow_fetch(query: LogQuery) -> LogBatch:
        await gate.wait()
        return await fetch(query)

    world.source.fetch = slow_fetch  # type: ignore[method-assign]
    running = asyncio.create_task(world.service.run_due())
    await asyncio.sleep(0)  # claimed the capture due at 120; now fetching
    await world.run_until(210)  # resolved meanwhile: the capture is now due at 230
    gate.set()
    assert await running == 1
    capture = world.store.captures[world.incident_id]
    assert capture.runs == 0 and capture.records is None  # the stale run was dropped
    assert world.store.rows[world.incident_id].logs_state is LogCaptureState.PENDING
    assert capture.due_at == at(230)
    assert world.resources.log_captures == []


async def test_large_captures_go_to_a_file_and_the_final_one_can_move_back() -> None:
    world = World(spec={**SPEC, "logCapture": {**CAPTURE, "storage": "file"}})
    await world.run_until(150)
    await world.capture_due()
    capture = world.store.captures[world.incident_id]
    assert capture.records is None and capture.file_path in world.files.files
    logs = await world.service.get_filtered_logs(world.incident_id, search="BOOM AT 60")
    assert logs is not None and [r["message"] for r in logs] == ["boom at 60s"]
    path = capture.file_path
    capture.plan = dataclasses.replace(capture.plan, storage=LogStorage.DATABASE)
    await world.run_until(240)
    await world.capture_due()
    assert capture.file_path is None and capture.records is not None
    assert path not in world.files.files  # the replaced file is removed


async def test_capture_now_keeps_the_final_capture_scheduled() -> None:
    world = World()
    await world.run_until(150)
    await world.capture_due()
    await world.run_until(210)  # final capture due at 230
    view = await world.service.capture_now(world.incident_id)
    assert view is not None and view["state"] == "captured" and view["lines"] == 68
    assert view["window"]["end"].startswith("2026-01-01T00:03:30")  # now, not 230 s
    incident = world.store.rows[world.incident_id]
    assert incident.logs_state is LogCaptureState.PENDING
    world.clock.current = at(240)
    assert await world.capture_due() == 1
    assert await world.service.capture_now(uuid4()) is None


async def test_analysis_and_filters_for_the_api() -> None:
    world = World()
    await world.run_until(150)
    await world.capture_due()
    analysis = await world.service.get_analysis(world.incident_id)
    assert analysis is not None
    assert (analysis["total_logs"], analysis["error_count"]) == (44, 22)
    assert analysis["top_errors"][0] == ["boom at <n>s", 22]
    infos = await world.service.get_filtered_logs(world.incident_id, level="info")
    assert infos is not None and {r["message"] for r in infos} == {"all good"}


def test_cr_status_shows_state_lines_window_and_the_top_three_errors() -> None:
    window = CaptureWindow(start_ns=to_unix_ns(at(40)), end_ns=to_unix_ns(at(230)))
    records = [{"level": "ERROR", "message": f"error kind {i % 4}"} for i in range(10)]
    result = CaptureResult(
        state=LogCaptureState.CAPTURED,
        captured_at=at(231),
        window=window,
        records=records,
        available=12,
        truncated=True,
        storage=LogStorage.FILE,
        analysis=analyze_logs_for_errors(records),
    )
    assert log_capture_status(result) == {
        "logs": {
            "state": "captured",
            "error": None,  # clears an earlier run's error in the merge patch
            "lines": 10,
            "truncated": True,
            "storage": "file",
            "window": {
                "start": "2026-01-01T00:00:40.000000000Z",
                "end": "2026-01-01T00:03:50.000000000Z",
            },
        },
        "analysis": {
            "errorCount": 10,
            "warningCount": 0,
            "topErrors": [
                {"message": "error kind <n>", "count": 10},
            ],
        },
    }
    failure = failed(error="HTTP 400: bad", at=at(231), window=window)
    assert log_capture_status(failure)["logs"]["state"] == "failed"
    assert "lines" not in log_capture_status(failure)["logs"]  # an earlier count stays
    assert "analysis" not in log_capture_status(failure)


def test_incident_status_carries_logs_state_only_when_set() -> None:
    incident = Incident(
        incident_id=uuid4(),
        monitor=REF,
        k8s_name="api-1",
        health_endpoint="http://x",
        environment="production",
        started_at=T0,
        detected_at=T0,
        severity=Severity.HIGH,
    )
    assert "logs" not in incident_status(incident)
    incident.logs_state = LogCaptureState.PENDING
    assert incident_status(incident)["logs"] == {"state": "pending"}


def test_the_service_and_adapters_implement_the_ports() -> None:
    """Checked by ``mypy --strict`` on this file; the admin API takes ``IncidentLogs``."""
    world = World()
    logs: IncidentLogs = world.service
    status: IncidentLogStatus = world.resources
    captures: LogCaptureStore = world.store
    assert logs is world.service and status is world.resources and captures is world.store
