"""An incident's post-mortem report: what happened, what it cost, and what the evidence says.

Pure: the stored facts in, a report out, as a dict (the admin API's JSON) or as Markdown
(``report_markdown``). Only what was recorded is shown, and what was not recorded says so, so a
reader can tell "nothing happened" from "nothing was kept".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from downtime_operator.domain.kube_context import (
    NO_CHANGE_FOUND,
    ContextSnapshot,
    ContextStage,
    ProbableCause,
    context_record,
    record_causes,
)
from downtime_operator.domain.notifications.render import format_seconds
from downtime_operator.domain.severity import SeverityChange

ACKNOWLEDGE = "acknowledgeIncident"
RESOLVE = "resolveIncident"
CAPTURE_LOGS = "captureIncidentLogs"
ANNOTATE = "updateIncident"
"""The admin API's audited actions (its operation ids) that the timeline shows."""

SUCCESS = "success"
"""The audit outcome of a call that did what it asked."""


@dataclass(frozen=True, kw_only=True)
class AuditedCall:
    """One admin API call about the incident, as the audit log holds it."""

    at: datetime
    actor: str | None
    """The API key's name."""
    action: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    outcome: str


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One notification about the incident, as the outbox holds it."""

    channel: str
    event: str
    state: str
    """``pending``, ``sent`` or ``failed``: only the last two are something that happened."""
    at: datetime
    """When it was sent, or given up."""


@dataclass(frozen=True, kw_only=True)
class IncidentFacts:
    """The incident record as stored; each field is named after its column."""

    incident_id: UUID
    monitor_namespace: str | None
    monitor_name: str | None
    k8s_name: str | None
    health_endpoint: str
    environment: str
    severity: str
    status: str
    started_at: datetime
    detected_at: datetime
    ended_at: datetime | None
    duration_seconds: float | None
    failed_checks: int
    error_message: str | None
    http_status_code: int | None
    logs_capture_status: str | None
    logs_count: int | None
    logs_truncated: bool | None
    logs_capture_due_at: datetime | None
    logs_capture_error: str | None
    log_analysis: Mapping[str, Any] | None
    metrics_snapshot: Any
    server_info: Any
    root_cause: str | None
    notes: str | None
    kube_context: Mapping[str, Any] | None = None
    """``{stage: snapshot}`` (``kube_context``); None without a Kubernetes target."""
    playbook: str | None = None
    """The monitor's ``spec.playbook`` when the incident opened."""
    severity_changes: Sequence[Mapping[str, Any]] | None = None
    """``[{at, from, to}]``, one per escalation; None before the first."""

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> IncidentFacts:
        """From every column of the incident (``IncidentQueries.incident_details``); a column
        added later may be absent (a store's details from before it)."""
        return cls(
            **{
                f.name: details[f.name]
                for f in fields(cls)
                if f.name in details or f.default is MISSING
            }
        )

    @property
    def duration(self) -> float | None:
        """Seconds from the first failed check to the end; None while it is ongoing."""
        if self.ended_at is None:
            return None
        if self.duration_seconds is not None:
            return self.duration_seconds
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def monitor(self) -> str | None:
        """``namespace/name``; None for a row the seed wrote (it had no monitors)."""
        if not self.monitor_name:
            return None
        return f"{self.monitor_namespace}/{self.monitor_name}"


@dataclass(frozen=True, kw_only=True)
class TimelineEntry:
    at: datetime
    event: str


@dataclass(frozen=True, kw_only=True)
class TopError:
    message: str
    count: int


@dataclass(frozen=True, kw_only=True)
class LogFindings:
    """The stored analysis of the captured logs."""

    total_logs: int
    error_count: int
    warning_count: int
    error_types: dict[str, int]
    top_errors: list[TopError]

    @classmethod
    def of(cls, analysis: Mapping[str, Any]) -> LogFindings:
        return cls(
            total_logs=int(analysis.get("total_logs") or 0),
            error_count=int(analysis.get("error_count") or 0),
            warning_count=int(analysis.get("warning_count") or 0),
            error_types={str(k): int(v) for k, v in (analysis.get("error_types") or {}).items()},
            top_errors=[
                TopError(message=str(message), count=int(count))
                for message, count in analysis.get("top_errors") or ()
            ],
        )


