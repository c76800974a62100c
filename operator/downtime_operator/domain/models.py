"""Value types shared by every layer: monitors, check results, incidents."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from downtime_operator.domain.evidence import MetricsSnapshot, ServerInfo
from downtime_operator.domain.kube_context import TargetKind
from downtime_operator.domain.prometheus import MetricQuery
from downtime_operator.domain.slo import SloSpec


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


class IncidentStatus(enum.StrEnum):
    ONGOING = "ongoing"
    INVESTIGATING = "investigating"
    RESOLVED = "resolved"


class MonitorState(enum.StrEnum):
    UP = "Up"
    DOWN = "Down"
    UNKNOWN = "Unknown"
    PAUSED = "Paused"
    MAINTENANCE = "Maintenance"
    """Checked, but inside a maintenance window: failures open no incident (issue 15)."""


class LogStorage(enum.StrEnum):
    AUTO = "auto"
    DATABASE = "database"
    FILE = "file"


class LogCaptureState(enum.StrEnum):
    """How far an incident's log capture got (``logs_capture_status``, CR ``status.logs.state``)."""

    PENDING = "pending"
    CAPTURED = "captured"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass(frozen=True, kw_only=True)
class MonitorRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, kw_only=True)
class Escalation:
    after: timedelta
    severity: Severity


@dataclass(frozen=True, kw_only=True)
class Expectation:
    status: tuple[str, ...] = ("2xx",)
    body_contains: str | None = None
    max_latency: timedelta | None = None


@dataclass(frozen=True, kw_only=True)
class LogCaptureSpec:
    enabled: bool | None = None
    query: str | None = None
    before: timedelta = timedelta(minutes=5)
    after: timedelta = timedelta(minutes=5)
    max_lines: int = 10000
    storage: LogStorage = LogStorage.AUTO


@dataclass(frozen=True, kw_only=True)
class SecretHeader:
    """A request header whose value is a key of a Secret in the monitor's namespace."""

    name: str
    secret: str
    key: str


@dataclass(frozen=True, kw_only=True)
class MonitorSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    headers_from: tuple[SecretHeader, ...] = ()
    """Resolved into ``headers`` by the runner before each check (``_with_secret_headers``)."""
    body: str | None = None
    interval: timedelta = timedelta(seconds=60)
    timeout: timedelta = timedelta(seconds=10)
    retry_interval: timedelta = timedelta(seconds=10)
    expect: Expectation = field(default_factory=Expectation)
    failure_threshold: int = 3
    success_threshold: int = 1
    severity: Severity = Severity.HIGH
    escalation: tuple[Escalation, ...] = ()
    environment: str = "production"
    paused: bool = False
    log_capture: LogCaptureSpec = field(default_factory=LogCaptureSpec)
    notifications: tuple[str, ...] = ()
    """The channels the spec lists (name, else type), reported as not sent: no notifier exists."""
    target_ref: tuple[TargetKind, str] | None = None
    """``spec.targetRef``: the workload behind the endpoint, for the incident's context."""
    playbook: str | None = None
    """``spec.playbook``: what to do about an outage (a URL or short text), given to its
    incidents."""
    slo: SloSpec | None = None
    """``spec.slo``: the objective its ``status.slo`` is measured against."""
    metrics: tuple[MetricQuery, ...] = ()
    """``spec.metrics``: PromQL whose values around an outage go into its metrics snapshot."""


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """One probe of an endpoint. ``error`` is a specific, human reason when ``ok`` is false."""

    at: datetime
    ok: bool
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    body_excerpt: str | None = None
    server: ServerInfo | None = None
    """Only on a failed check the prober was asked to describe (the one that opens an incident)."""


@dataclass(kw_only=True)
class Incident:
    """One outage of one monitor; the Postgres row and the DowntimeIncident CR both mirror it."""

    incident_id: UUID
    monitor: MonitorRef
    k8s_name: str
    health_endpoint: str
    environment: str
    started_at: datetime
    detected_at: datetime
    severity: Severity
    status: IncidentStatus = IncidentStatus.ONGOING
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    error_message: str | None = None
    http_status_code: int | None = None
    response_body: str | None = None
    failed_checks: int = 0
    notes: str | None = None
    root_cause: str | None = None
    """Written by a person through the admin API (set or replaced), never by the runner."""
    logs_state: LogCaptureState | None = None
    """None until a log capture is planned (and for incidents from before log capture)."""
    metrics_snapshot: MetricsSnapshot | None = None
    """The monitor's own checks around the outage: at detection, completed at resolution."""
    server_info: ServerInfo | None = None
    """What the check that opened the incident learned about the server."""
    playbook: str | None = None
    """The monitor's ``spec.playbook`` when the incident opened: the one that applied then,
    whatever the monitor says later."""

    @property
    def is_open(self) -> bool:
        return self.status is not IncidentStatus.RESOLVED
