"""The API's edges as pydantic models: what a request may say, and what a response says.

The same models produce the OpenAPI document (``openapi.py``), so the document cannot drift from
what is validated and sent. Query parameters are parsed strictly: an integer is digits only
(pydantic alone would take ``10.0`` or ``5_0``), text may not hold control characters (they have
no business in a name or filter, and PostgreSQL text cannot hold NUL), and unknown or repeated
parameters are refused rather than silently ignored, so a typo is reported, not obeyed wrongly.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from downtime_operator.domain.annotations import NOTE_MAX_CHARS, ROOT_CAUSE_MAX_CHARS
from downtime_operator.domain.models import IncidentStatus, Severity
from downtime_operator.domain.sla_report import MONTH_PATTERN
from downtime_operator.services.admin_ports import IncidentFilter, PageCursor

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_TEXT = r"^[^\x00-\x1f\x7f]+$"
"""One line of text: no control characters."""
_NOTES = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""Free text that may span lines (tabs and newlines allowed, other control characters not)."""
_WRITTEN = (
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
)
"""Free text as ``_NOTES``, with something in it besides spaces."""
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CURSOR = r"^-?[0-9]{1,16}_[0-9a-f]{32}$"
_LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
_LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
"""Kubernetes label keys (an optional DNS prefix and a name) and values."""


def _whole_number(value: Any) -> Any:
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]{1,9}", value):
            raise PydanticCustomError("int_parsing", "Input should be a whole number")
        return int(value)
    return value


