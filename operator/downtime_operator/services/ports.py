"""The I/O the services need, as Protocols. Adapters implement them; tests pass fakes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from downtime_operator.domain.log_capture import (
    CapturePlan,
    CaptureResult,
    LogQuery,
    PendingCapture,
    StoredCapture,
)
from downtime_operator.domain.log_entries import LogBatch
from downtime_operator.domain.models import (
    CheckResult,
    Incident,
    IncidentStatus,
    MonitorRef,
    MonitorSpec,
    Severity,
)
from downtime_operator.domain.severity import SeverityChange
from downtime_operator.domain.statistics import DowntimeSpan


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class Prober(Protocol):
    async def check(self, spec: MonitorSpec, *, evidence: bool = False) -> CheckResult:
        """One check. With ``evidence`` (its failure would open an incident), a failed result
        also describes the server (``CheckResult.server``); a healthy one never does extra
        work."""
        ...


class WriteRefusedError(Exception):
    """The dependency refused the write for good (bad request, schema violation): retrying the
    same write cannot succeed, and in an ordered queue it would hold up every write after it."""


class OpenIncidentExistsError(Exception):
    """The store already holds an open incident for this monitor (the partial unique index)."""

    def __init__(self, existing: Incident) -> None:
        self.existing = existing
        super().__init__(
            f"monitor {existing.monitor} already has open incident {existing.incident_id}"
        )


class IncidentStore(Protocol):
    """The system of record. Every write is idempotent so it can be retried after a failure."""

    async def create_incident(self, incident: Incident) -> Incident:
        """Insert; a repeat of the same incident_id is a no-op returning the stored row.

        Raises OpenIncidentExistsError when another open incident exists for the monitor.
        """
        ...

    async def update_incident(self, incident_id: UUID, fields: Mapping[str, Any]) -> None: ...

    async def escalate_incident(
        self, incident_id: UUID, *, change: SeverityChange, failed_checks: int
    ) -> None:
        """Set the severity and the failed-check count, and append ``change`` to the incident's
        ``severity_changes``, in one write. A retry of a change already written (the stored
        severity is ``change.severity`` already) appends nothing: each change is kept once."""
        ...

    async def resolve_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None = None
    ) -> Incident | None:
        """Close the incident; resolving a resolved incident returns it unchanged."""
        ...

    async def get_incident(self, incident_id: UUID) -> Incident | None: ...

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None: ...

    async def get_ongoing_incidents(self) -> list[Incident]: ...

    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[DowntimeSpan]]:
        """Every monitor's incidents that overlap ``[since, until)``, for their uptime: one
        query for all monitors and every window (the caller clips them). Monitors without
        such an incident are absent."""
        ...

    async def get_recent_incidents(
        self,
        *,
        limit: int = 50,
        status: IncidentStatus | None = None,
        severity: Severity | None = None,
        environment: str | None = None,
    ) -> list[Incident]: ...


class IncidentResources(Protocol):
    """The Kubernetes side: DowntimeIncident CRs, HealthMonitor status and Events."""

    async def upsert_incident(self, incident: Incident) -> None:
        """Create the DowntimeIncident (idempotent by name) and bring its status up to date."""
        ...

    async def find_open_incident(self, monitor: MonitorRef) -> Incident | None:
        """The monitor's unresolved DowntimeIncident, for a restart while the store is down."""
        ...

    async def find_open_incidents(self, namespace: str) -> list[Incident]:
        """Every unresolved DowntimeIncident of a namespace: one request for all the monitors
        of a namespace starting together, instead of one each."""
        ...

    async def patch_monitor_status(
        self, monitor: MonitorRef, status: Mapping[str, Any]
    ) -> None: ...

    async def post_event(
        self, monitor: MonitorRef, *, reason: str, message: str, warning: bool = False
    ) -> None: ...

    async def delete_incident(self, incident: Incident) -> None:
        """Delete the incident's DowntimeIncident (retention); one already gone is no error."""
        ...


class StopSignal(Protocol):
    """Tells a long-running loop to finish; ``sleep`` returns early when it is set."""

    def is_set(self) -> bool: ...

    async def sleep(self, seconds: float) -> None: ...


class IncidentLogs(Protocol):
    """Captured logs of incidents, as the admin API serves them (implemented with log capture)."""

    async def get_filtered_logs(
        self,
        incident_id: UUID,
        *,
        level: str | None = None,
        logger_name: str | None = None,
        search: str | None = None,
    ) -> list[dict[str, Any]] | None:
        """Entries {timestamp, level, logger, message, labels}; None for an unknown incident."""
        ...

    async def get_analysis(self, incident_id: UUID) -> dict[str, Any] | None:
        """{total_logs, error_count, warning_count, error_types, top_errors}; None if unknown."""
        ...

    async def capture_now(self, incident_id: UUID) -> dict[str, Any] | None:
        """Run a capture now; the resulting capture state ({state, lines, ...}); None if unknown."""
        ...


