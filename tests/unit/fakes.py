"""In-memory stand-ins for the ports, for fast unit tests of the services."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres.rows import (
    clean_text,
    duration_between,
    require_aware,
    to_json_text,
    truncate_body,
)
from downtime_operator.adapters.sqlite import columns
from downtime_operator.domain.evidence import ServerInfo, server_info_from_json, snapshot_from_json
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
from downtime_operator.domain.severity import SeverityChange
from downtime_operator.domain.statistics import DowntimeSpan
from downtime_operator.domain.window import CaptureWindow
from downtime_operator.services.ports import (
    ExpiredIncident,
    LogSourceError,
    OpenIncidentExistsError,
)


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
        self,
        clock: FakeClock,
        down: Callable[[datetime], bool],
        error: str = "HTTP 503",
        server: ServerInfo | None = None,
    ) -> None:
        self.clock = clock
        self.down = down
        self.error = error
        self.server = server
        """What a failed check asked for evidence describes."""
        self.checks: list[datetime] = []
        self.headers: list[tuple[tuple[str, str], ...]] = []
        self.evidence: list[datetime] = []
        """When a check was asked for evidence."""

    async def check(self, spec: MonitorSpec, *, evidence: bool = False) -> CheckResult:
        now = self.clock.now()
        self.checks.append(now)
        self.headers.append(spec.headers)
        if evidence:
            self.evidence.append(now)
        if self.down(now):
            return CheckResult(
                at=now,
                ok=False,
                status_code=503,
                latency_ms=3.0,
                error=self.error,
                server=self.server if evidence else None,
            )
        return CheckResult(at=now, ok=True, status_code=200, latency_ms=3.0)


UNPLANNED = CapturePlan(enabled=False)
"""A row's plan before ``schedule_log_capture``: no query, so nothing to run."""
NOT_PLANNED = "no log capture was planned for this incident"
"""The reason such a plan reads back with, as from the SQL stores."""

CAPTURE_COLUMNS: Mapping[str, str] = {
    "logs_capture_due_at": "due_at",
    "logs_capture_error": "error",
    "logs_captured": "records",
    "logs_file_path": "file_path",
    "log_analysis": "analysis",
    "logs_count": "count",
    "logs_truncated": "truncated",
}
"""Updatable columns that ``CaptureRow`` holds, and its attribute for each."""

_INCIDENT_FIELDS = frozenset(f.name for f in dataclasses.fields(Incident))

_DECODE: Mapping[str, Callable[[Any], Any]] = {
    # ``columns.update_values`` validates as the SQLite store does; these undo its encodings.
    "status": IncidentStatus,
    "severity": Severity,
    "logs_capture_status": LogCaptureState,
    "ended_at": datetime.fromisoformat,
    "logs_capture_due_at": datetime.fromisoformat,
    "logs_truncated": bool,
    **dict.fromkeys(columns.JSON_COLUMNS, json.loads),
    # An ``Incident``'s own JSON columns read back as the SQL stores read them.
    "metrics_snapshot": snapshot_from_json,
    "server_info": server_info_from_json,
}


def _aware(value: datetime, what: str) -> datetime:
    return require_aware(value, what).astimezone(UTC)


def _json_copy(value: Any) -> Any:
    """What a JSON column gives back: a fresh copy, datetimes as ISO text."""
    text = to_json_text(value)
    return None if text is None else json.loads(text)


def _as_created(incident: Incident) -> Incident:
    """The row a SQL store inserts: aware times, clean text, a truncated body, the duration of an
    ended incident, and no capture state (that is the plan's, ``schedule_log_capture``)."""
    started_at = _aware(incident.started_at, "started_at")
    ended_at = None if incident.ended_at is None else _aware(incident.ended_at, "ended_at")
    duration = incident.duration_seconds
    if ended_at is not None and duration is None:
        duration = duration_between(started_at, ended_at)
    return dataclasses.replace(
        incident,
        started_at=started_at,
        detected_at=_aware(incident.detected_at, "detected_at"),
        ended_at=ended_at,
        duration_seconds=duration,
        severity=Severity(incident.severity),
        status=IncidentStatus(incident.status),
        error_message=clean_text(incident.error_message),
        response_body=truncate_body(incident.response_body),
        notes=clean_text(incident.notes),
        root_cause=clean_text(incident.root_cause),
        playbook=clean_text(incident.playbook),
        logs_state=None,
    )


