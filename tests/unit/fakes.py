"""In-memory stand-ins for the ports, for fast unit tests of the services."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from downtime_operator.domain.log_capture import (
    CapturePlan,
    CaptureResult,
    LogQuery,
    PendingCapture,
    StoredCapture,
    state_at_resolution,
)
from downtime_operator.domain.log_entries import LogBatch, LogEntry
from downtime_operator.domain.models import (
    CheckResult,
    Incident,
    IncidentStatus,
    LogCaptureState,
    MonitorRef,
    MonitorSpec,
    Severity,
)
from downtime_operator.domain.statistics import DowntimeSpan
from downtime_operator.services.ports import LogSourceError, OpenIncidentExistsError


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class ClockStop:
    """Sleeping advances the fake clock; stops once the clock passes ``until``."""

    def __init__(self, clock: FakeClock, until: datetime) -> None:
        self.clock = clock
        self.until = until

    def is_set(self) -> bool:
        return self.clock.now() >= self.until

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(max(seconds, 0.0))
        await asyncio.sleep(0)  # let the write queues' workers run between checks


class ScriptedProber:
    """Answers by the fake clock's time: ``down(t)`` says whether the target is failing."""

    def __init__(
        self, clock: FakeClock, down: Callable[[datetime], bool], error: str = "HTTP 503"
    ) -> None:
        self.clock = clock
        self.down = down
        self.error = error
        self.checks: list[datetime] = []
        self.headers: list[tuple[tuple[str, str], ...]] = []

    async def check(self, spec: MonitorSpec) -> CheckResult:
        now = self.clock.now()
        self.checks.append(now)
        self.headers.append(spec.headers)
        if self.down(now):
            return CheckResult(at=now, ok=False, status_code=503, latency_ms=3.0, error=self.error)
        return CheckResult(at=now, ok=True, status_code=200, latency_ms=3.0)


@dataclasses.dataclass(kw_only=True)
class CaptureRow:
    """The log-capture columns of one incident row."""

    plan: CapturePlan
    due_at: datetime | None
    error: str | None = None
    claimed_until: datetime | None = None
    records: list[dict[str, Any]] | None = None
    file_path: str | None = None
    analysis: dict[str, Any] | None = None
    runs: int = 0
    count: int | None = None
    truncated: bool | None = None
    available: int | None = None


