"""Pure builders of Kubernetes resource bodies, unit-tested without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from downtime_operator.domain.evidence import ServerInfo
from downtime_operator.domain.log_capture import CaptureResult, capture_view
from downtime_operator.domain.models import Incident, MonitorRef

GROUP = "monitoring.gatewayz.ai"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
MONITOR_LABEL = f"{GROUP}/monitor"
MONITORS = "healthmonitors"
INCIDENTS = "downtimeincidents"
COMPONENT = "downtime-operator"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def incident_body(incident: Incident, *, monitor_uid: str | None) -> dict[str, Any]:
    """The DowntimeIncident as created: immutable spec, labels, owner reference."""
    metadata: dict[str, Any] = {
        "name": incident.k8s_name,
        "namespace": incident.monitor.namespace,
        "labels": {MONITOR_LABEL: incident.monitor.name},
    }
    if monitor_uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "HealthMonitor",
                "name": incident.monitor.name,
                "uid": monitor_uid,
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "DowntimeIncident",
        "metadata": metadata,
        "spec": {
            "incidentId": str(incident.incident_id),
            "monitorRef": {"name": incident.monitor.name, "namespace": incident.monitor.namespace},
            "healthEndpoint": incident.health_endpoint,
            "environment": incident.environment,
            "startedAt": iso(incident.started_at),
            "detectedAt": iso(incident.detected_at),
        },
    }


def incident_status(incident: Incident) -> dict[str, Any]:
    """The mutable facts, written through the status subresource."""
    status: dict[str, Any] = {
        "status": incident.status.value,
        "severity": incident.severity.value,
        "failedChecks": incident.failed_checks,
        "errorMessage": incident.error_message,
        "httpStatusCode": incident.http_status_code,
        "endedAt": iso(incident.ended_at) if incident.ended_at else None,
        "durationSeconds": (
            round(incident.duration_seconds, 3) if incident.duration_seconds is not None else None
        ),
        "notes": incident.notes,
        "rootCause": incident.root_cause,
        "playbook": incident.playbook,
        # Only the state: lines, window and analysis are the capture service's to write, and
        # a merge patch leaves them in place.
        "logs": {"state": incident.logs_state.value} if incident.logs_state else None,
        "serverInfo": server_summary(incident.server_info),
    }
    return {key: value for key, value in status.items() if value is not None}


ADDRESSES_SHOWN = 8


def server_summary(info: ServerInfo | None) -> dict[str, Any] | None:
    """``status.serverInfo``: addresses, HTTP version and certificate expiry, to keep the CR
    small; the full record is the incident's ``server_info`` in the store."""
    if info is None:
        return None
    summary: dict[str, Any] = {
        "addresses": list(info.addresses[:ADDRESSES_SHOWN]),
        "httpVersion": info.http_version,
        "certificateNotAfter": iso(info.certificate.not_after) if info.certificate else None,
    }
    return {key: value for key, value in summary.items() if value} or None


TOP_ERRORS_SHOWN = 3
_TOP_ERROR_CHARS = 256


def log_capture_status(result: CaptureResult) -> dict[str, Any]:
    """``status.logs`` and, for a captured run, ``status.analysis`` (counts and top 3 errors)."""
    status: dict[str, Any] = {"logs": capture_view(result)}
    if result.analysis is not None:
        status["analysis"] = {
            "errorCount": result.analysis.error_count,
            "warningCount": result.analysis.warning_count,
            "topErrors": [
                {"message": message[:_TOP_ERROR_CHARS], "count": count}
                for message, count in result.analysis.top_errors[:TOP_ERRORS_SHOWN]
            ],
        }
    return status


def event_body(
    *,
    monitor: MonitorRef,
    monitor_uid: str | None,
    reason: str,
    message: str,
    warning: bool,
    now: datetime,
    kind: str = "HealthMonitor",
) -> dict[str, Any]:
    """An Event about one of our objects (``monitor`` names it: a HealthMonitor unless
    ``kind`` says otherwise)."""
    involved: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": monitor.name,
        "namespace": monitor.namespace,
    }
    if monitor_uid:
        involved["uid"] = monitor_uid
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{monitor.name}.", "namespace": monitor.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
