"""HealthMonitor ``spec`` (as stored by Kubernetes) -> MonitorSpec, validated field by field.

The API server's schema refuses most bad input at apply time; this is the second line for what
a schema cannot say (or for clusters where the CRD was edited). Errors name the field path, so
the operator can report them as an ``InvalidSpec`` condition instead of crashing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from downtime_operator.domain.durations import parse_duration
from downtime_operator.domain.kube_context import TargetKind
from downtime_operator.domain.models import (
    Escalation,
    Expectation,
    LogCaptureSpec,
    LogStorage,
    MonitorSpec,
    SecretHeader,
    Severity,
)
from downtime_operator.domain.prometheus import MAX_QUERIES, MetricQuery
from downtime_operator.domain.slo import DEFAULT_WINDOW, OBJECTIVE_PATTERN, WINDOW_PATTERN, SloSpec

StatusPattern = Annotated[str, StringConstraints(pattern=r"^([1-5]xx|[1-5][0-9]{2})$")]

PLAYBOOK_MAX_CHARS = 2000
"""``spec.playbook``'s limit (the CRD's ``maxLength``): a link or a few lines, not a runbook;
it is copied into every incident, its DowntimeIncident and each notification."""


class InvalidSpecError(ValueError):
    """The spec cannot be used; ``errors`` lists ``(field path, message)`` pairs."""

    reason = "InvalidSpec"
    """The Event reason and condition reason it is reported with."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"spec.{path}: {message}" for path, message in errors))


class UnresolvedHeadersError(InvalidSpecError):
    """A ``headersFrom`` Secret or key cannot be read: the check cannot be made as specified.

    Probing without the header would answer 401 and open an incident the service never had, so
    the monitor reports this instead, as it reports an invalid spec, until the Secret is there.
    """

    reason = "SecretUnavailable"