@dataclass(frozen=True, kw_only=True)
class ExpiredIncident:
    """A resolved incident past retention, with the captured-log file its row points at."""

    incident: Incident
    logs_file_path: str | None = None


class RetentionStore(Protocol):
    """What retention needs from the store: what has expired, then each row deleted last.

    Deleting rows one by one, after their CR and log file are gone, makes the row the to-do
    list: a run that fails half-way leaves rows that the next run finishes, never orphans.
    """

    async def find_expired_incidents(
        self, *, days: int, keep_critical: bool, now: datetime
    ) -> list[ExpiredIncident]:
        """Resolved incidents that ended more than ``days`` before ``now``, oldest first."""
        ...

    async def delete_resolved_incident(self, incident_id: UUID) -> bool:
        """Delete the row if it is still resolved; False if it is gone or open again."""
        ...


class LogFiles(Protocol):
    """Captured-log files that incidents point at (``logs_file_path``)."""

    async def remove(self, path: str) -> bool:
        """Delete the file; False when it was already gone (not an error)."""
        ...


class SealedDataError(Exception):
    """Stored captured data (logs, a response body) cannot be opened: its encryption key is not
    in the key ring, or it failed authentication (tampered, or moved from another row). The
    message names the key id and the problem, never a key; the data is never served."""

    def __init__(self, key_id: str, problem: str | None = None) -> None:
        self.key_id = key_id
        self.problem = problem
        message = f"encryption key {key_id} is not available"
        super().__init__(message if problem is None else f"{message}: {problem}")


class LogSourceError(Exception):
    """Logs could not be fetched; the message (e.g. Loki's own error text) is the capture error."""


class LogSource(Protocol):
    """Where application logs come from (Grafana Loki)."""

    async def fetch(self, query: LogQuery) -> LogBatch:
        """The window's earliest ``max_lines`` entries; raises LogSourceError when it cannot."""
        ...


class LogCaptureStore(Protocol):
    """Capture plans and results, kept with the incident so a restarted operator finishes them.

    Resolving an incident (``IncidentStore.resolve_incident``) makes a planned capture pending
    again, due ``after`` past the end: whoever resolves it, the final capture follows.
    """

    async def schedule_log_capture(
        self, incident_id: UUID, *, plan: CapturePlan, due_at: datetime
    ) -> None:
        """Store the plan: pending and due at ``due_at``, or disabled with the plan's reason.

        Only an incident without a plan gets one, so a retried write cannot undo a capture.
        """
        ...

    async def claim_due_log_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> PendingCapture | None:
        """Take the most overdue pending capture no one else holds, until ``lease_until``.

        The lease keeps two operator replicas from running the same capture; when a claimer
        dies, the lease runs out and another one takes the capture.
        """
        ...

    async def record_log_capture(
        self,
        incident_id: UUID,
        *,
        result: CaptureResult,
        due_at: datetime | None,
        file_path: str | None = None,
    ) -> bool:
        """Record a run's result; False when it no longer applies (nothing is written).

        With ``due_at`` (a scheduled run) it applies only while that capture is still pending
        with that due time, so each due capture is recorded once, and a run overtaken by a newer
        schedule (the incident resolved meanwhile) is dropped. Without it (a manual run) it
        always applies, and a capture scheduled for later stays pending. A failed or disabled
        run keeps the entries an earlier run stored.
        """
        ...

    async def release_log_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        """Give a claimed capture back (shutdown mid-capture), so it need not wait for the lease."""
        ...

    async def get_log_capture(self, incident_id: UUID) -> StoredCapture | None:
        """The incident's stored capture; None for an unknown incident."""
        ...


class CaptureFiles(Protocol):
    """Captures too large for the row, one JSON file per incident."""

    async def write(self, incident_id: UUID, records: list[dict[str, Any]]) -> str:
        """Write a new file for the incident (never the one in use); return its path."""
        ...

    async def read(self, path: str, *, incident_id: UUID) -> list[dict[str, Any]]:
        """The entries of the incident's file (opened when sealed: raises SealedDataError when
        it cannot be, e.g. a file of another incident)."""
        ...

    async def remove(self, path: str) -> bool:
        """Delete the file; False when it was already gone (not an error)."""
        ...


class IncidentLogStatus(Protocol):
    """Where a capture's outcome is shown: the DowntimeIncident's ``status.logs``/``analysis``."""

    async def publish_log_capture(self, incident: Incident, result: CaptureResult) -> None:
        """Show the result; an incident resource that no longer exists is no error."""
        ...


class SecretUnavailableError(Exception):
    """A Secret or one of its keys cannot be read; the message says which and why."""


class SecretValues(Protocol):
    """Values of Secret keys, for ``headersFrom`` request headers."""

    async def secret_value(self, *, namespace: str, name: str, key: str) -> str:
        """The key's value as text; raises SecretUnavailableError naming what is missing."""
        ...
