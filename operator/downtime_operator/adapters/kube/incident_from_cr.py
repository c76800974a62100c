"""A DowntimeIncident CR read back into an Incident (restart while the store is down)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from downtime_operator.adapters.kube.bodies import parse_iso
from downtime_operator.domain.models import (
    Incident,
    IncidentStatus,
    LogCaptureState,
    MonitorRef,
    Severity,
)


def incident_from_resource(body: Mapping[str, Any]) -> Incident:
    spec = body["spec"]
    status = body.get("status") or {}
    ref = spec["monitorRef"]
    ended = status.get("endedAt")
    logs = status.get("logs") or {}
    return Incident(
        incident_id=UUID(spec["incidentId"]),
        monitor=MonitorRef(namespace=ref["namespace"], name=ref["name"]),
        k8s_name=body["metadata"]["name"],
        health_endpoint=spec["healthEndpoint"],
        environment=spec.get("environment", "production"),
        started_at=parse_iso(spec["startedAt"]),
        detected_at=parse_iso(spec["detectedAt"]),
        severity=Severity(status.get("severity", "high")),
        status=IncidentStatus(status.get("status", "ongoing")),
        ended_at=parse_iso(ended) if ended else None,
        duration_seconds=status.get("durationSeconds"),
        error_message=status.get("errorMessage"),
        http_status_code=status.get("httpStatusCode"),
        failed_checks=status.get("failedChecks", 0),
        notes=status.get("notes"),
        root_cause=status.get("rootCause"),
        playbook=status.get("playbook"),
        logs_state=LogCaptureState(logs["state"]) if logs.get("state") else None,
    )
