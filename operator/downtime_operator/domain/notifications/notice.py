"""What one notification says: a snapshot of the incident at the event, and who wants it.

A ``Notice`` is taken when the event happens and stored as the outbox row's payload; the message
is rendered from it at delivery. So a message says what was true at the event (the severity it
escalated to, the error at opening) however late a retry sends it, and a restarted operator
renders exactly what the first one would have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from downtime_operator.domain.burn_alerts import BurnAlert, BurnSeverity, burn_message
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.models import Incident, LogCaptureState, MonitorRef, Severity
from downtime_operator.domain.notifications.channel import (
    ChannelSpec,
    ChannelType,
    NotificationEvent,
)

PAYLOAD_VERSION = 1
TOP_ERRORS_SHOWN = 5
"""The analysis keeps ten; a message shows the five most frequent."""

_EVENTS = {
    IncidentEventKind.OPENED: NotificationEvent.OPENED,
    IncidentEventKind.ESCALATED: NotificationEvent.ESCALATED,
    IncidentEventKind.ACKNOWLEDGED: NotificationEvent.ACKNOWLEDGED,
    IncidentEventKind.RESOLVED: NotificationEvent.RESOLVED,
    IncidentEventKind.LOGS_CAPTURED: NotificationEvent.LOGS_CAPTURED,
}
"""The pipeline events people are told about; the others (resumed, restored, refreshed,
released, corrected) are bookkeeping of an event already told, or told by another process."""

_TIMES = ("at", "started_at", "detected_at", "ended_at")


@dataclass(frozen=True, kw_only=True)
class Notice:
    event: NotificationEvent
    at: datetime
    """When the event happened (aware): the message's timestamp."""
    incident_id: UUID
    k8s_name: str
    monitor_namespace: str
    monitor_name: str
    url: str
    environment: str
    severity: Severity
    started_at: datetime
    detected_at: datetime
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    error_message: str | None = None
    http_status: int | None = None
    failed_checks: int = 0
    previous_severity: Severity | None = None
    """ESCALATED: the severity it was raised from."""
    notes: str | None = None
    actor: str | None = None
    """Who acknowledged or resolved it through the admin API, when a person did."""
    playbook: str | None = None
    """The incident's playbook (the monitor's ``spec.playbook`` when it opened): what to do."""
    top_errors: tuple[tuple[str, int], ...] = ()
    """LOGS_CAPTURED: the most frequent error messages of the analysis, with their counts."""
    reminder: int | None = None
    """REMINDER: its number (1, 2, ...) since detection."""
    outbox_id: str = ""
    """The outbox row's id, set when the row is read back (not part of the payload): the
    idempotency key and Message-ID of what is sent."""

    @property
    def event_key(self) -> str:
        """The row's identity with (incident, channel): one message per key, ever.

        Escalations carry the severity and reminders their number, so a second escalation or
        the next reminder is a new message while a repeated enqueue of the same one is not.
        """
        if self.event is NotificationEvent.ESCALATED:
            return f"escalated:{self.severity.value}"
        if self.event is NotificationEvent.REMINDER:
            return f"reminder:{self.reminder}"
        if self.event is NotificationEvent.TEST:
            return f"test:{self.incident_id}"
        return self.event.value

    @property
    def monitor(self) -> str:
        return f"{self.monitor_namespace}/{self.monitor_name}"

    def to_payload(self) -> dict[str, Any]:
        """JSON-able; ``from_payload`` reads it back equal (the outbox id aside)."""
        payload = asdict(self)
        del payload["outbox_id"]
        for name in _TIMES:
            moment = payload[name]
            payload[name] = moment.isoformat() if moment is not None else None
        payload["incident_id"] = str(self.incident_id)
        payload["top_errors"] = [[message, count] for message, count in self.top_errors]
        payload["v"] = PAYLOAD_VERSION
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, outbox_id: str = "") -> Notice:
        fields = {k: v for k, v in payload.items() if k != "v"}
        for name in _TIMES:
            moment = fields.get(name)
            fields[name] = datetime.fromisoformat(moment) if moment is not None else None
        previous = fields.get("previous_severity")
        return cls(
            **{
                **fields,
                "event": NotificationEvent(fields["event"]),
                "incident_id": UUID(fields["incident_id"]),
                "severity": Severity(fields["severity"]),
                "previous_severity": Severity(previous) if previous is not None else None,
                "top_errors": tuple((str(m), int(c)) for m, c in fields.get("top_errors", ())),
                "outbox_id": outbox_id,
            }
        )


