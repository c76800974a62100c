"""Between ``downtime_incidents`` rows in SQLite and Python values, mirroring the Postgres rows.

The value rules are the PostgreSQL adapter's own (``adapters.postgres.rows``: NUL-free text,
the truncated response body, JSON text, aware datetimes), imported rather than copied, so the
two stores cannot drift apart in what they accept. Only the SQLite encodings live here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.postgres.rows import (
    EVIDENCE_COLUMNS,
    LOG_CAPTURE_STATES,
    clean_text,
    duration_between,
    evidence_values,
    require_aware,
    sealed_value,
    to_json_text,
    truncate_body,
)
from downtime_operator.adapters.sealed_columns import INCIDENT_SEALED, SEALED_COLUMNS, opened
from downtime_operator.domain.evidence import server_info_from_json, snapshot_from_json
from downtime_operator.domain.models import (
    Incident,
    IncidentStatus,
    LogCaptureState,
    MonitorRef,
    Severity,
)

_CREATED_COLUMNS = (
    "incident_id, monitor_namespace, monitor_name, k8s_name, health_endpoint, environment,"
    " started_at, detected_at, severity, status, ended_at, duration_seconds, error_message,"
    " http_status_code, response_body, failed_checks, notes, root_cause,"
    " metrics_snapshot, server_info, playbook"
)
"""What ``create_incident`` writes, as in PostgreSQL: the capture state is the capture plan's."""

INCIDENT_COLUMNS = _CREATED_COLUMNS + ", logs_capture_status"
"""What an ``Incident`` needs; the bulky JSON columns are left out, as in PostgreSQL."""

JSON_COLUMNS = (
    "logs_captured",
    "metrics_snapshot",
    "server_info",
    "log_analysis",
    "kube_context",
    "severity_changes",
)
_TIMESTAMP_COLUMNS = (
    "started_at",
    "detected_at",
    "ended_at",
    "created_at",
    "updated_at",
    "logs_capture_due_at",
)

DETAIL_COLUMNS = ", ".join(
    (
        INCIDENT_COLUMNS,
        "logs_file_path, created_at, updated_at, logs_capture_due_at",
        "logs_count, logs_truncated, logs_capture_error",
        *(c for c in JSON_COLUMNS if c not in EVIDENCE_COLUMNS),
    )
)
"""Every column, for the API's full view of one incident."""


def timestamp(value: datetime, what: str) -> str:
    """Fixed-width UTC text: its string order is its time order (see ``schema``)."""
    return require_aware(value, what).astimezone(UTC).isoformat(timespec="microseconds")


def parse_timestamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _required_timestamp(text: str) -> datetime:
    parsed = parse_timestamp(text)
    assert parsed is not None  # NOT NULL columns
    return parsed


def incident_from_row(row: Mapping[str, Any], keys: LogKeyRing) -> Incident:
    """As PostgreSQL's: a sealed part that cannot be opened reads as absent (logged)."""
    row = opened(keys, row, INCIDENT_SEALED, strict=False)
    return Incident(
        incident_id=UUID(row["incident_id"]),
        monitor=MonitorRef(
            namespace=row["monitor_namespace"] or "", name=row["monitor_name"] or ""
        ),
        k8s_name=row["k8s_name"] or "",
        health_endpoint=row["health_endpoint"],
        environment=row["environment"],
        started_at=_required_timestamp(row["started_at"]),
        detected_at=_required_timestamp(row["detected_at"]),
        severity=Severity(row["severity"]),
        status=IncidentStatus(row["status"]),
        ended_at=parse_timestamp(row["ended_at"]),
        duration_seconds=row["duration_seconds"],
        error_message=row["error_message"],
        http_status_code=row["http_status_code"],
        response_body=row["response_body"],
        failed_checks=row["failed_checks"],
        notes=row["notes"],
        root_cause=row["root_cause"],
        logs_state=_optional(LogCaptureState)(row["logs_capture_status"]),
        metrics_snapshot=snapshot_from_json(row["metrics_snapshot"]),
        server_info=server_info_from_json(row["server_info"]),
        playbook=row["playbook"],
    )


