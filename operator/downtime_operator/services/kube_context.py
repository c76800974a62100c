"""Records the Kubernetes context of each incident, at detection and at resolution (a sink).

For a monitor whose endpoint has a Kubernetes target (``spec.targetRef``, or the Service its URL
names) the sink reads the target's pods, rollouts, endpoints and Warning Events when the
incident opens and when the runner resolves it, keeps each stage with the incident in the store
(``kube_context``) and shows a summary with the top probable cause in the DowntimeIncident's
``status.context``. A new consequence, so a new sink: the runner only hands over
the target with each event.

The reads are the adapter's to share: incidents of one namespace that open together cost one
list of each kind, not one each.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind, ResolvedBy
from downtime_operator.domain.kube_context import (
    ContextStage,
    NamespaceObjects,
    TargetObject,
    TargetRef,
    context_snapshot_json,
    context_summary,
    take_snapshot,
)
from downtime_operator.domain.models import Incident
from downtime_operator.domain.window import capture_window
from downtime_operator.services.pipeline import monitor_lane
from downtime_operator.services.ports import Clock, WriteRefusedError

logger = logging.getLogger(__name__)


class ContextReader(Protocol):
    async def read_context(self, target: TargetRef) -> tuple[TargetObject, NamespaceObjects]:
        """The target and its namespace's pods, ReplicaSets, EndpointSlices and Warning Events.

        What may not be read (403) or is not there (404) is recorded in the answer, never
        raised: the context says so. Raises only when the API server cannot answer now.
        """
        ...


class KubeContextStore(Protocol):
    async def record_kube_context(
        self, incident_id: UUID, *, stage: ContextStage, snapshot: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Keep ``snapshot`` as the incident's ``stage`` (the other stage is left as it is);
        return the whole stored context, or None when the incident has no row (yet)."""
        ...


class ContextView(Protocol):
    async def publish_kube_context(self, incident: Incident, summary: Mapping[str, Any]) -> bool:
        """Show the summary in the DowntimeIncident's ``status.context``; False when the
        resource does not exist (yet)."""
        ...


class NotWrittenYetError(Exception):
    """The incident's row or resource is not there yet (its own sink is behind): retried."""


STAGES = {
    IncidentEventKind.OPENED: ContextStage.DETECTION,
    IncidentEventKind.RESOLVED: ContextStage.RESOLUTION,
}


class KubeContextSink:
    """Reads, stores and shows one incident's context per stage; idempotent, so retried."""

    name = "kubernetes context"
    permanent: tuple[type[BaseException], ...] = (WriteRefusedError, ValueError)
    lane = staticmethod(monitor_lane)

    def __init__(
        self,
        *,
        reader: ContextReader,
        store: KubeContextStore,
        view: ContextView,
        clock: Clock,
        wait_for_others: timedelta = timedelta(minutes=10),
    ) -> None:
        self._reader = reader
        self._store = store
        self._view = view
        self._clock = clock
        self._wait_for_others = wait_for_others
        """How long the row and the resource (other sinks' writes) are waited for."""
        self._taken: dict[tuple[UUID, ContextStage], dict[str, Any]] = {}
        """Snapshots read but not yet shown: a retry writes them instead of reading again, so
        the context stays the one of the moment it was taken."""

    async def apply(self, event: IncidentEvent) -> None:
        stage = STAGES.get(event.kind)
        scope = event.context
        if stage is None or scope is None or event.resolved_by is ResolvedBy.PERSON:
            return
        incident = event.incident
        key = (incident.incident_id, stage)
        snapshot = self._taken.get(key)
        if snapshot is None:
            now = self._clock.now()
            window = capture_window(
                started_at=incident.started_at,
                ended_at=incident.ended_at if stage is ContextStage.RESOLUTION else None,
                now=now,
                before=scope.before,
                after=scope.after,
            )
            found, objects = await self._reader.read_context(scope.target)
            snapshot = context_snapshot_json(
                take_snapshot(
                    stage=stage,
                    target=scope.target,
                    found=found,
                    objects=objects,
                    window_start=window.start,
                    window_end=window.end,
                    first_failure_at=incident.started_at,
                    taken_at=now,
                )
            )
            self._taken[key] = snapshot
        try:
            stored = await self._store.record_kube_context(
                incident.incident_id, stage=stage, snapshot=snapshot
            )
            summary = context_summary(stored)
            shown = summary is None or await self._view.publish_kube_context(incident, summary)
        except self.permanent:
            del self._taken[key]  # dropped by the queue: nothing will retry it
            raise
        if stored is None or not shown:
            self._wait_or_give_up(incident, key, missing="row" if stored is None else "resource")
            return
        del self._taken[key]

    def _wait_or_give_up(
        self, incident: Incident, key: tuple[UUID, ContextStage], *, missing: str
    ) -> None:
        """A row or resource that is not written yet is waited for (its sink is behind); one
        that never comes (refused for good, deleted) is given up on after a while."""
        waited: timedelta = self._clock.now() - _since(incident)
        if waited < self._wait_for_others:
            raise NotWrittenYetError(f"incident {incident.incident_id} has no {missing} yet")
        logger.warning(
            "incident %s (%s): its %s never appeared; its Kubernetes context is not kept",
            incident.incident_id,
            incident.monitor,
            missing,
        )
        self._taken.pop(key, None)


def _since(incident: Incident) -> datetime:
    return incident.ended_at or incident.detected_at
