"""NotificationChannel ``spec`` (as stored by Kubernetes) -> ChannelSpec, validated field by field.

Layout: ``spec.type`` names the transport and exactly the sub-object of that name is set
(``spec.slack``, ``spec.pagerduty``, ``spec.email`` or ``spec.webhook``); the common fields
(``events``, ``minSeverity``, ``reminderEvery``, ``groupWindow``, ``rate``) sit beside them.

The API server's schema refuses bad input at apply time; this is the second line, for what a
schema cannot say and for clusters whose CRD was edited, and the one parser the standalone mode
uses for channels built from the environment. Errors name the field path (``InvalidSpecError``,
as for HealthMonitors), so a bad channel is reported on its status instead of crashing anything.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from downtime_operator.domain.durations import parse_duration
from downtime_operator.domain.models import Severity
from downtime_operator.domain.spec import InvalidSpecError

MIN_REMINDER_EVERY = timedelta(minutes=5)
MAX_GROUP_WINDOW = timedelta(hours=1)
MAX_RECIPIENTS = 50
MAX_RATE = 10_000
"""Messages a second a channel may be paced at: above what one channel's worker, sending one
message at a time, can reach (about 3,000/s, ``bench/README.md``), so the pacer never is what
limits a channel that asks for the most; a bound all the same, against a typo's 1e9."""

# Shared with crds/notificationchannels.yaml (RE2 there): keep the two in step.
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
_ADDRESS = (
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
)
ADDRESS_PATTERN = f"^{_ADDRESS}$"
SENDER_PATTERN = f"^({_ADDRESS}|[^<>\\r\\n]*<{_ADDRESS}>)$"
"""A bare address or ``Display Name <address>`` (no line breaks: it becomes a header)."""
HOST_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$"
WEBHOOK_URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"


class ChannelType(enum.StrEnum):
    SLACK = "slack"
    PAGERDUTY = "pagerduty"
    EMAIL = "email"
    WEBHOOK = "webhook"


class NotificationEvent(enum.StrEnum):
    OPENED = "opened"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    LOGS_CAPTURED = "logsCaptured"
    REMINDER = "reminder"
    TEST = "test"
    """A person's ``POST /admin/downtime/notifications/test``: always sent, never subscribed to."""
    BUDGET_BURN = "budgetBurn"
    """A burn-rate rule of a monitor's ``spec.slo`` started firing: sent to every channel the
    monitor lists (listing it is the subscription), whatever the channel's events."""


SUBSCRIBABLE_EVENTS = frozenset(NotificationEvent) - {
    NotificationEvent.TEST,
    NotificationEvent.BUDGET_BURN,
}
DEFAULT_EVENTS = frozenset(
    {NotificationEvent.OPENED, NotificationEvent.ESCALATED, NotificationEvent.RESOLVED}
)


class SmtpTls(enum.StrEnum):
    STARTTLS = "starttls"
    IMPLICIT = "implicit"
    NONE = "none"


PagerDutySeverity = Literal["critical", "error", "warning", "info"]
"""The Events API v2 ``payload.severity`` values."""


def _go_duration(value: object) -> object:
    """CRD durations are Go-style strings; anything else is left to pydantic to refuse."""
    return parse_duration(value) if isinstance(value, str) else value


