"""The I/O the services need, as Protocols. Adapters implement them; tests pass fakes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from downtime_operator.domain.models import (
    CheckResult,
    Incident,
    IncidentStatus,
    MonitorRef,
    MonitorSpec,
    Severity,
)


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class Prober(Protocol):
    async def check(self, spec: MonitorSpec) -> CheckResult: ...


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

    async def resolve_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None = None
    ) -> Incident | None:
        """Close the incident; resolving a resolved incident returns it unchanged."""
        ...

    async def get_incident(self, incident_id: UUID) -> Incident | None: ...

    async def get_open_incident(self, monitor: MonitorRef) -> Incident | None: ...

    async def get_ongoing_incidents(self) -> list[Incident]: ...

    async def monitor_downtime_seconds(
        self, monitor: MonitorRef, *, since: datetime, until: datetime
    ) -> float:
        """Seconds of ``[since, until)`` the monitor spent in incidents, for its uptime."""
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

    async def patch_monitor_status(
        self, monitor: MonitorRef, status: Mapping[str, Any]
    ) -> None: ...

    async def post_event(
        self, monitor: MonitorRef, *, reason: str, message: str, warning: bool = False
    ) -> None: ...


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