def _newest_first(incidents: Iterable[Incident]) -> list[Incident]:
    """Copies, ``ORDER BY started_at DESC, incident_id``."""
    by_id = sorted(incidents, key=lambda i: i.incident_id)
    return [dataclasses.replace(i) for i in sorted(by_id, key=lambda i: i.started_at, reverse=True)]


@dataclasses.dataclass(kw_only=True)
class CaptureRow:
    """The columns of one incident row beyond ``Incident``'s fields: the log capture's, mostly."""

    plan: CapturePlan = UNPLANNED
    """As scheduled; read back through ``MemoryStore._plan``, as the SQL stores read theirs."""
    due_at: datetime | None = None
    error: str | None = None
    claimed_until: datetime | None = None
    records: list[dict[str, Any]] | None = None
    file_path: str | None = None
    analysis: dict[str, Any] | None = None
    runs: int = 0
    count: int | None = None
    truncated: bool | None = None
    available: int | None = None
    window: CaptureWindow | None = None
    severity_changes: list[dict[str, str]] | None = None
    """``severity_changes`` as its JSON, each escalation appended by ``escalate_incident``."""


class MemoryStore:
    """IncidentStore, LogCaptureStore and RetentionStore in memory, run by ``tests/contract`` as a
    third store so that it keeps the SQL stores' rules.

    ``rows`` and ``captures`` are the table, one ``Incident`` and one ``CaptureRow`` per incident,
    changed in place: a test may hold them and watch them change. Reads return copies, as a
    database's do. ``reopen`` is another process on the same data; ``available = False`` makes
    every call fail as an unreachable database does.
    """

    def __init__(self) -> None:
        self.rows: dict[UUID, Incident] = {}
        self.captures: dict[UUID, CaptureRow] = {}
        self.available = True
        self.writes: list[str] = []

    def reopen(self) -> MemoryStore:
        """Another instance over the same data, like a second connection to one database."""
        other = MemoryStore()
        other.rows, other.captures = self.rows, self.captures
        return other

    async def close(self) -> None:
        """Nothing to release."""

    def _check(self) -> None:
        if not self.available:
            raise ConnectionRefusedError("store down")

    def _open_row(self, monitor: MonitorRef, *, besides: UUID | None = None) -> Incident | None:
        return next(
            (
                r
                for r in self.rows.values()
                if r.monitor == monitor and r.is_open and r.incident_id != besides
            ),
            None,
        )

    # -- IncidentStore ---------------------------------------------------------------------------

    async def create_incident(self, incident: Incident) -> Incident:
        self._check()
        created = _as_created(incident)
        stored = self.rows.get(created.incident_id)
        if stored is not None:  # a retried create: what is stored, untouched
            return dataclasses.replace(stored)
        existing = self._open_row(created.monitor) if created.is_open else None
        if existing is not None:
            raise OpenIncidentExistsError(dataclasses.replace(existing))
        self.rows[created.incident_id] = created
        self.captures[created.incident_id] = CaptureRow()
        self.writes.append(f"create {incident.incident_id}")
        return dataclasses.replace(created)

    async def update_incident(self, incident_id: UUID, fields: Mapping[str, Any]) -> None:
        self._check()
        # The whitelist and value checks (ValueError); no keys: nothing is sealed.
        encoded = columns.update_values(incident_id, fields, LogKeyRing())
        values = {
            name: None if value is None else _DECODE.get(name, lambda v: v)(value)
            for name, value in encoded.items()
        }
        row = self.rows.get(incident_id)
        if row is None or not values:
            return
        if "ended_at" in values and "duration_seconds" not in values:
            ended_at = values["ended_at"]
            values["duration_seconds"] = (
                None if ended_at is None else duration_between(row.started_at, ended_at)
            )
        open_after = values.get("status", row.status) is not IncidentStatus.RESOLVED
        if open_after and self._open_row(row.monitor, besides=incident_id) is not None:
            raise ValueError(f"incident {incident_id} update refused: {row.monitor} has one open")
        capture = self.captures[incident_id]
        for name, value in values.items():
            if name == "logs_capture_status":
                row.logs_state = value
            elif name in _INCIDENT_FIELDS:
                setattr(row, name, value)
            else:
                setattr(capture, CAPTURE_COLUMNS[name], value)
        self.writes.append(f"update {incident_id} {sorted(fields)}")

    async def escalate_incident(
        self, incident_id: UUID, *, change: SeverityChange, failed_checks: int
    ) -> None:
        self._check()
        row = self.rows.get(incident_id)
        if row is None:
            return
        if row.severity is not change.severity:  # else a retry: appended already
            capture = self.captures[incident_id]
            capture.severity_changes = [*(capture.severity_changes or ()), change.to_json()]
        row.severity = change.severity
        row.failed_checks = failed_checks
        self.writes.append(f"escalate {incident_id}")

    async def resolve_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None = None
    ) -> Incident | None:
        self._check()
        ended_at = _aware(ended_at, "ended_at")
        row = self.rows.get(incident_id)
        if row is None:
            return None
        if row.status is not IncidentStatus.RESOLVED:
            ended_at = max(ended_at, row.started_at)  # a clock that stepped back
            row.status = IncidentStatus.RESOLVED
            row.ended_at = ended_at
            row.duration_seconds = duration_between(row.started_at, ended_at)
            row.notes = columns.appended_notes(row.notes, clean_text(notes))
            if state_at_resolution(row.logs_state) is LogCaptureState.PENDING:
                capture = self.captures[incident_id]
                row.logs_state = LogCaptureState.PENDING  # the final capture is due
                capture.due_at = ended_at + capture.plan.after
            self.writes.append(f"resolve {incident_id}")
        return dataclasses.replace(row)

    async def annotate_incident(
        self, incident_id: UUID, *, root_cause: str | None, note: str | None
    ) -> Incident | None:
        """``IncidentTransitions.annotate_incident``, held to the SQL stores' contract."""
        self._check()
        row = self.rows.get(incident_id)
        if row is None:
            return None
        if root_cause is not None:
            row.root_cause = clean_text(root_cause)
        row.notes = columns.appended_notes(row.notes, clean_text(note))
        self.writes.append(f"annotate {incident_id}")
        return dataclasses.replace(row)

    async def get_incident(self, incident_id: UUID) -> Incident | None:
        self._check()
        row = self.rows.get(incident_id)
        return None if row is None else dataclasses.replace(row)

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None:
        self._check()
        found = self._open_row(monitor)
        return None if found is None else dataclasses.replace(found)

    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[DowntimeSpan]]:
        self._check()
        since, until = _aware(since, "since"), _aware(until, "until")
        spans: dict[MonitorRef, list[DowntimeSpan]] = {}
        for row in self.rows.values():
            if row.started_at < until and (row.ended_at is None or row.ended_at > since):
                spans.setdefault(row.monitor, []).append((row.started_at, row.ended_at))
        return spans

    async def get_ongoing_incidents(self) -> list[Incident]:
        self._check()
        return _newest_first(r for r in self.rows.values() if r.is_open)

    async def get_recent_incidents(
        self,
        *,
        limit: int = 50,
        status: IncidentStatus | None = None,
        severity: Severity | None = None,
        environment: str | None = None,
    ) -> list[Incident]:
        self._check()
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        wanted = {
            "status": None if status is None else IncidentStatus(status),
            "severity": None if severity is None else Severity(severity),
            "environment": environment,
        }
        found = [
            row
            for row in self.rows.values()
            if all(value is None or getattr(row, name) == value for name, value in wanted.items())
        ]
        return _newest_first(found)[:limit]

    # -- RetentionStore --------------------------------------------------------------------------

    async def find_expired_incidents(
        self, *, days: int, keep_critical: bool, now: datetime
    ) -> list[ExpiredIncident]:
        self._check()
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        cutoff = _aware(now, "now") - timedelta(days=days)
        expired = sorted(
            (row.ended_at, row.incident_id)
            for row in self.rows.values()
            if row.status is IncidentStatus.RESOLVED
            and row.ended_at is not None
            and row.ended_at < cutoff
            and not (keep_critical and row.severity is Severity.CRITICAL)
        )
        return [
            ExpiredIncident(
                incident=dataclasses.replace(self.rows[incident_id]),
                logs_file_path=self.captures[incident_id].file_path,
            )
            for _, incident_id in expired
        ]

    async def delete_resolved_incident(self, incident_id: UUID) -> bool:
        self._check()
        row = self.rows.get(incident_id)
        if row is None or row.status is not IncidentStatus.RESOLVED:
            return False
        del self.rows[incident_id], self.captures[incident_id]
        self.writes.append(f"delete {incident_id}")
        return True

    # -- LogCaptureStore -------------------------------------------------------------------------

    def _plan(self, incident_id: UUID) -> CapturePlan:
        """The stored plan as the SQL stores read it back: without a query, or once the capture
        is disabled, it runs nothing, and its capture error says why."""
        state, capture = self.rows[incident_id].logs_state, self.captures[incident_id]
        enabled = capture.plan.query is not None and state is not LogCaptureState.DISABLED
        reason = None if enabled else capture.error or NOT_PLANNED
        return dataclasses.replace(capture.plan, enabled=enabled, disabled_reason=reason)

    async def schedule_log_capture(
        self, incident_id: UUID, *, plan: CapturePlan, due_at: datetime
    ) -> None:
        self._check()
        row = self.rows.get(incident_id)
        if row is None or row.logs_state is not None:
            return
        capture = self.captures[incident_id]
        row.logs_state = LogCaptureState.PENDING if plan.enabled else LogCaptureState.DISABLED
        capture.plan = plan
        capture.due_at = _aware(due_at, "due_at") if plan.enabled else None
        capture.error = plan.disabled_reason
        self.writes.append(f"plan capture {incident_id}")

    async def claim_due_log_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> PendingCapture | None:
        self._check()
        now = _aware(now, "now")
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
        capture.claimed_until = _aware(lease_until, "lease_until")
        return PendingCapture(
            incident=dataclasses.replace(self.rows[incident_id]),
            plan=self._plan(incident_id),
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
        if row is None:
            return False
        capture = self.captures[incident_id]
        pending = row.logs_state is LogCaptureState.PENDING
        if due_at is not None and not (pending and capture.due_at == due_at):
            return False  # recorded already, or overtaken by a newer schedule
        scheduled_later = (
            due_at is None
            and pending
            and capture.due_at is not None
            and capture.due_at > result.captured_at
        )
        row.logs_state = LogCaptureState.PENDING if scheduled_later else result.state
        capture.runs += 1
        capture.claimed_until = None
        if result.state is not LogCaptureState.CAPTURED:
            capture.error = clean_text(result.error)  # the entries of an earlier run stay
        else:
            capture.error = None
            capture.records = None if file_path is not None else _json_copy(result.records)
            capture.file_path = file_path
            capture.count = len(result.records)
            capture.truncated = result.truncated
            capture.available = result.available
            capture.analysis = None if result.analysis is None else result.analysis.to_dict()
            capture.window = result.window
        self.writes.append(f"record capture {incident_id} {result.state.value}")
        return True

    async def release_log_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        self._check()
        row = self.rows.get(incident_id)
        if row is not None and row.logs_state is LogCaptureState.PENDING:
            capture = self.captures[incident_id]
            if capture.due_at == due_at:
                capture.claimed_until = None

    async def get_log_capture(self, incident_id: UUID) -> StoredCapture | None:
        self._check()
        row = self.rows.get(incident_id)
        if row is None:
            return None
        capture = self.captures[incident_id]
        return StoredCapture(
            incident=dataclasses.replace(row),
            plan=self._plan(incident_id),
            state=row.logs_state,
            due_at=capture.due_at,
            records=_json_copy(capture.records),
            file_path=capture.file_path,
            analysis=_json_copy(capture.analysis),
        )


class RecordingResources:
    def __init__(self) -> None:
        self.incidents: dict[str, Incident] = {}
        self.status_patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.open_lists = 0
        """DowntimeIncident lists of a whole namespace (the start-up reload)."""
        self.open_reads = 0
        """One monitor's open DowntimeIncident asked for (a runner's reload)."""
        self.log_captures: list[tuple[str, CaptureResult]] = []

    async def upsert_incident(self, incident: Incident) -> None:
        self.incidents[incident.k8s_name] = dataclasses.replace(incident)

    async def find_open_incident(self, monitor: MonitorRef) -> Incident | None:
        self.open_reads += 1
        return next(
            (i for i in self.incidents.values() if i.monitor == monitor and i.is_open), None
        )

    async def find_open_incidents(self, namespace: str) -> list[Incident]:
        self.open_lists += 1
        return [
            i for i in self.incidents.values() if i.monitor.namespace == namespace and i.is_open
        ]

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

    async def read(self, path: str, *, incident_id: UUID) -> list[dict[str, Any]]:
        if path not in self.files:
            raise FileNotFoundError(path)
        return list(self.files[path])

    async def remove(self, path: str) -> bool:
        return self.files.pop(path, None) is not None
