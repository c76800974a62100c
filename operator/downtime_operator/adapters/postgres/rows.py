"""Mapping between ``downtime_incidents`` rows and the domain's ``Incident``.

Kept apart from the queries so that the one place that knows column names, which columns may be
updated, and how Python values become SQL values is small enough to review at a glance. Column
names only ever come from the constants here, never from callers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.sealed_columns import (
    INCIDENT_SEALED,
    SEALED_COLUMNS,
    opened,
    seal_stored,
)
from downtime_operator.domain.evidence import (
    server_info_from_json,
    server_info_json,
    snapshot_from_json,
    snapshot_json,
)
from downtime_operator.domain.models import (
    Incident,
    IncidentStatus,
    LogCaptureState,
    MonitorRef,
    Severity,
)

RESPONSE_BODY_MAX_CHARS = 4096
"""The seed stores a truncated body: enough to see the error page, not a whole HTML dump."""

OPEN_INCIDENT_INDEX = "downtime_incidents_one_open_per_monitor"
"""Partial unique index enforcing one open incident per monitor (migration 0001)."""

LOG_CAPTURE_STATES = frozenset({"pending", "captured", "failed", "disabled"})

EVIDENCE_COLUMNS = ("metrics_snapshot", "server_info")
"""The JSONB columns an ``Incident`` carries: small (bounded by the snapshot's caps)."""


def _as_text(json_columns: Iterable[str]) -> str:
    # Read JSONB as text and decode here, so results do not depend on a pool's type codecs.
    return ", ".join(f"{c}::text AS {c}" for c in json_columns)


INCIDENT_COLUMNS = (
    "incident_id, monitor_namespace, monitor_name, k8s_name, health_endpoint, environment,"
    " started_at, detected_at, severity, status, ended_at, duration_seconds, error_message,"
    " http_status_code, response_body, failed_checks, notes, root_cause, logs_capture_status,"
    " playbook, " + _as_text(EVIDENCE_COLUMNS)
)
"""What an ``Incident`` needs; the bulky JSONB columns (captured logs) are left out on purpose."""

JSON_COLUMNS = (
    "logs_captured",
    "metrics_snapshot",
    "server_info",
    "log_analysis",
    "kube_context",
    "severity_changes",
)

DETAIL_COLUMNS = (
    INCIDENT_COLUMNS + ", logs_file_path, created_at, updated_at, logs_capture_due_at,"
    " logs_count, logs_truncated, logs_capture_error, "
    + _as_text(c for c in JSON_COLUMNS if c not in EVIDENCE_COLUMNS)
)
"""Every column, for the API's full view of one incident."""


def require_aware(value: datetime, what: str) -> datetime:
    """Reject naive datetimes: asyncpg would silently take them as UTC, hiding a caller bug."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


def clean_text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; a probe body may. Replace it rather than fail a write."""
    return None if value is None else value.replace("\x00", "\ufffd")


def truncate_body(value: str | None) -> str | None:
    cleaned = clean_text(value)
    return None if cleaned is None else cleaned[:RESPONSE_BODY_MAX_CHARS]


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return value


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json_text(value: Any) -> str | None:
    """JSON text for a ``$n::text::jsonb`` parameter (jsonb also rejects ``\\u0000``)."""
    if value is None:
        return None
    return json.dumps(_clean_json(value), default=_json_default, ensure_ascii=False)


def duration_between(started_at: datetime, ended_at: datetime) -> float:
    return max((ended_at - started_at) / timedelta(seconds=1), 0.0)


def incident_from_row(row: Mapping[str, Any], keys: LogKeyRing) -> Incident:
    """The incident of a row; a sealed part that cannot be opened reads as absent (logged), so
    the runners and lists keep working without it."""
    row = opened(keys, row, INCIDENT_SEALED, strict=False)
    return Incident(
        incident_id=row["incident_id"],
        # Rows written by the seed (before the operator) have no monitor; keep them readable.
        monitor=MonitorRef(
            namespace=row["monitor_namespace"] or "", name=row["monitor_name"] or ""
        ),
        k8s_name=row["k8s_name"] or "",
        health_endpoint=row["health_endpoint"],
        environment=row["environment"],
        started_at=row["started_at"],
        detected_at=row["detected_at"],
        severity=Severity(row["severity"]),
        status=IncidentStatus(row["status"]),
        ended_at=row["ended_at"],
        duration_seconds=row["duration_seconds"],
        error_message=row["error_message"],
        http_status_code=row["http_status_code"],
        response_body=row["response_body"],
        failed_checks=row["failed_checks"],
        notes=row["notes"],
        root_cause=row["root_cause"],
        logs_state=(
            LogCaptureState(row["logs_capture_status"]) if row["logs_capture_status"] else None
        ),
        metrics_snapshot=snapshot_from_json(row["metrics_snapshot"]),
        server_info=server_info_from_json(row["server_info"]),
        playbook=row["playbook"],
    )


def details_from_row(row: Mapping[str, Any], keys: LogKeyRing) -> dict[str, Any]:
    """All columns as a plain dict (JSONB decoded, sealed columns opened), shaped like the
    seed's incident record; raises SealedDataError rather than serve what it cannot open."""
    out = opened(keys, row, SEALED_COLUMNS, strict=True)
    for column in JSON_COLUMNS:
        text = out.get(column)
        out[column] = None if text is None else json.loads(text)
    return out


INSERT_SQL = f"""
INSERT INTO downtime_incidents (
    incident_id, monitor_namespace, monitor_name, k8s_name, health_endpoint, environment,
    started_at, detected_at, severity, status, ended_at, duration_seconds, error_message,
    http_status_code, response_body, failed_checks, notes, root_cause,
    metrics_snapshot, server_info, playbook
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
    $19::text::jsonb, $20::text::jsonb, $21)
ON CONFLICT (incident_id) DO NOTHING
RETURNING {INCIDENT_COLUMNS}
"""


def insert_params(incident: Incident, keys: LogKeyRing) -> tuple[Any, ...]:
    """Positional parameters for ``INSERT_SQL``, validated and normalised."""
    started_at = require_aware(incident.started_at, "started_at")
    ended_at = None
    duration = incident.duration_seconds
    if incident.ended_at is not None:
        ended_at = require_aware(incident.ended_at, "ended_at")
        if duration is None:
            duration = duration_between(started_at, ended_at)
    return (
        incident.incident_id,
        incident.monitor.namespace,
        incident.monitor.name,
        incident.k8s_name,
        incident.health_endpoint,
        incident.environment,
        started_at,
        require_aware(incident.detected_at, "detected_at"),
        Severity(incident.severity).value,
        IncidentStatus(incident.status).value,
        ended_at,
        duration,
        clean_text(incident.error_message),
        incident.http_status_code,
        seal_stored(
            keys, incident.incident_id, "response_body", truncate_body(incident.response_body)
        ),
        incident.failed_checks,
        clean_text(incident.notes),
        clean_text(incident.root_cause),
        *evidence_values(incident, keys),
        clean_text(incident.playbook),
    )


def evidence_values(incident: Incident, keys: LogKeyRing) -> tuple[str | None, str | None]:
    """``metrics_snapshot`` and ``server_info`` (sealed) as JSON text, for an insert."""
    snapshot, server = incident.metrics_snapshot, incident.server_info
    return (
        None if snapshot is None else to_json_text(snapshot_json(snapshot)),
        None
        if server is None
        else seal_stored(
            keys, incident.incident_id, "server_info", to_json_text(server_info_json(server))
        ),
    )


@dataclass(frozen=True)
class Updatable:
    """How one updatable column is written: its SQL placeholder cast and value conversion."""

    placeholder: str
    convert: Callable[[Any], Any]


def sealed_value(keys: LogKeyRing, incident_id: UUID, column: str, stored: Any) -> Any:
    """A column's converted value, sealed when the column holds captured text."""
    return seal_stored(keys, incident_id, column, stored) if column in SEALED_COLUMNS else stored


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


def _log_state(value: Any) -> str:
    text = str(value)
    if text not in LOG_CAPTURE_STATES:
        raise ValueError(f"logs_capture_status must be one of {sorted(LOG_CAPTURE_STATES)}")
    return text


def _as_is(value: Any) -> Any:
    return value


_TS = Updatable("${n}::timestamptz", _optional(lambda v: require_aware(v, "timestamp")))
_PLAIN = Updatable("${n}", _as_is)
_TEXT = Updatable("${n}", clean_text)
_JSON = Updatable("${n}::text::jsonb", to_json_text)
# The Prometheus series (``metrics_snapshot.prometheus``) are the capture's to write: a new
# snapshot of the checks keeps them (see ``keep_prometheus``).
_SNAPSHOT = Updatable(
    "CASE WHEN metrics_snapshot ? 'prometheus' AND jsonb_typeof(${n}::text::jsonb) = 'object'"
    " THEN jsonb_set(${n}::text::jsonb, '{{prometheus}}', metrics_snapshot->'prometheus')"
    " ELSE ${n}::text::jsonb END",
    to_json_text,
)

UPDATABLE: Mapping[str, Updatable] = {
    # Identity and the immutable facts (incident_id, monitor, k8s_name, started_at,
    # detected_at, health_endpoint, environment, created_at) are deliberately absent.
    "status": Updatable("${n}", lambda v: IncidentStatus(v).value),
    "severity": Updatable("${n}", lambda v: Severity(v).value),
    "ended_at": _TS,
    "duration_seconds": _PLAIN,
    "error_message": _TEXT,
    "http_status_code": _PLAIN,
    "response_body": Updatable("${n}", truncate_body),
    "failed_checks": _PLAIN,
    "notes": _TEXT,
    "logs_captured": _JSON,
    "logs_file_path": _TEXT,
    "metrics_snapshot": _SNAPSHOT,
    "server_info": _JSON,
    "logs_capture_status": Updatable("${n}", _optional(_log_state)),
    "logs_capture_due_at": _TS,
    "logs_count": _PLAIN,
    "logs_truncated": _PLAIN,
    "logs_capture_error": _TEXT,
    "log_analysis": _JSON,
}


def keep_prometheus(snapshot: str | None, *, stored: str | None) -> str | None:
    """``snapshot`` (JSON text) with the ``prometheus`` part of the ``stored`` one, as
    PostgreSQL's update does in SQL."""
    if snapshot is None or stored is None:
        return snapshot
    kept = json.loads(stored)
    new = json.loads(snapshot)
    if not isinstance(kept, dict) or "prometheus" not in kept or not isinstance(new, dict):
        return snapshot
    return to_json_text({**new, "prometheus": kept["prometheus"]})


def build_update(
    incident_id: UUID, fields: Mapping[str, Any], keys: LogKeyRing
) -> tuple[str, list[Any]]:
    """``UPDATE`` statement and parameters for whitelisted ``fields`` (captured text sealed).

    Setting ``ended_at`` without ``duration_seconds`` also recomputes the duration, so the two
    can never disagree.
    """
    unknown = sorted(set(fields) - set(UPDATABLE))
    if unknown:
        raise ValueError(f"not an updatable incident field: {', '.join(map(repr, unknown))}")
    params: list[Any] = [incident_id]
    assignments: list[str] = []
    for name, value in fields.items():
        spec = UPDATABLE[name]
        params.append(sealed_value(keys, incident_id, name, spec.convert(value)))
        placeholder = spec.placeholder.format(n=len(params))
        assignments.append(f"{name} = {placeholder}")
        if name == "ended_at" and "duration_seconds" not in fields:
            assignments.append(
                f"duration_seconds = CASE WHEN {placeholder} IS NULL THEN NULL ELSE"
                f" GREATEST(EXTRACT(EPOCH FROM ({placeholder} - started_at))::float8, 0) END"
            )
    sql = f"UPDATE downtime_incidents SET {', '.join(assignments)} WHERE incident_id = $1"
    return sql, params