GoDuration = Annotated[timedelta, BeforeValidator(_go_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class SecretKeyRef(_Model):
    """One key of a Secret in the channel's namespace: where every credential comes from."""

    name: str = Field(min_length=1, max_length=253, pattern=SECRET_NAME_PATTERN)
    key: str = Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)


class SlackSettings(_Model):
    webhook_url_from: SecretKeyRef = Field(alias="webhookUrlFrom")
    """The incoming-webhook URL is itself the credential, hence a Secret."""


class SeverityMap(_Model):
    """Our severity -> PagerDuty's; the defaults page for high and critical only."""

    low: PagerDutySeverity = "info"
    medium: PagerDutySeverity = "warning"
    high: PagerDutySeverity = "error"
    critical: PagerDutySeverity = "critical"

    def of(self, severity: Severity) -> PagerDutySeverity:
        mapped: PagerDutySeverity = getattr(self, severity.value)
        return mapped


class PagerDutySettings(_Model):
    routing_key_from: SecretKeyRef = Field(alias="routingKeyFrom")
    severity_map: SeverityMap = Field(default_factory=SeverityMap, alias="severityMap")


class ResendSettings(_Model):
    api_key_from: SecretKeyRef = Field(alias="apiKeyFrom")


class SmtpSettings(_Model):
    host: str = Field(min_length=1, max_length=253, pattern=HOST_PATTERN)
    port: int = Field(default=587, ge=1, le=65535)
    tls: SmtpTls = SmtpTls.STARTTLS
    username_from: SecretKeyRef | None = Field(default=None, alias="usernameFrom")
    password_from: SecretKeyRef | None = Field(default=None, alias="passwordFrom")

    @model_validator(mode="after")
    def _credentials(self) -> SmtpSettings:
        if (self.username_from is None) != (self.password_from is None):
            raise _FieldError("usernameFrom", "usernameFrom and passwordFrom go together")
        return self


class EmailSettings(_Model):
    sender: str = Field(alias="from", max_length=320, pattern=SENDER_PATTERN)
    to: tuple[
        Annotated[str, Field(max_length=254, pattern=ADDRESS_PATTERN)],
        ...,
    ] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    resend: ResendSettings | None = None
    smtp: SmtpSettings | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> EmailSettings:
        if (self.resend is None) == (self.smtp is None):
            raise _FieldError("resend", "exactly one of email.resend and email.smtp must be set")
        return self


class WebhookSettings(_Model):
    url: str = Field(max_length=2048, pattern=WEBHOOK_URL_PATTERN)
    secret_from: SecretKeyRef = Field(alias="secretFrom")
    """A Standard Webhooks ``whsec_...`` signing secret."""


class ChannelSpec(_Model):
    type: ChannelType
    slack: SlackSettings | None = None
    pagerduty: PagerDutySettings | None = None
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None
    events: frozenset[NotificationEvent] = Field(default=DEFAULT_EVENTS, min_length=1)
    min_severity: Severity = Field(default=Severity.LOW, alias="minSeverity")
    reminder_every: GoDuration | None = Field(default=None, alias="reminderEvery")
    """Repeat a reminder this often while the incident is ongoing; None: no reminders."""
    group_window: GoDuration = Field(default=timedelta(seconds=30), alias="groupWindow")
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE)
    """Messages per second, overriding the transport's default pacing (``delivery``)."""

    @field_validator("events")
    @classmethod
    def _subscribable(cls, events: frozenset[NotificationEvent]) -> frozenset[NotificationEvent]:
        if NotificationEvent.TEST in events:
            raise ValueError("'test' is not an event to subscribe to")
        return events

    @field_validator("reminder_every")
    @classmethod
    def _reminder_floor(cls, every: timedelta | None) -> timedelta | None:
        if every is not None and every < MIN_REMINDER_EVERY:
            raise ValueError("reminderEvery must be at least 5m")
        return every

    @field_validator("group_window")
    @classmethod
    def _window_ceiling(cls, window: timedelta) -> timedelta:
        if window > MAX_GROUP_WINDOW:
            raise ValueError("groupWindow must be at most 1h")
        return window

    @model_validator(mode="after")
    def _coherent(self) -> ChannelSpec:
        for kind in ChannelType:
            present = getattr(self, kind.value) is not None
            if present != (kind is self.type):
                rule = "required" if present is False else "not allowed"
                raise _FieldError(kind.value, f"{rule} when type is {self.type.value}")
        if (NotificationEvent.REMINDER in self.events) != (self.reminder_every is not None):
            raise _FieldError(
                "reminderEvery", "reminderEvery must be set exactly when events include reminder"
            )
        return self


class _FieldError(ValueError):
    """A rule across fields, raised from a model validator, that still names its field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


def parse_channel_spec(raw: Mapping[str, Any]) -> ChannelSpec:
    """Validate and default a NotificationChannel spec; raise InvalidSpecError naming each field."""
    try:
        return ChannelSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise InvalidSpecError([_error(err) for err in exc.errors()]) from exc


_PATTERN_NAMES = {
    SECRET_NAME_PATTERN: "a Secret name (lowercase DNS subdomain)",
    SECRET_KEY_PATTERN: "a Secret key (letters, digits, '-', '_', '.')",
    ADDRESS_PATTERN: "an email address",
    SENDER_PATTERN: "an email address or 'Name <address>'",
    HOST_PATTERN: "a host name or [IP address]",
    WEBHOOK_URL_PATTERN: "an http or https URL",
}


def _error(err: Mapping[str, Any]) -> tuple[str, str]:
    path = _field_path(err["loc"])
    ctx = err.get("ctx", {})
    cause = ctx.get("error")
    if isinstance(cause, _FieldError):
        return (f"{path}.{cause.path}" if path else cause.path, str(cause))
    if isinstance(cause, ValueError):
        return (path, str(cause))
    if ctx.get("pattern") in _PATTERN_NAMES:
        return (path, f"{err['input']!r} is not {_PATTERN_NAMES[ctx['pattern']]}")
    return (path, str(err["msg"]))


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}" if parts else item)
    return "".join(parts)


def secret_refs(spec: ChannelSpec) -> tuple[SecretKeyRef, ...]:
    """Every Secret key the channel needs, to read them all before a send (or report the
    first one missing on the channel's status)."""
    refs: list[SecretKeyRef | None] = []
    if spec.slack is not None:
        refs.append(spec.slack.webhook_url_from)
    if spec.pagerduty is not None:
        refs.append(spec.pagerduty.routing_key_from)
    if spec.webhook is not None:
        refs.append(spec.webhook.secret_from)
    if spec.email is not None:
        if spec.email.resend is not None:
            refs.append(spec.email.resend.api_key_from)
        if spec.email.smtp is not None:
            refs += [spec.email.smtp.username_from, spec.email.smtp.password_from]
    return tuple(ref for ref in refs if ref is not None)