QueryInt = Annotated[int, BeforeValidator(_whole_number)]


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogLevel(enum.StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"
    DEBUG = "DEBUG"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(cursor: PageCursor) -> str:
    """``<microseconds since 1970>_<id as 32 hex digits>``.

    Plain digits rather than an opaque blob so that the document's pattern describes exactly
    the cursors that decode: any string matching it is a valid position, and nothing else is.
    """
    micros = (cursor.started_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{cursor.incident_id.hex}"


def decode_cursor(text: str) -> PageCursor:
    """The inverse of ``encode_cursor``; ValueError for anything not shaped like its output."""
    if not re.fullmatch(_CURSOR, text):
        raise ValueError("not a cursor returned by this API")
    micros, _, hex_id = text.partition("_")
    return PageCursor(
        started_at=_EPOCH + timedelta(microseconds=int(micros)), incident_id=UUID(hex=hex_id)
    )


class ListQuery(_Query):
    limit: QueryInt = Field(50, ge=1, le=500, description="Page size.")
    status: IncidentStatus | None = None
    severity: Severity | None = None
    environment: str | None = Field(None, min_length=1, max_length=253, pattern=_TEXT)
    monitor: str | None = Field(
        None, min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN, description="Monitor name."
    )
    namespace: str | None = Field(
        None, min_length=1, max_length=63, pattern=_DNS_LABEL, description="Monitor namespace."
    )
    cursor: str | None = Field(
        None,
        pattern=_CURSOR,
        description="`next_cursor` of the previous page.",
    )

    def filters(self) -> IncidentFilter:
        return IncidentFilter(
            status=self.status,
            severity=self.severity,
            environment=self.environment,
            monitor=self.monitor,
            namespace=self.namespace,
        )

    def page_cursor(self) -> PageCursor | None:
        return None if self.cursor is None else decode_cursor(self.cursor)


class NoQuery(_Query):
    """Routes without parameters still refuse unknown ones."""


class LogsQuery(_Query):
    level: LogLevel | None = None
    logger_name: str | None = Field(None, min_length=1, max_length=256, pattern=_TEXT)
    search: str | None = Field(None, min_length=1, max_length=500, pattern=_TEXT)

    @property
    def any_filter(self) -> bool:
        return any(v is not None for v in (self.level, self.logger_name, self.search))


class NotesQuery(_Query):
    notes: str | None = Field(None, max_length=4000, pattern=_NOTES)


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Each field may be left out but never null, and one at least is given: the document
    says exactly what is accepted (``_not_null`` and ``_something`` check it)."""
    schema["minProperties"] = 1
    for prop in schema["properties"].values():
        [text] = [branch for branch in prop.pop("anyOf") if branch != {"type": "null"}]
        prop.update(text)
        del prop["default"]


class IncidentUpdate(_Query):
    """The body of ``PATCH .../incidents/{id}``: at least one of the two, nothing else."""

    model_config = ConfigDict(json_schema_extra=_absent_not_null)

    root_cause: (
        Annotated[
            str, StringConstraints(min_length=1, max_length=ROOT_CAUSE_MAX_CHARS, pattern=_WRITTEN)
        ]
        | None
    ) = Field(None, description="Sets the root cause, replacing the one there.")
    notes: (
        Annotated[str, StringConstraints(min_length=1, max_length=NOTE_MAX_CHARS, pattern=_WRITTEN)]
        | None
    ) = Field(
        None,
        description="A note appended to the incident's notes as a new line"
        ' "[time key-name] text"; notes already there are kept.',
    )

    @field_validator("root_cause", "notes", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("string_type", "Input should be a valid string")
        return value

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.root_cause is None and self.notes is None:
            raise PydanticCustomError("missing", "give root_cause, notes or both")
        return self


class StatisticsQuery(_Query):
    days: QueryInt = Field(30, ge=1, le=365)


class TestNotificationQuery(_Query):
    channel: str = Field(
        min_length=3,
        max_length=317,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The NotificationChannel as namespace/name.",
    )


# -- Responses ---------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class IncidentOut(_Out):
    """An incident as listed (the seed's record without its bulky columns)."""

    incident_id: UUID
    monitor_namespace: str | None
    monitor_name: str | None
    k8s_name: str | None
    health_endpoint: str
    environment: str
    started_at: datetime
    detected_at: datetime
    ended_at: datetime | None
    duration_seconds: float | None
    severity: Severity
    status: IncidentStatus
    error_message: str | None
    http_status_code: int | None
    failed_checks: int
    notes: str | None
    logs_capture_status: str | None
    logs_count: int | None
    logs_truncated: bool | None
    logs_file_path: str | None
    created_at: datetime
    updated_at: datetime


class SeverityChangeOut(_Out):
    """One escalation of the incident: when, and from which severity to which."""

    model_config = ConfigDict(serialize_by_alias=True)

    at: datetime
    from_: Severity = Field(alias="from")
    to: Severity


class IncidentDetailOut(IncidentOut):
    """Every column of one incident, including captured logs stored in the row."""

    response_body: str | None
    logs_capture_due_at: datetime | None
    logs_capture_error: str | None
    logs_captured: list[Any] | None
    log_analysis: dict[str, Any] | None
    metrics_snapshot: Any
    server_info: Any
    root_cause: str | None
    kube_context: Any = Field(
        default=None,
        description="The Kubernetes context at detection and resolution (null: none recorded).",
    )
    playbook: str | None = Field(
        default=None, description="The monitor's spec.playbook when the incident opened."
    )
    severity_changes: list[SeverityChangeOut] | None = Field(
        default=None, description="Each escalation, in order (null: none)."
    )


class ListResponse(_Out):
    status: Literal["success"] = "success"
    total_incidents: int = Field(description="Incidents on this page.")
    ongoing: int
    resolved: int
    incidents: list[IncidentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class OngoingResponse(_Out):
    status: Literal["success"] = "success"
    count: int
    incidents: list[IncidentOut]


class IncidentResponse(_Out):
    status: Literal["success"] = "success"
    incident: IncidentDetailOut


class LogEntryOut(_Out):
    timestamp: datetime | str
    level: str | None = None
    logger: str | None = None
    message: str
    labels: dict[str, Any] = Field(default_factory=dict)


class LogFiltersOut(_Out):
    level: LogLevel | None
    logger: str | None
    search: str | None


class LogsResponse(_Out):
    status: Literal["success"] = "success"
    incident_id: UUID
    message: str
    total_logs: int = Field(description="Entries matching the filters.")
    total_captured: int = Field(description="Entries captured for the incident.")
    filters: LogFiltersOut
    logs: list[LogEntryOut]


class AnalysisOut(_Out):
    total_logs: int
    error_count: int
    warning_count: int
    error_types: dict[str, int]
    top_errors: list[tuple[str, int]]


class AnalysisResponse(_Out):
    status: Literal["success"] = "success"
    incident_id: UUID
    analysis: AnalysisOut


class NoAnalysisResponse(_Out):
    """Nothing captured: the seed's shape all the same (zero counts), and a message saying so."""

    status: Literal["success"] = "success"
    incident_id: UUID
    message: str
    analysis: AnalysisOut


class CaptureStateOut(BaseModel):
    """What the capture reports (state, lines, ...); keys beyond ``state`` pass through."""

    model_config = ConfigDict(frozen=True, extra="allow")

    state: str


class CaptureResponse(_Out):
    status: Literal["success"] = "success"
    message: str
    incident_id: UUID
    result: CaptureStateOut


class TransitionResponse(_Out):
    status: Literal["success"] = "success"
    message: str
    incident: IncidentDetailOut


class MonitorUptimeOut(_Out):
    namespace: str
    name: str
    incidents: int
    downtime_seconds: float = Field(description="Union of the monitor's incidents in the period.")
    uptime_percent: float


class StatisticsOut(_Out):
    total_incidents: int
    total_downtime_seconds: float
    average_duration_seconds: float
    by_severity: dict[str, int]
    by_status: dict[str, int]
    mttr_seconds: float | None = Field(
        description="Mean duration of the incidents resolved in the period; null if none."
    )
    longest_incident_seconds: float
    monitors: list[MonitorUptimeOut] = Field(
        description="Monitors with downtime in the period; any other monitor was 100% up."
    )


class StatisticsResponse(_Out):
    status: Literal["success"] = "success"
    period_days: int
    period_start: datetime
    period_end: datetime
    statistics: StatisticsOut


class HealthResponse(_Out):
    status: Literal["ok"] = "ok"


class FieldError(_Out):
    field: str
    message: str


class ErrorResponse(_Out):
    status: Literal["error"] = "error"
    message: str


class ValidationErrorResponse(_Out):
    status: Literal["error"] = "error"
    message: str
    errors: list[FieldError]


class NotificationOut(_Out):
    channel: str
    event: str
    sequence: int
    state: Literal["pending", "sent", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    provider_id: str | None
    created_at: datetime
    sent_at: datetime | None


class NotificationsResponse(_Out):
    status: Literal["success"] = "success"
    incident_id: UUID
    notifications: list[NotificationOut]


class TestNotificationResponse(_Out):
    status: Literal["success"] = "success"
    message: str
    channel: str
    test_id: UUID


class ReportSummaryOut(_Out):
    monitor: str | None = Field(description="namespace/name; null for rows the seed wrote.")
    incident: str | None = Field(description="The DowntimeIncident's name.")
    endpoint: str
    environment: str
    severity: Severity
    status: IncidentStatus


class ReportImpactOut(_Out):
    started_at: datetime = Field(description="The first failed check.")
    ended_at: datetime | None
    duration_seconds: float | None
    failed_checks: int
    error_message: str | None
    http_status_code: int | None
    severity_changes: list[SeverityChangeOut] = Field(description="Each escalation, in order.")


class TimelineEntryOut(_Out):
    at: datetime
    event: str


class LogCaptureOut(_Out):
    state: str | None
    lines: int | None
    truncated: bool | None
    error: str | None
    summary: str = Field(description="The capture's state in words.")


class TopErrorOut(_Out):
    message: str
    count: int


class LogFindingsOut(_Out):
    total_logs: int
    error_count: int
    warning_count: int
    error_types: dict[str, int]
    top_errors: list[TopErrorOut]


class EvidenceOut(_Out):
    metrics_snapshot: Any
    server_info: Any
    kubernetes_context: Any = Field(
        default=None,
        description="Top cause, probable causes with their evidence, and the snapshots"
        " (null: no Kubernetes target).",
    )
    log_capture: LogCaptureOut
    log_analysis: LogFindingsOut | None = Field(description="Null when no analysis was stored.")


class ReportOut(_Out):
    incident_id: UUID
    summary: ReportSummaryOut
    impact: ReportImpactOut
    timeline: list[TimelineEntryOut] = Field(description="Oldest first.")
    evidence: EvidenceOut
    playbook: str | None
    root_cause: str | None
    notes: str | None


class ReportResponse(_Out):
    status: Literal["success"] = "success"
    incident_id: UUID
    report: ReportOut


# -- SLA report (issue 15) ---------------------------------------------------------------------


class SloReportQuery(_Query):
    month: str = Field(pattern=MONTH_PATTERN, description="The calendar month, YYYY-MM (UTC).")
    monitor: str | None = Field(
        None,
        min_length=3,
        max_length=317,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="One monitor, as namespace/name; absent: every monitor with spec.slo.",
    )


class SloMonitorOut(_Out):
    namespace: str
    name: str
    objective: str = Field(description="spec.slo.objective, in percent, as written.")
    availability_percent: float = Field(
        description="Of the month's judged time: the monitor existed and was not in maintenance."
    )
    downtime_seconds: float
    maintenance_seconds: float = Field(description="Excluded from the judged time.")
    incidents: int
    budget_remaining_seconds: float = Field(description="Negative once the budget is spent.")
    budget_remaining_percent: float
    met: bool


class SloReportResponse(_Out):
    status: Literal["success"] = "success"
    month: str
    period_start: datetime
    period_end: datetime = Field(description="The month's end, or now for the current month.")
    monitors: list[SloMonitorOut]


def _one_of_monitors_and_selector(schema: dict[str, Any]) -> None:
    """Either may be given, never null, and exactly one: the document says what is accepted."""
    for name in ("monitors", "selector"):
        prop = schema["properties"][name]
        [given] = [branch for branch in prop.pop("anyOf") if branch != {"type": "null"}]
        prop.update(given)
        del prop["default"]
    schema["oneOf"] = [{"required": ["monitors"]}, {"required": ["selector"]}]
    # Label keys are checked by pattern: say that no other key is accepted.
    schema["properties"]["selector"]["additionalProperties"] = False
    schema["properties"]["selector"]["propertyNames"]["pattern"] = _LABEL_KEY


class MaintenanceStart(_Query):
    """The body of ``POST /admin/downtime/maintenance``: which monitors, for how long, why."""

    model_config = ConfigDict(json_schema_extra=_one_of_monitors_and_selector)

    namespace: str = Field(min_length=1, max_length=63, pattern=_DNS_LABEL)
    monitors: (
        list[
            Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)]
        ]
        | None
    ) = Field(None, min_length=1, max_length=256, description="Monitor names.")
    selector: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=317, pattern=_LABEL_KEY)],
            Annotated[str, StringConstraints(max_length=63, pattern=_LABEL_VALUE)],
        ]
        | None
    ) = Field(None, max_length=64, description="matchLabels over the namespace's monitors.")
    duration: str = Field(
        pattern=r"^([1-9][0-9]{0,2}h([0-9]{1,2}m)?|[1-9][0-9]{0,3}m)$",
        description="Whole minutes or hours, at least 1m: 30m, 2h, 1h30m.",
    )
    reason: str = Field(min_length=1, max_length=1024, pattern=_WRITTEN)

    @field_validator("monitors", "selector", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("type_error", "Input should not be null")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.monitors is None) == (self.selector is None):
            raise PydanticCustomError("missing", "give exactly one of monitors and selector")
        return self


class MaintenanceResponse(_Out):
    status: Literal["success"] = "success"
    message: str
    namespace: str
    name: str = Field(description="The MaintenanceWindow (kubectl get mw NAME -n NAMESPACE).")
    start: datetime
    end: datetime
