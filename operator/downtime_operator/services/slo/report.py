"""The monthly SLA report (``GET /admin/downtime/slo``): three reads, whatever the monitors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.sla_report import SlaRow, month_bounds, sla_rows
from downtime_operator.services.ports import Clock
from downtime_operator.services.slo.ports import IncidentSpans, MaintenanceLedger, ObjectiveSource


class MonthNotBegunError(ValueError):
    """A report of a month that has not begun has nothing to judge."""


class UnknownObjectiveError(LookupError):
    """The monitor asked for has no objective (or does not exist)."""


@dataclass(frozen=True, kw_only=True)
class SlaReport:
    month: str
    since: datetime
    until: datetime
    """The month's end, or now for the current month."""
    rows: list[SlaRow]


class SloReports:
    def __init__(
        self,
        *,
        incidents: IncidentSpans,
        maintenance: MaintenanceLedger,
        objectives: ObjectiveSource,
        clock: Clock,
    ) -> None:
        self._incidents = incidents
        self._maintenance = maintenance
        self._objectives = objectives
        self._clock = clock

    async def month(self, month: str, *, monitor: MonitorRef | None = None) -> SlaReport:
        """Raises ValueError for a malformed month, MonthNotBegunError, UnknownObjectiveError."""
        since, end = month_bounds(month)
        until = min(end, self._clock.now())
        if until <= since:
            raise MonthNotBegunError(f"{month} has not begun")
        objectives = await self._objectives.objectives()
        if monitor is not None:
            if monitor not in objectives:
                raise UnknownObjectiveError(f"{monitor} has no spec.slo")
            objectives = {monitor: objectives[monitor]}
        rows = sla_rows(
            since=since,
            until=until,
            objectives=objectives,
            incidents=await self._incidents.incident_spans(since=since, until=until),
            maintenance=await self._maintenance.maintenance_spans(since=since, until=until),
        )
        return SlaReport(month=month, since=since, until=until, rows=rows)
