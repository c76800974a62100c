"""What the admin API needs from the system of record, as Protocols and the values they carry.

Kept beside ``ports.py`` rather than inside it: these are the API's read model (pages, period
statistics), its guarded transitions and its audit trail, which the monitoring services never
use. The PostgreSQL adapter implements them; tests of the service use fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from downtime_operator.domain.models import Incident, IncidentStatus, Severity
from downtime_operator.domain.report import AuditedCall
from downtime_operator.domain.statistics import PeriodStatistics


class StoreUnavailableError(Exception):
    """The store cannot be reached right now; the caller may retry later (HTTP 503)."""


class IncidentAlreadyResolvedError(Exception):
    """A manual transition was asked of an incident that is already resolved (HTTP 409)."""

    def __init__(self, incident: Incident) -> None:
        self.incident = incident
        super().__init__(f"incident {incident.incident_id} is already resolved")


@dataclass(frozen=True, kw_only=True)
class IncidentFilter:
    """Equality filters of the incident list; ``None`` means "any"."""

    status: IncidentStatus | None = None
    severity: Severity | None = None
    environment: str | None = None
    monitor: str | None = None
    namespace: str | None = None

    def equalities(self) -> dict[str, str]:
        """The filters that are set, by the column they compare (the same in both stores)."""
        values = {
            "status": None if self.status is None else self.status.value,
            "severity": None if self.severity is None else self.severity.value,
            "environment": self.environment,
            "monitor_name": self.monitor,
            "monitor_namespace": self.namespace,
        }
        return {column: value for column, value in values.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class PageCursor:
    """Where the next page starts: the last row shown, in (started_at, incident_id) order.

    Keyset rather than offset paging, so a page costs the same at row 50 and at row 900,000,
    and incidents opened meanwhile do not shift what the next page shows.
    """

    started_at: datetime
    incident_id: UUID


@dataclass(frozen=True, kw_only=True)
class IncidentPage:
    incidents: list[dict[str, Any]]
    next_cursor: PageCursor | None

    @classmethod
    def of(cls, found: list[dict[str, Any]], *, limit: int) -> IncidentPage:
        """A page from up to ``limit + 1`` rows: the extra row only says another page exists."""
        page = found[:limit]
        if len(found) <= limit or not page:
            return cls(incidents=page, next_cursor=None)
        last = page[-1]
        return cls(
            incidents=page,
            next_cursor=PageCursor(started_at=last["started_at"], incident_id=last["incident_id"]),
        )


class IncidentQueries(Protocol):
    """The admin API's reads. Rows are plain dicts of column values, validated at the edge."""

    async def list_incidents(
        self, *, filters: IncidentFilter, limit: int, after: PageCursor | None
    ) -> IncidentPage:
        """Newest first (started_at, then incident_id, both descending)."""
        ...

    async def ongoing_incidents(self) -> list[dict[str, Any]]: ...

    async def incident_details(self, incident_id: UUID) -> dict[str, Any] | None:
        """Every column of one incident, or None when it does not exist."""
        ...

    async def statistics(self, *, since: datetime, until: datetime) -> PeriodStatistics: ...

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless the store answers a trivial query."""
        ...


class IncidentTransitions(Protocol):
    """Manual transitions, each one conditional in the store so a concurrent resolve wins once."""

    async def resolve_open_incident(
        self, incident_id: UUID, *, ended_at: datetime, notes: str | None
    ) -> Incident | None:
        """Resolve; None for an unknown incident; IncidentAlreadyResolvedError if resolved."""
        ...

    async def acknowledge_open_incident(
        self, incident_id: UUID, *, notes: str | None
    ) -> Incident | None:
        """Mark ``investigating``; None if unknown; IncidentAlreadyResolvedError if resolved."""
        ...

    async def annotate_incident(
        self, incident_id: UUID, *, root_cause: str | None, note: str | None
    ) -> Incident | None:
        """Set (replace) the root cause when given, and append ``note`` as a line of the notes
        when given, in one statement, so two people's notes are both kept; None if unknown.

        Open and resolved incidents alike: a post-mortem is written after the outage.
        """
        ...


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """Who asked for what, recorded before it is carried out. Never holds the key itself."""

    key_name: str | None
    action: str
    incident_id: UUID | None
    parameters: Mapping[str, Any]
    remote_addr: str | None
    at: datetime


class AuditLog(Protocol):
    async def record_attempt(self, entry: AuditEntry) -> int:
        """Write the attempt (outcome ``pending``) and return its id."""
        ...

    async def record_outcome(self, entry_id: int, *, outcome: str, status_code: int) -> None: ...

    async def for_incident(self, incident_id: UUID) -> list[AuditedCall]:
        """Every call recorded about the incident, oldest first (in recording order)."""
        ...