def _from_incident(
    incident: Incident, *, event: NotificationEvent, at: datetime, **extra: Any
) -> Notice:
    return Notice(
        event=event,
        at=at,
        incident_id=incident.incident_id,
        k8s_name=incident.k8s_name,
        monitor_namespace=incident.monitor.namespace,
        monitor_name=incident.monitor.name,
        url=incident.health_endpoint,
        environment=incident.environment,
        severity=incident.severity,
        started_at=incident.started_at,
        detected_at=incident.detected_at,
        ended_at=incident.ended_at,
        duration_seconds=incident.duration_seconds,
        error_message=incident.error_message,
        http_status=incident.http_status_code,
        failed_checks=incident.failed_checks,
        playbook=incident.playbook,
        **extra,
    )


def notice_for(event: IncidentEvent, *, at: datetime) -> Notice | None:
    """The notice of a pipeline event, or None when the event is not one people are told of.

    ``at`` is the time the sink saw the event; opened and resolved use the incident's own
    detection and end times instead, which are when those things happened. A log capture is
    told only when it captured something to show (an analysis).
    """
    kind = _EVENTS.get(event.kind)
    if kind is None:
        return None
    incident = event.incident
    if kind is NotificationEvent.OPENED:
        at = incident.detected_at
    elif kind is NotificationEvent.RESOLVED:
        at = incident.ended_at or at
    top_errors: tuple[tuple[str, int], ...] = ()
    if kind is NotificationEvent.LOGS_CAPTURED:
        capture = event.capture
        if capture is None or capture.state is not LogCaptureState.CAPTURED:
            return None
        if capture.analysis is None:
            return None
        top_errors = tuple(capture.analysis.top_errors[:TOP_ERRORS_SHOWN])
    return _from_incident(
        incident,
        event=kind,
        at=at,
        previous_severity=None if event.escalation is None else event.escalation.previous,
        notes=event.notes,
        actor=event.actor,
        top_errors=top_errors,
    )


def reminder_notice(incident: Incident, *, every: timedelta, now: datetime) -> Notice | None:
    """The latest reminder due for an ongoing incident (one every ``every`` since detection).

    Only the latest: an operator that was down for three periods sends one reminder, not three;
    its number makes it a new message only once per period (``event_key``).
    """
    if not incident.is_open:
        return None
    number = int((now - incident.detected_at) / every)
    if number < 1:
        return None
    return _from_incident(
        incident,
        event=NotificationEvent.REMINDER,
        at=incident.detected_at + number * every,
        reminder=number,
    )


def sample_notice(*, channel: str, test_id: UUID, at: datetime) -> Notice:
    """The message of ``POST /admin/downtime/notifications/test``: shows a channel works.

    It names no real incident; ``test_id`` stands in for the incident id (and makes the event
    key unique per request).
    """
    return Notice(
        event=NotificationEvent.TEST,
        at=at,
        incident_id=test_id,
        k8s_name="test",
        monitor_namespace=channel.partition("/")[0],
        monitor_name="downtime-operator",
        url="",
        environment="test",
        severity=Severity.LOW,
        started_at=at,
        detected_at=at,
        notes=f"Test message for channel {channel}: delivery works.",
    )


_BURN_SEVERITY = {BurnSeverity.PAGE: Severity.CRITICAL, BurnSeverity.TICKET: Severity.MEDIUM}
"""How urgent each kind of burn alert is, for the channels' severity maps (PagerDuty)."""


def burn_notice(
    *, monitor: MonitorRef, url: str, environment: str, alert: BurnAlert, at: datetime
) -> Notice:
    """The ``budgetBurn`` message of a rule that started firing at ``at``.

    No incident is behind it: its id is derived from the monitor, the rule and the instant,
    so that the outbox keeps one row per crossing and channel however often it is enqueued.
    """
    crossing = uuid5(NAMESPACE_URL, f"budget-burn/{monitor}/{alert.rule.name}/{at.isoformat()}")
    return Notice(
        event=NotificationEvent.BUDGET_BURN,
        at=at,
        incident_id=crossing,
        k8s_name="",
        monitor_namespace=monitor.namespace,
        monitor_name=monitor.name,
        url=url,
        environment=environment,
        severity=_BURN_SEVERITY[alert.rule.severity],
        started_at=at,
        detected_at=at,
        notes=burn_message(alert),
    )


def wanted(channel: ChannelSpec, notice: Notice) -> bool:
    """Does ``channel`` get ``notice``: an event it subscribes to, at or above its minSeverity.

    Severity only rises during an incident, so a resolved notice passes exactly when the
    opened or an escalated one did. PagerDuty gets no logsCaptured after the end: its only
    action would be a trigger, which would reopen the resolved alert.
    """
    if notice.event in (NotificationEvent.TEST, NotificationEvent.BUDGET_BURN):
        return True
    if notice.event not in channel.events or notice.severity.rank < channel.min_severity.rank:
        return False
    return not (
        channel.type is ChannelType.PAGERDUTY
        and notice.event is NotificationEvent.LOGS_CAPTURED
        and notice.ended_at is not None
    )
