"""What the SLO and maintenance services need of a store."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.sla_report import MonitorObjective
from downtime_operator.domain.slo import Span
from downtime_operator.domain.statistics import DowntimeSpan

WindowBody = Mapping[str, Any]
"""A MaintenanceWindow's ``spec`` as Kubernetes stores it."""


class MaintenanceLedger(Protocol):
    """The actual maintenance periods of each monitor, kept in the store (both stores).

    Recorded as they happen, not derived from the MaintenanceWindows, so that history stays
    exact after a window is edited or deleted. A monitor has at most one open period: windows
    that overlap make one period, as they make one Maintenance state.
    """

    async def open_maintenance(self, *, monitor: MonitorRef, at: datetime, reason: str) -> None:
        """The monitor entered maintenance at ``at``; one already open is kept (idempotent)."""
        ...

    async def close_maintenance(self, *, monitor: MonitorRef, at: datetime) -> None:
        """The monitor left maintenance at ``at`` (never before the period began); nothing
        open: nothing to do."""
        ...

    async def maintenance_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[Span]]:
        """Every monitor's periods overlapping ``[since, until)``, in one query for all; an
        open period runs to ``until``. Monitors without one are absent."""
        ...


class ObjectiveSource(Protocol):
    """Every monitor's ``spec.slo`` (monitors without one are absent): the HealthMonitors in
    Kubernetes, the flags of the standalone monitor."""

    async def objectives(self) -> dict[MonitorRef, MonitorObjective]: ...


class IncidentSpans(Protocol):
    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> dict[MonitorRef, list[DowntimeSpan]]: ...


class AdHocMaintenance(Protocol):
    """Where ``POST /admin/downtime/maintenance`` puts a one-off window in force: a
    MaintenanceWindow in Kubernetes, the running monitor's calendar without it."""

    async def start_maintenance(self, *, namespace: str, name: str, spec: WindowBody) -> None:
        """Create the window ``name`` with ``spec`` (a MaintenanceWindow's, already valid)."""
        ...


class WindowStatusWriter(Protocol):
    async def patch_window_status(
        self, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge ``status`` into the MaintenanceWindow's status (null removes a field)."""
        ...