def _duration(value: str) -> timedelta:
    return parse_duration(value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class _Expect(_Model):
    status: list[StatusPattern] = Field(default_factory=lambda: ["2xx"], min_length=1)
    body_contains: str | None = Field(default=None, alias="bodyContains")
    max_latency: str | None = Field(default=None, alias="maxLatency")


class _Escalation(_Model):
    after: str
    severity: Severity


class _LogCapture(_Model):
    enabled: bool | None = None
    query: str | None = None
    before: str = "5m"
    after: str = "5m"
    max_lines: int = Field(default=10000, ge=1, le=10000, alias="maxLines")
    storage: LogStorage = LogStorage.AUTO


class _SecretKeyRef(_Model):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class _HeaderFrom(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    secret_key_ref: _SecretKeyRef = Field(alias="secretKeyRef")


class _ChannelRef(_Model):
    channel: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _channel_refs(value: object) -> object:
    """Monitors stored under the earlier CRD listed ``{name, type}`` entries, which sent
    nothing: ``name`` is read as the channel, and an entry naming none is dropped, so that an
    upgrade never turns a monitor invalid (and unchecked) over its notifications. The CRD
    refuses both forms for new writes."""
    if not isinstance(value, list):
        return value
    refs: list[object] = []
    for item in value:
        if not isinstance(item, dict) or "channel" in item:
            refs.append(item)
        elif item.get("name"):
            refs.append({"channel": item["name"]})
    return refs


class _TargetRef(_Model):
    kind: TargetKind
    name: str = Field(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class _Metric(_Model):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    query: str = Field(min_length=1, max_length=2000)


def _unique_names(value: list[_Metric]) -> list[_Metric]:
    # The report and the stored snapshot key each series by its query's name.
    names = [metric.name for metric in value]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
    return value


class _Slo(_Model):
    objective: str = Field(pattern=OBJECTIVE_PATTERN)
    window: str = Field(default=DEFAULT_WINDOW, pattern=WINDOW_PATTERN)

    def parsed(self) -> SloSpec:
        return SloSpec.parse(objective=self.objective, window=self.window)


class _Spec(_Model):
    url: str = Field(pattern=r"^https?://[^\s/$.?#][^\s]*$")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    headers_from: list[_HeaderFrom] = Field(default_factory=list, alias="headersFrom")
    body: str | None = None
    interval: str = "60s"
    timeout: str = "10s"
    retry_interval: str = Field(default="10s", alias="retryInterval")
    expect: _Expect = Field(default_factory=_Expect)
    failure_threshold: int = Field(default=3, ge=1, alias="failureThreshold")
    success_threshold: int = Field(default=1, ge=1, alias="successThreshold")
    severity: Severity = Severity.HIGH
    escalation: list[_Escalation] = Field(default_factory=list)
    environment: str = "production"
    paused: bool = False
    log_capture: _LogCapture = Field(default_factory=_LogCapture, alias="logCapture")
    notifications: Annotated[list[_ChannelRef], BeforeValidator(_channel_refs)] = Field(
        default_factory=list, max_length=32
    )
    target_ref: _TargetRef | None = Field(default=None, alias="targetRef")
    playbook: str | None = Field(default=None, min_length=1, max_length=PLAYBOOK_MAX_CHARS)
    slo: _Slo | None = None
    metrics: Annotated[list[_Metric], AfterValidator(_unique_names)] = Field(
        default_factory=list, max_length=MAX_QUERIES
    )

    @field_validator("interval", "timeout", "retry_interval")
    @classmethod
    def _durations(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _timing(self) -> _Spec:
        if parse_duration(self.interval) < timedelta(seconds=1):
            raise ValueError("interval must be at least 1s")
        if parse_duration(self.timeout) >= parse_duration(self.interval):
            raise ValueError("timeout must be shorter than interval")
        return self


def parse_monitor_spec(raw: Mapping[str, Any]) -> MonitorSpec:
    """Validate and default a HealthMonitor spec; raise InvalidSpecError naming each bad field."""
    try:
        spec = _Spec.model_validate(dict(raw))
        expect_latency = (
            parse_duration(spec.expect.max_latency) if spec.expect.max_latency else None
        )
        escalation = tuple(
            Escalation(after=parse_duration(rule.after), severity=rule.severity)
            for rule in spec.escalation
        )
        capture = LogCaptureSpec(
            enabled=spec.log_capture.enabled,
            query=spec.log_capture.query,
            before=parse_duration(spec.log_capture.before),
            after=parse_duration(spec.log_capture.after),
            max_lines=spec.log_capture.max_lines,
            storage=spec.log_capture.storage,
        )
    except ValidationError as exc:
        raise InvalidSpecError(
            [(_field_path(err["loc"]), err["msg"]) for err in exc.errors()]
        ) from exc
    except ValueError as exc:
        raise InvalidSpecError([("", str(exc))]) from exc
    return MonitorSpec(
        url=spec.url,
        method=spec.method,
        headers=tuple(sorted(spec.headers.items())),
        headers_from=tuple(
            SecretHeader(name=h.name, secret=h.secret_key_ref.name, key=h.secret_key_ref.key)
            for h in spec.headers_from
        ),
        body=spec.body,
        interval=parse_duration(spec.interval),
        timeout=parse_duration(spec.timeout),
        retry_interval=parse_duration(spec.retry_interval),
        expect=Expectation(
            status=tuple(spec.expect.status),
            body_contains=spec.expect.body_contains,
            max_latency=expect_latency,
        ),
        failure_threshold=spec.failure_threshold,
        success_threshold=spec.success_threshold,
        severity=spec.severity,
        escalation=escalation,
        environment=spec.environment,
        paused=spec.paused,
        log_capture=capture,
        notifications=tuple(dict.fromkeys(reference.channel for reference in spec.notifications)),
        target_ref=None
        if spec.target_ref is None
        else (spec.target_ref.kind, spec.target_ref.name),
        playbook=spec.playbook,
        slo=None if spec.slo is None else spec.slo.parsed(),
        metrics=tuple(MetricQuery(name=m.name, query=m.query) for m in spec.metrics),
    )


_ALIASES = {
    "retry_interval": "retryInterval",
    "failure_threshold": "failureThreshold",
    "success_threshold": "successThreshold",
    "log_capture": "logCapture",
    "body_contains": "bodyContains",
    "max_latency": "maxLatency",
    "max_lines": "maxLines",
    "headers_from": "headersFrom",
    "secret_key_ref": "secretKeyRef",
    "target_ref": "targetRef",
}


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            name = _ALIASES.get(item, item)
            parts.append(f".{name}" if parts else name)
    return "".join(parts)