class MemoryStore:
    """IncidentStore and LogCaptureStore in memory, with the PostgreSQL store's rules."""

    def __init__(self) -> None:
        self.rows: dict[UUID, Incident] = {}
        self.captures: dict[UUID, CaptureRow] = {}
        self.available = True
        self.writes: list[str] = []

    def _check(self) -> None:
        if not self.available:
            raise ConnectionRefusedError("store down")

    async def create_incident(self, incident: Incident) -> Incident:
        self._check()
        if incident.incident_id in self.rows:
            return self.rows[incident.incident_id]
        existing = await self.get_open_incident(incident.monitor)
        if existing is not None:
            raise OpenIncidentExistsError(existing)
        self.rows[incident.incident_id] = dataclasses.replace(incident)
        self.writes.append(f"create {incident.incident_id}")
        return incident

    async def update_incident(self, incident_id: UUID, fields: Mapping[str, Any]) -> None:
        self._check()
        row = self.rows[incident_id]
        for key, value in fields.items():
            converters = {"severity": Severity, "status": IncidentStatus}
            setattr(row, key, converters[key](value) if key in converters else value)
        self.writes.append(f"update {incident_id} {sorted(fields)}")

    async def resolve_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None = None
    ) -> Incident | None:
        self._check()
        row = self.rows.get(incident_id)
        if row is None or row.status is IncidentStatus.RESOLVED:
            return row
        row.status = IncidentStatus.RESOLVED
        row.ended_at = ended_at
        row.duration_seconds = (ended_at - row.started_at).total_seconds()
        row.notes = notes
        capture = self.captures.get(incident_id)
        if capture is not None and state_at_resolution(row.logs_state) is LogCaptureState.PENDING:
            row.logs_state = LogCaptureState.PENDING
            capture.due_at = max(ended_at, row.started_at) + capture.plan.after
        self.writes.append(f"resolve {incident_id}")
        return row

    # -- LogCaptureStore -------------------------------------------------------------------------

    async def schedule_log_capture(
        self, incident_id: UUID, *, plan: CapturePlan, due_at: datetime
    ) -> None:
        self._check()
        row = self.rows.get(incident_id)
        if row is None or row.logs_state is not None:
            return
        row.logs_state = LogCaptureState.PENDING if plan.enabled else LogCaptureState.DISABLED
        self.captures[incident_id] = CaptureRow(
            plan=plan, due_at=due_at if plan.enabled else None, error=plan.disabled_reason
        )
        self.writes.append(f"plan capture {incident_id}")

    async def claim_due_log_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> PendingCapture | None:
        self._check()
        due = [
            (capture.due_at, incident_id)
            for incident_id, capture in self.captures.items()
            if self.rows[incident_id].logs_state is LogCaptureState.PENDING
            and capture.due_at is not None
            and capture.due_at <= now
            and (capture.claimed_until is None or capture.claimed_until <= now)
        ]
        if not due:
            return None
        due_at, incident_id = min(due)
        capture = self.captures[incident_id]
        capture.claimed_until = lease_until
        return PendingCapture(
            incident=dataclasses.replace(self.rows[incident_id]),
            plan=capture.plan,
            due_at=due_at,
            file_path=capture.file_path,
        )

    async def record_log_capture(
        self,
        incident_id: UUID,
        *,
        result: CaptureResult,
        due_at: datetime | None,
        file_path: str | None = None,
    ) -> bool:
        self._check()
        row = self.rows.get(incident_id)
        capture = self.captures.get(incident_id)
        if row is None or capture is None:
            return False
        if due_at is not None and (
            row.logs_state is not LogCaptureState.PENDING or capture.due_at != due_at
        ):
            return False
        scheduled_later = (
            due_at is None
            and row.logs_state is LogCaptureState.PENDING
            and capture.due_at is not None
            and capture.due_at > result.captured_at
        )
        row.logs_state = LogCaptureState.PENDING if scheduled_later else result.state
        capture.error = result.error
        capture.runs += 1
        capture.claimed_until = None
        if result.state is LogCaptureState.CAPTURED:
            capture.records = None if file_path else list(result.records)
            capture.file_path = file_path
            capture.count = len(result.records)
            capture.truncated = result.truncated
            capture.available = result.available
            capture.analysis = None if result.analysis is None else result.analysis.to_dict()
        self.writes.append(f"record capture {incident_id} {result.state.value}")
        return True

    async def release_log_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        capture = self.captures.get(incident_id)
        if capture is not None and capture.due_at == due_at:
            capture.claimed_until = None

    async def get_log_capture(self, incident_id: UUID) -> StoredCapture | None:
        self._check()
        row = self.rows.get(incident_id)
        if row is None:
            return None
        capture = self.captures.get(incident_id)
        plan = capture.plan if capture else CapturePlan(enabled=False, disabled_reason="none")
        return StoredCapture(
            incident=dataclasses.replace(row),
            plan=plan,
            state=row.logs_state,
            due_at=capture.due_at if capture else None,
            records=capture.records if capture else None,
            file_path=capture.file_path if capture else None,
            analysis=capture.analysis if capture else None,
        )

    async def get_incident(self, incident_id: UUID) -> Incident | None:
        self._check()
        return self.rows.get(incident_id)

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None:
        """A copy, like a real store's: a runner's changes must go through the writes."""
        self._check()
        found = next((r for r in self.rows.values() if r.monitor == monitor and r.is_open), None)
        return None if found is None else dataclasses.replace(found)

    async def monitor_incident_spans(
        self, monitor: MonitorRef, *, since: datetime, until: datetime
    ) -> list[DowntimeSpan]:
        self._check()
        return [
            (row.started_at, row.ended_at)
            for row in self.rows.values()
            if row.monitor == monitor
            and row.started_at < until
            and (row.ended_at is None or row.ended_at > since)
        ]

    async def get_ongoing_incidents(self) -> list[Incident]:
        self._check()
        return [r for r in self.rows.values() if r.is_open]

    async def get_recent_incidents(
        self,
        *,
        limit: int = 50,
        status: IncidentStatus | None = None,
        severity: Severity | None = None,
        environment: str | None = None,
    ) -> list[Incident]:
        self._check()
        rows = sorted(self.rows.values(), key=lambda r: r.started_at, reverse=True)
        return rows[:limit]


class RecordingResources:
    def __init__(self) -> None:
        self.incidents: dict[str, Incident] = {}
        self.status_patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.log_captures: list[tuple[str, CaptureResult]] = []

    async def upsert_incident(self, incident: Incident) -> None:
        self.incidents[incident.k8s_name] = dataclasses.replace(incident)

    async def find_open_incident(self, monitor: MonitorRef) -> Incident | None:
        return next(
            (i for i in self.incidents.values() if i.monitor == monitor and i.is_open), None
        )

    async def patch_monitor_status(self, monitor: MonitorRef, status: Mapping[str, Any]) -> None:
        self.status_patches.append(dict(status))

    async def post_event(
        self, monitor: MonitorRef, *, reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append((reason, message))

    async def delete_incident(self, incident: Incident) -> None:
        self.incidents.pop(incident.k8s_name, None)

    async def publish_log_capture(self, incident: Incident, result: CaptureResult) -> None:
        self.log_captures.append((incident.k8s_name, result))


class FakeLogSource:
    """Answers every fetch with the entries inside the asked window, or raises ``error``."""

    def __init__(self, entries: list[LogEntry] | None = None) -> None:
        self.entries = entries or []
        self.error: str | None = None
        self.queries: list[LogQuery] = []

    async def fetch(self, query: LogQuery) -> LogBatch:
        self.queries.append(query)
        if self.error is not None:
            raise LogSourceError(self.error)
        inside = [e for e in self.entries if query.window.contains(e.timestamp_ns)]
        return LogBatch(
            entries=inside[: query.max_lines],
            available=len(inside),
            truncated=len(inside) > query.max_lines,
        )


class MemoryFiles:
    """CaptureFiles in memory."""

    def __init__(self) -> None:
        self.files: dict[str, list[dict[str, Any]]] = {}
        self.written = 0

    async def write(self, incident_id: UUID, records: list[dict[str, Any]]) -> str:
        self.written += 1
        path = f"/logs/{incident_id}-{self.written}.json"
        self.files[path] = list(records)
        return path

    async def read(self, path: str) -> list[dict[str, Any]]:
        if path not in self.files:
            raise FileNotFoundError(path)
        return list(self.files[path])

    async def remove(self, path: str) -> bool:
        return self.files.pop(path, None) is not None