def details_from_row(row: sqlite3.Row, keys: LogKeyRing) -> dict[str, Any]:
    """The row's columns as a dict typed like PostgreSQL's (UUID, datetimes, bool, JSON), sealed
    columns opened; raises SealedDataError rather than serve what it cannot open."""
    out = opened(keys, dict(zip(row.keys(), tuple(row), strict=True)), SEALED_COLUMNS, strict=True)
    out["incident_id"] = UUID(out["incident_id"])
    for column in _TIMESTAMP_COLUMNS:
        if column in out:
            out[column] = parse_timestamp(out[column])
    for column in JSON_COLUMNS:
        if out.get(column) is not None:
            out[column] = json.loads(out[column])
    if out.get("logs_truncated") is not None:
        out["logs_truncated"] = bool(out["logs_truncated"])
    return out


INSERT_SQL = f"""
INSERT INTO downtime_incidents ({_CREATED_COLUMNS}, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def insert_params(incident: Incident, *, now: datetime, keys: LogKeyRing) -> tuple[Any, ...]:
    started_at = require_aware(incident.started_at, "started_at")
    ended_at = None
    duration = incident.duration_seconds
    if incident.ended_at is not None:
        ended_at = require_aware(incident.ended_at, "ended_at")
        if duration is None:
            duration = duration_between(started_at, ended_at)
    written = timestamp(now, "now")
    return (
        str(incident.incident_id),
        incident.monitor.namespace,
        incident.monitor.name,
        incident.k8s_name,
        incident.health_endpoint,
        incident.environment,
        timestamp(started_at, "started_at"),
        timestamp(incident.detected_at, "detected_at"),
        Severity(incident.severity).value,
        IncidentStatus(incident.status).value,
        None if ended_at is None else timestamp(ended_at, "ended_at"),
        duration,
        clean_text(incident.error_message),
        incident.http_status_code,
        sealed_value(
            keys, incident.incident_id, "response_body", truncate_body(incident.response_body)
        ),
        incident.failed_checks,
        clean_text(incident.notes),
        clean_text(incident.root_cause),
        *evidence_values(incident, keys),
        clean_text(incident.playbook),
        written,
        written,
    )


def appended_notes(existing: str | None, note: str | None) -> str | None:
    """A transition's note goes on a new line after the notes already there."""
    if not note:
        return existing
    return f"{existing}\n{note}" if existing else note


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


def _log_state(value: Any) -> str:
    text = str(value)
    if text not in LOG_CAPTURE_STATES:
        raise ValueError(f"logs_capture_status must be one of {sorted(LOG_CAPTURE_STATES)}")
    return text


def _boolean(value: Any) -> int:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {value!r}")
    return int(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


_TS = _optional(lambda v: timestamp(v, "timestamp"))
_INT = _optional(_integer)

UPDATABLE: Mapping[str, Callable[[Any], Any]] = {
    # The same whitelist as PostgreSQL's ``rows.UPDATABLE`` (a contract test compares them):
    # identity and immutable facts are absent, so no caller can rewrite history.
    "status": lambda v: IncidentStatus(v).value,
    "severity": lambda v: Severity(v).value,
    "ended_at": _TS,
    "duration_seconds": _optional(_number),
    "error_message": clean_text,
    "http_status_code": _INT,
    "response_body": truncate_body,
    "failed_checks": _integer,
    "notes": clean_text,
    "logs_captured": to_json_text,
    "logs_file_path": clean_text,
    "metrics_snapshot": to_json_text,
    "server_info": to_json_text,
    "logs_capture_status": _optional(_log_state),
    "logs_capture_due_at": _TS,
    "logs_count": _INT,
    "logs_truncated": _optional(_boolean),
    "logs_capture_error": clean_text,
    "log_analysis": to_json_text,
}


def update_values(incident_id: UUID, fields: Mapping[str, Any], keys: LogKeyRing) -> dict[str, Any]:
    """Whitelisted ``fields`` converted to SQLite values (captured text sealed); raises
    ValueError naming the rest."""
    unknown = sorted(set(fields) - set(UPDATABLE))
    if unknown:
        raise ValueError(f"not an updatable incident field: {', '.join(map(repr, unknown))}")
    return {
        name: sealed_value(keys, incident_id, name, UPDATABLE[name](value))
        for name, value in fields.items()
    }
