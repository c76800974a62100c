"""In-memory stand-ins for the ports, for fast unit tests of the services."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from downtime_operator.domain.models import (
    CheckResult,
    Incident,
    IncidentStatus,
    MonitorRef,
    MonitorSpec,
    Severity,
)
from downtime_operator.services.ports import OpenIncidentExistsError


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

    async def check(self, spec: MonitorSpec) -> CheckResult:
        now = self.clock.now()
        self.checks.append(now)
        if self.down(now):
            return CheckResult(at=now, ok=False, status_code=503, latency_ms=3.0, error=self.error)
        return CheckResult(at=now, ok=True, status_code=200, latency_ms=3.0)


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[UUID, Incident] = {}
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
            setattr(row, key, Severity(value) if key == "severity" else value)
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
        self.writes.append(f"resolve {incident_id}")
        return row

    async def get_incident(self, incident_id: UUID) -> Incident | None:
        self._check()
        return self.rows.get(incident_id)

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None:
        self._check()
        return next((r for r in self.rows.values() if r.monitor == monitor and r.is_open), None)

    async def monitor_downtime_seconds(
        self, monitor: MonitorRef, *, since: datetime, until: datetime
    ) -> float:
        self._check()
        total = 0.0
        for row in self.rows.values():
            if row.monitor != monitor:
                continue
            end = min(row.ended_at or until, until)
            total += max(0.0, (end - max(row.started_at, since)).total_seconds())
        return total

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
