"""The incident sinks every mode has: the store row, the capture plan, and where incidents are
shown (DowntimeIncidents and Events on Kubernetes, log lines without it)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

from downtime_operator.domain.evidence import snapshot_json
from downtime_operator.domain.incident_events import (
    IncidentEvent,
    IncidentEventKind,
    ResolvedBy,
    kubernetes_event,
)
from downtime_operator.services.metrics_capture import MetricsCaptureStore, MetricsPlanSink
from downtime_operator.services.pipeline import (
    Gate,
    IncidentPipeline,
    IncidentSink,
    SinkRoute,
    monitor_lane,
)
from downtime_operator.services.ports import (
    IncidentLogStatus,
    IncidentResources,
    IncidentStore,
    LogCaptureStore,
    OpenIncidentExistsError,
    WriteRefusedError,
)

logger = logging.getLogger(__name__)

Kind = IncidentEventKind


class StoreSink:
    """The system of record: the row is created, kept current and resolved as the runner says.

    A person's resolve was already written by the admin API (conditionally, in the store), so
    only the runner's own resolves are written here.
    """

    name = "store"
    permanent: tuple[type[BaseException], ...] = (OpenIncidentExistsError, ValueError)
    lane = staticmethod(monitor_lane)

    def __init__(self, store: IncidentStore) -> None:
        self._store = store

    async def apply(self, event: IncidentEvent) -> None:
        incident = event.incident
        incident_id = incident.incident_id
        if event.kind in (Kind.OPENED, Kind.RESTORED):
            # Without a capture state: planning the capture is the capture sink's write, and
            # a row that already has a plan is never planned again.
            await self._store.create_incident(dataclasses.replace(incident, logs_state=None))
        elif event.kind is Kind.CHECKS_REFRESHED:
            await self._store.update_incident(incident_id, _failed_checks(event))
        elif event.kind is Kind.ESCALATED and event.escalation is not None:
            await self._store.escalate_incident(
                incident_id, change=event.escalation, failed_checks=incident.failed_checks
            )
        elif (
            event.kind is Kind.RESOLVED
            and event.resolved_by is not ResolvedBy.PERSON
            and incident.ended_at is not None
        ):
            await self._store.update_incident(incident_id, _resolution_fields(event))
            await self._store.resolve_incident(
                incident_id, ended_at=incident.ended_at, notes=event.notes
            )


def _failed_checks(event: IncidentEvent) -> dict[str, int]:
    return {"failed_checks": event.incident.failed_checks}


def _resolution_fields(event: IncidentEvent) -> dict[str, object]:
    """The final count, and the metrics snapshot completed with the checks of the outage."""
    fields: dict[str, object] = {**_failed_checks(event)}
    snapshot = event.incident.metrics_snapshot
    if snapshot is not None:
        fields["metrics_snapshot"] = snapshot_json(snapshot)
    return fields


class CapturePlanSink:
    """Plans the logs around an outage: the first capture is due at detection.

    Chained to the store sink: the plan is written after its row is created and before the row
    is resolved (resolving makes a planned capture due again for the final capture, whoever
    resolves it; a plan written after that would never get its final capture).
    """

    name = "capture plans"
    permanent: tuple[type[BaseException], ...] = (ValueError,)
    lane = staticmethod(monitor_lane)

    def __init__(self, captures: LogCaptureStore) -> None:
        self._captures = captures

    async def apply(self, event: IncidentEvent) -> None:
        if event.capture_plan is None or event.kind not in (Kind.OPENED, Kind.RESTORED):
            return
        incident = event.incident
        await self._captures.schedule_log_capture(
            incident.incident_id, plan=event.capture_plan, due_at=incident.detected_at
        )


class ShownResources(IncidentResources, IncidentLogStatus, Protocol):
    """DowntimeIncident CRs and Events (Kubernetes), or their log lines (standalone)."""


class ResourceSink:
    """The DowntimeIncident mirrors the incident, and the HealthMonitor gets an Event.

    Ordered per monitor, which is where order matters (a CR is created before it is updated):
    500 incidents of one namespace are written side by side, not one after another, and a
    namespace whose writes are refused for a while (a RoleBinding removed, 403) holds up only
    its own monitors. ``status.logs.state`` is left out of the
    runner's refreshes and escalations: the capture service moves it on in between, and the
    runner's copy would be stale. ``status.rootCause`` only comes with a person's action.
    """

    name = "kubernetes"
    permanent: tuple[type[BaseException], ...] = (WriteRefusedError,)
    lane = staticmethod(monitor_lane)

    def __init__(self, resources: ShownResources) -> None:
        self._resources = resources

    async def apply(self, event: IncidentEvent) -> None:
        incident = event.incident
        if not incident.k8s_name or not incident.monitor.name:
            return  # a row written before the operator (the seed's monitor) has no CR
        if event.kind is Kind.LOGS_CAPTURED:
            if event.capture is not None:
                await self._resources.publish_log_capture(incident, event.capture)
            return
        if event.kind in (Kind.RESUMED, Kind.RESTORED, Kind.RELEASED):
            return
        if event.kind is Kind.ACKNOWLEDGED and event.actor is None:
            return  # the runner learned it from the CR: nothing new to show
        if event.kind in (Kind.CHECKS_REFRESHED, Kind.ESCALATED):
            incident = dataclasses.replace(incident, logs_state=None)
        if event.actor is None:
            # The root cause is a person's to write; the runner's copy may predate their edit.
            incident = dataclasses.replace(incident, root_cause=None)
        await self._resources.upsert_incident(incident)
        posted = kubernetes_event(event)
        if posted is not None:
            await self._resources.post_event(
                incident.monitor,
                reason=posted.reason,
                message=posted.message,
                warning=posted.warning,
            )


def standard_pipeline(
    *,
    incidents: IncidentStore,
    captures: LogCaptureStore,
    resources: ShownResources,
    metric_captures: MetricsCaptureStore | None = None,
    sinks: Sequence[IncidentSink] = (),
    store_sinks: Sequence[IncidentSink] = (),
    schema: Gate | None = None,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
) -> IncidentPipeline:
    """Every mode's pipeline: the store row, then (once the row is written) its capture plans
    (logs, and Prometheus series when ``metric_captures`` is given);
    where incidents are shown; then the mode's own ``sinks``, and its ``store_sinks`` (other
    tables of the store, the notification outbox). The store's writes wait for ``schema``."""
    return IncidentPipeline(
        [
            SinkRoute(
                sink=StoreSink(incidents),
                gate=schema,
                then=(
                    CapturePlanSink(captures),
                    *(() if metric_captures is None else (MetricsPlanSink(metric_captures),)),
                ),
            ),
            SinkRoute(sink=ResourceSink(resources)),
            *(SinkRoute(sink=sink) for sink in sinks),
            *(SinkRoute(sink=sink, gate=schema) for sink in store_sinks),
        ],
        base_delay=base_delay,
        max_delay=max_delay,
    )
