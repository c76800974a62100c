"""Manual resolve and acknowledge: the system of record first, then Kubernetes.

PostgreSQL decides: the transition is conditional there, so of two people resolving at once one
wins and the other is told it was already resolved. The DowntimeIncident CR and the Event follow
through an ordered retry queue, like the runner's writes: an API server that is briefly away
delays them but cannot lose them, and the HTTP caller is not kept waiting on it. The CR update
is also how a running monitor learns of a manual resolve (kopf watches ``status.status``), so a
later failure opens a new incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from uuid import UUID

from downtime_operator.domain.models import Incident
from downtime_operator.services.admin_ports import IncidentTransitions
from downtime_operator.services.ports import Clock, IncidentResources
from downtime_operator.services.retry_queue import OrderedRetryQueue

logger = logging.getLogger(__name__)


class IncidentNotFoundError(LookupError):
    def __init__(self, incident_id: UUID) -> None:
        self.incident_id = incident_id
        super().__init__(f"incident {incident_id} not found")


class IncidentAdmin:
    def __init__(
        self,
        *,
        transitions: IncidentTransitions,
        resources: IncidentResources,
        clock: Clock,
        kube_writes: OrderedRetryQueue,
    ) -> None:
        self._transitions = transitions
        self._resources = resources
        self._clock = clock
        self._kube_writes = kube_writes
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._kube_writes.run(), name="admin-kube-writes")

    async def close(self, *, drain_timeout: float = 10.0) -> None:
        """Flush the queued CR updates and events (bounded), then stop the worker."""
        if self._worker is None:
            return
        if not await self._kube_writes.drained(drain_timeout):
            logger.error(
                "shutdown: %d admin Kubernetes writes still pending and lost",
                self._kube_writes.pending,
            )
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def resolve(self, incident_id: UUID, *, notes: str | None, actor: str) -> Incident:
        """End the incident now. Raises IncidentNotFoundError or IncidentAlreadyResolvedError."""
        incident = await self._transitions.resolve_open_incident(
            incident_id, ended_at=self._clock.now(), notes=notes
        )
        if incident is None:
            raise IncidentNotFoundError(incident_id)
        duration = incident.duration_seconds or 0.0
        self._publish(
            incident,
            reason="IncidentResolvedManually",
            message=f"Incident {incident.k8s_name} resolved by {actor} after {duration:.0f}s"
            + (f": {notes}" if notes else ""),
        )
        return incident

    async def acknowledge(self, incident_id: UUID, *, notes: str | None, actor: str) -> Incident:
        """Mark the incident ``investigating``. Same errors as ``resolve``."""
        incident = await self._transitions.acknowledge_open_incident(incident_id, notes=notes)
        if incident is None:
            raise IncidentNotFoundError(incident_id)
        self._publish(
            incident,
            reason="IncidentAcknowledged",
            message=f"Incident {incident.k8s_name} acknowledged by {actor}"
            + (f": {notes}" if notes else ""),
        )
        return incident

    def _publish(self, incident: Incident, *, reason: str, message: str) -> None:
        if not incident.k8s_name or not incident.monitor.name:
            # A row written before the operator (the seed's monitor) has no CR to update.
            return
        snapshot = dataclasses.replace(incident)
        resources = self._resources
        lane = snapshot.monitor.namespace
        self._kube_writes.submit(
            f"upsert DowntimeIncident {snapshot.k8s_name}",
            lambda: resources.upsert_incident(snapshot),
            lane=lane,
        )
        self._kube_writes.submit(
            f"event {reason} on {snapshot.monitor}",
            lambda: resources.post_event(snapshot.monitor, reason=reason, message=message),
            lane=lane,
        )
