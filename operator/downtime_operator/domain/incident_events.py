"""What happened to an incident, as the runner (or a person, through the admin API) decided it.

The runner decides; sinks carry out (README, "How it is built"). An ``IncidentEvent`` is the
whole hand-over: a copy of the incident as it was at that moment plus what the change needs (the
capture plan at opening, a capture's result). Each sink (the store row, the DowntimeIncident
and its Events, the capture plan, metrics, notifiers, the Kubernetes context) reads the events
it cares about and ignores the rest, so a new consequence is a new sink, not a new branch in
the runner.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from downtime_operator.domain.kube_context import ContextScope
from downtime_operator.domain.log_capture import CapturePlan, CaptureResult
from downtime_operator.domain.models import Incident
from downtime_operator.domain.prometheus import MetricsPlan
from downtime_operator.domain.severity import SeverityChange


class IncidentEventKind(enum.StrEnum):
    OPENED = "opened"
    RESUMED = "resumed"
    """An incident opened before a restart (or by another replica) that this runner carries on."""
    RESTORED = "restored"
    """Carried on from its DowntimeIncident because its row was lost: the row is written again."""
    CHECKS_REFRESHED = "checksRefreshed"
    """The failed-check count went on rising (sent at most once per status sync period)."""
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    RELEASED = "released"
    """Resolved elsewhere (the admin API, another process): no longer ours, nothing to write."""
    CORRECTED = "corrected"
    """The store had resolved it while its DowntimeIncident still said open: the CR catches up."""
    LOGS_CAPTURED = "logsCaptured"
    """A capture ran (captured, failed or disabled); ``capture`` holds its result."""
    ANNOTATED = "annotated"
    """A person set the root cause or added a note (admin API); already in the store."""


class ResolvedBy(enum.StrEnum):
    RECOVERY = "recovery"
    MONITOR_DELETED = "monitorDeleted"
    PERSON = "person"


@dataclass(frozen=True, kw_only=True)
class IncidentEvent:
    kind: IncidentEventKind
    incident: Incident
    """A copy taken when the event happened: later changes to the runner's incident do not leak
    into events still waiting in a sink's lane."""
    capture_plan: CapturePlan | None = None
    """OPENED and RESTORED: the log capture planned for the incident."""
    metrics_plan: MetricsPlan | None = None
    """OPENED and RESTORED: the Prometheus queries planned for it (None: the monitor has none)."""
    capture: CaptureResult | None = None
    """LOGS_CAPTURED: the result to show."""
    escalation: SeverityChange | None = None
    """ESCALATED: when, and from which severity to which (``severity_changes``)."""
    notes: str | None = None
    """RESOLVED, ACKNOWLEDGED: what was said when it happened."""
    resolved_by: ResolvedBy = ResolvedBy.RECOVERY
    actor: str | None = None
    """The person (admin API key name) for RESOLVED by PERSON, ACKNOWLEDGED and ANNOTATED
    through the API; None when the runner only learned of it, so the change is not shown twice."""
    channels: tuple[str, ...] = ()
    """The monitor's NotificationChannels (names in its namespace) when the event happened."""
    context: ContextScope | None = None
    """The workload behind the monitor's endpoint, whose Kubernetes context is recorded."""


@dataclass(frozen=True, kw_only=True)
class KubernetesEvent:
    reason: str
    message: str
    warning: bool = False


def kubernetes_event(event: IncidentEvent) -> KubernetesEvent | None:
    """The Event posted on the HealthMonitor for ``event`` (a log line outside Kubernetes)."""
    incident = event.incident
    name = incident.k8s_name
    said = f": {event.notes}" if event.notes else ""
    kind = event.kind
    if kind is IncidentEventKind.OPENED:
        return KubernetesEvent(
            reason="IncidentOpened",
            message=f"Outage detected: {incident.error_message} (incident {name})",
        )
    if kind is IncidentEventKind.ESCALATED and event.escalation is not None:
        return KubernetesEvent(
            reason="IncidentEscalated",
            message=f"Incident {name} escalated from {event.escalation.previous}"
            f" to {event.escalation.severity}",
            warning=True,
        )
    duration = f"{incident.duration_seconds or 0.0:.0f}s"
    if kind is IncidentEventKind.RESOLVED and event.resolved_by is ResolvedBy.PERSON:
        return KubernetesEvent(
            reason="IncidentResolvedManually",
            message=f"Incident {name} resolved by {event.actor} after {duration}{said}",
        )
    if kind is IncidentEventKind.RESOLVED:
        deleted = event.resolved_by is ResolvedBy.MONITOR_DELETED
        return KubernetesEvent(
            reason="IncidentResolvedMonitorDeleted" if deleted else "IncidentResolved",
            message=f"Incident {name} resolved after {duration}{said}",
        )
    if kind is IncidentEventKind.ACKNOWLEDGED and event.actor is not None:
        return KubernetesEvent(
            reason="IncidentAcknowledged",
            message=f"Incident {name} acknowledged by {event.actor}{said}",
        )
    return None
