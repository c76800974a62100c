"""Manual resolve, acknowledge and annotation: the system of record first, then the incident
pipeline.

PostgreSQL decides: the transition is conditional there, so of two people resolving at once one
wins and the other is told it was already resolved. The DowntimeIncident CR and the Event follow
as incident events through the API's own pipeline (ordered retry queues), like the runner's: an
API server that is briefly away delays them but cannot lose them, and the HTTP caller is not
kept waiting on it. The CR update is also how a running monitor learns of a manual resolve (kopf
watches ``status.status``), so a later failure opens a new incident.
"""

from __future__ import annotations

from uuid import UUID

from downtime_operator.domain.annotations import signed_note
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind, ResolvedBy
from downtime_operator.domain.models import Incident
from downtime_operator.services.admin_ports import IncidentTransitions
from downtime_operator.services.pipeline import IncidentPipeline
from downtime_operator.services.ports import Clock


class IncidentNotFoundError(LookupError):
    def __init__(self, incident_id: UUID) -> None:
        self.incident_id = incident_id
        super().__init__(f"incident {incident_id} not found")


class IncidentAdmin:
    def __init__(
        self,
        *,
        transitions: IncidentTransitions,
        clock: Clock,
        events: IncidentPipeline,
    ) -> None:
        self._transitions = transitions
        self._clock = clock
        self._events = events

    def start(self) -> None:
        self._events.start()

    async def close(self, *, drain_timeout: float = 10.0) -> None:
        """Flush the queued CR updates and events (bounded), then stop."""
        await self._events.close(drain_timeout=drain_timeout)

    async def resolve(self, incident_id: UUID, *, notes: str | None, actor: str) -> Incident:
        """End the incident now. Raises IncidentNotFoundError or IncidentAlreadyResolvedError."""
        incident = await self._transitions.resolve_open_incident(
            incident_id, ended_at=self._clock.now(), notes=notes
        )
        if incident is None:
            raise IncidentNotFoundError(incident_id)
        self._events.publish(
            IncidentEvent(
                kind=IncidentEventKind.RESOLVED,
                incident=incident,
                notes=notes,
                resolved_by=ResolvedBy.PERSON,
                actor=actor,
            )
        )
        return incident

    async def annotate(
        self, incident_id: UUID, *, root_cause: str | None, note: str | None, actor: str
    ) -> Incident:
        """Set the root cause and/or add a note signed by ``actor``; resolved incidents too.

        Raises IncidentNotFoundError. The DowntimeIncident shows the result (``rootCause``,
        ``notes``) through the same pipeline as a resolve.
        """
        signed = None if note is None else signed_note(note, author=actor, at=self._clock.now())
        incident = await self._transitions.annotate_incident(
            incident_id, root_cause=root_cause, note=signed
        )
        if incident is None:
            raise IncidentNotFoundError(incident_id)
        self._events.publish(
            IncidentEvent(kind=IncidentEventKind.ANNOTATED, incident=incident, actor=actor)
        )
        return incident

    async def acknowledge(self, incident_id: UUID, *, notes: str | None, actor: str) -> Incident:
        """Mark the incident ``investigating``. Same errors as ``resolve``."""
        incident = await self._transitions.acknowledge_open_incident(incident_id, notes=notes)
        if incident is None:
            raise IncidentNotFoundError(incident_id)
        self._events.publish(
            IncidentEvent(
                kind=IncidentEventKind.ACKNOWLEDGED, incident=incident, notes=notes, actor=actor
            )
        )
        return incident