@dataclass(frozen=True, kw_only=True)
class IncidentReport:
    facts: IncidentFacts
    timeline: list[TimelineEntry]
    log_capture: str
    """The capture's state in words."""
    findings: LogFindings | None
    """None when no analysis was stored."""
    severity_changes: tuple[SeverityChange, ...] = ()
    """Each escalation, oldest first."""
    context: dict[ContextStage, ContextSnapshot] = field(default_factory=dict)
    """The Kubernetes context read at each stage; empty when none was recorded."""

    @property
    def probable_causes(self) -> tuple[ProbableCause, ...]:
        return record_causes(self.context)

    def to_dict(self) -> dict[str, Any]:
        """The report's sections as plain data (datetimes stay datetimes)."""
        facts = self.facts
        return {
            "incident_id": facts.incident_id,
            "summary": {
                "monitor": facts.monitor,
                "incident": facts.k8s_name or None,
                "endpoint": facts.health_endpoint,
                "environment": facts.environment,
                "severity": facts.severity,
                "status": facts.status,
            },
            "impact": {
                "started_at": facts.started_at,
                "ended_at": facts.ended_at,
                "duration_seconds": facts.duration_seconds,
                "failed_checks": facts.failed_checks,
                "error_message": facts.error_message,
                "http_status_code": facts.http_status_code,
                "severity_changes": [
                    {"at": change.at, "from": change.previous.value, "to": change.severity.value}
                    for change in self.severity_changes
                ],
            },
            "timeline": [{"at": e.at, "event": e.event} for e in self.timeline],
            "evidence": {
                "metrics_snapshot": facts.metrics_snapshot,
                "server_info": facts.server_info,
                "kubernetes_context": self._context_dict(),
                "log_capture": {
                    "state": facts.logs_capture_status,
                    "lines": facts.logs_count,
                    "truncated": facts.logs_truncated,
                    "error": facts.logs_capture_error,
                    "summary": self.log_capture,
                },
                "log_analysis": None
                if self.findings is None
                else {
                    "total_logs": self.findings.total_logs,
                    "error_count": self.findings.error_count,
                    "warning_count": self.findings.warning_count,
                    "error_types": self.findings.error_types,
                    "top_errors": [
                        {"message": e.message, "count": e.count} for e in self.findings.top_errors
                    ],
                },
            },
            "playbook": facts.playbook,
            "root_cause": facts.root_cause,
            "notes": facts.notes,
        }

    def _context_dict(self) -> dict[str, Any] | None:
        if not self.context:
            return None
        causes = self.probable_causes
        return {
            "top_cause": causes[0].summary if causes else NO_CHANGE_FOUND,
            "probable_causes": [
                {"rule": c.rule, "summary": c.summary, "evidence": list(c.evidence)} for c in causes
            ],
            "snapshots": self.facts.kube_context,
        }


def build_report(
    *, facts: IncidentFacts, calls: Sequence[AuditedCall], deliveries: Sequence[Delivery]
) -> IncidentReport:
    changes = tuple(
        sorted(
            (SeverityChange.from_json(change) for change in facts.severity_changes or ()),
            key=lambda change: change.at,
        )
    )
    return IncidentReport(
        facts=facts,
        context=context_record(facts.kube_context),
        severity_changes=changes,
        timeline=_timeline(facts, [c for c in calls if c.outcome == SUCCESS], deliveries, changes),
        log_capture=_log_capture(facts),
        findings=None if facts.log_analysis is None else LogFindings.of(facts.log_analysis),
    )


def format_time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _timeline(
    facts: IncidentFacts,
    calls: Sequence[AuditedCall],
    deliveries: Sequence[Delivery],
    severity_changes: Sequence[SeverityChange],
) -> list[TimelineEntry]:
    entries = [
        TimelineEntry(at=facts.started_at, event="First failed check"),
        TimelineEntry(
            at=facts.detected_at, event="Detected: failure threshold reached, incident opened"
        ),
        *(
            TimelineEntry(
                at=change.at, event=f"Escalated from {change.previous} to {change.severity}"
            )
            for change in severity_changes
        ),
    ]
    resolved_by = None
    for call in calls:
        if call.action == RESOLVE:
            # The resolution itself is the incident's end; the call only says who.
            resolved_by = call.actor
            continue
        said = _said(call)
        if said is not None:
            entries.append(TimelineEntry(at=call.at, event=said))
    for delivery in deliveries:
        if delivery.state == "sent":
            entries.append(
                TimelineEntry(
                    at=delivery.at,
                    event=f"Notification {delivery.event} sent to {delivery.channel}",
                )
            )
        elif delivery.state == "failed":
            entries.append(
                TimelineEntry(
                    at=delivery.at,
                    event=f"Notification {delivery.event} to {delivery.channel} failed",
                )
            )
    duration = facts.duration
    if facts.ended_at is not None and duration is not None:
        by = f" by {resolved_by}" if resolved_by else ""
        entries.append(
            TimelineEntry(at=facts.ended_at, event=f"Resolved{by} after {format_seconds(duration)}")
        )
    if facts.logs_capture_status == "pending" and facts.logs_capture_due_at is not None:
        entries.append(TimelineEntry(at=facts.logs_capture_due_at, event="Log capture due"))
    # Stable: entries at the same moment keep the order above (detection before what follows).
    return sorted(entries, key=lambda e: e.at)


def _said(call: AuditedCall) -> str | None:
    who = call.actor or "an unnamed key"
    if call.action == ACKNOWLEDGE:
        return f"Acknowledged by {who}"
    if call.action == CAPTURE_LOGS:
        return f"Log capture run by {who}"
    if call.action == ANNOTATE:
        changed = [
            what
            for key, what in (("root_cause", "root cause set"), ("notes", "note added"))
            if key in call.parameters
        ]
        return f"{', '.join(changed).capitalize() or 'Updated'} by {who}"
    return None


def _log_capture(facts: IncidentFacts) -> str:
    state = facts.logs_capture_status
    if state is None:
        return "not planned"
    if state == "captured":
        lines = facts.logs_count or 0
        cut = ", truncated at the line limit (the earliest lines are kept)"
        return f"captured, {lines} lines{cut if facts.logs_truncated else ''}"
    if state == "pending" and facts.logs_capture_due_at is not None:
        return f"pending, due {format_time(facts.logs_capture_due_at)}"
    if facts.logs_capture_error:
        return f"{state}: {facts.logs_capture_error}"
    return state
