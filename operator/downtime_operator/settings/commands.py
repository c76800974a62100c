"""Each command's settings: the groups it uses, and the checks that span groups."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, model_validator

from downtime_operator.domain.spec import InvalidSpecError, parse_monitor_spec
from downtime_operator.settings.admin_api import ApiSettings
from downtime_operator.settings.groups import (
    CaptureSettings,
    DatabaseSettings,
    KubernetesSettings,
    LoggingSettings,
    LokiSettings,
    MetricsSettings,
    MonitorCaptureSettings,
    ProbeSettings,
    PrometheusSettings,
    RetentionSettings,
)
from downtime_operator.settings.log_encryption import LogEncryptionSettings
from downtime_operator.settings.notify import ChannelEnvSettings, NotifySettings
from downtime_operator.settings.slo import MonitorSloSettings, SloSettings
from downtime_operator.settings.sources import Defaults, Source, named


class CommandSettings(BaseModel):
    """What every command has: how it logs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    logging: LoggingSettings


class OperatorSettings(CommandSettings):
    """``run``, ``api`` and ``migrate``: environment variables only (the chart sets them)."""

    database: DatabaseSettings
    kubernetes: KubernetesSettings
    loki: LokiSettings
    prometheus: PrometheusSettings
    capture: CaptureSettings
    encryption: LogEncryptionSettings
    api: ApiSettings
    # The operator's daily retention never removes critical incidents.
    retention: Annotated[RetentionSettings, Defaults({"keep_critical": True})]
    metrics: MetricsSettings
    notify: NotifySettings
    slo: SloSettings

    @model_validator(mode="after")
    def _needs_postgres(self) -> Self:
        if self.database.url is None:
            raise ValueError("DATABASE_URL: required (a postgresql:// DSN)")
        return self


class StoreSettings(CommandSettings):
    """What ``monitor``, ``cleanup``, ``report`` and ``rotate-keys`` share: incidents in
    PostgreSQL or an SQLite file, their captured data sealed under the log encryption keys."""

    database: DatabaseSettings
    encryption: LogEncryptionSettings


class MonitorSettings(StoreSettings):
    """``monitor``: the seed's standalone tool, for one URL."""

    probe: ProbeSettings
    loki: LokiSettings
    capture: MonitorCaptureSettings
    # Loopback unless asked: a laptop's monitor should not serve its API to the network.
    api: Annotated[ApiSettings, Defaults({"host": "127.0.0.1"})]
    notifications: Annotated[bool, Source(flag="--enable-notifications", switch=True)] = Field(
        default=False,
        description="send notifications through the channels set in the environment"
        " (`RESEND_API_KEY`, `SMTP_URL`, `SLACK_WEBHOOK_URL`, `PAGERDUTY_ROUTING_KEY`,"
        " `WEBHOOK_URL`)",
    )
    notify: NotifySettings
    channels: ChannelEnvSettings
    slo: MonitorSloSettings

    @property
    def capture_enabled(self) -> bool:
        return self.loki.enabled and self.capture.enabled

    @property
    def serves_api(self) -> bool:
        """API_ENABLED when set, else whether a port was given (``--api-port`` or API_PORT)."""
        if self.api.enabled is not None:
            return self.api.enabled
        return "port" in self.api.model_fields_set

    def spec(self) -> dict[str, Any]:
        """The HealthMonitor spec this monitor runs, as the operator would read it."""
        capture: dict[str, Any] = {
            "enabled": self.capture_enabled,
            "before": _milliseconds(self.capture.before),
            "after": _milliseconds(self.capture.after),
        }
        if self.capture.query:
            capture["query"] = self.capture.query
        spec: dict[str, Any] = {
            "url": self.probe.url,
            "interval": _milliseconds(self.probe.interval),
            "timeout": _milliseconds(self.probe.timeout),
            "failureThreshold": self.probe.failure_threshold,
            "successThreshold": self.probe.success_threshold,
            "logCapture": capture,
        }
        slo = self.slo.spec()
        if slo is not None:
            spec["slo"] = slo
        return spec

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Self:
        def name(path: str) -> str:
            return named(info, type(self), path)

        probe = self.probe
        # Compared as the whole milliseconds the spec will carry.
        if round(probe.timeout * 1000) >= round(probe.interval * 1000):
            raise ValueError(
                f"{name('probe.timeout')} ({probe.timeout:g}s) must be shorter than"
                f" {name('probe.interval')} ({probe.interval:g}s)"
            )
        if self.capture_enabled and not self.capture.query:
            # Without a selector every incident would record "query is not set": say so now.
            raise ValueError(
                f"{name('capture.query')}: required when LOKI_ENABLED is true (a LogQL selector"
                ' such as {app="api"}), or pass --no-log-capture'
            )
        if self.serves_api and not self.api.keys:
            asked = "api.port" if "port" in self.api.model_fields_set else "api.enabled"
            raise ValueError(
                f"{name(asked)}: ADMIN_API_KEYS or ADMIN_API_KEYS_FILE must name at least one key"
            )
        if self.notifications:
            missing = self.channels.missing()
            if missing:
                raise ValueError(f"--enable-notifications: {', '.join(missing)} required")
            if not self.channels.any:
                raise ValueError(
                    "--enable-notifications: no channel is set; set RESEND_API_KEY or SMTP_URL"
                    " (with NOTIFICATION_EMAIL_FROM and NOTIFICATION_EMAIL_TO),"
                    " SLACK_WEBHOOK_URL, PAGERDUTY_ROUTING_KEY, or WEBHOOK_URL and WEBHOOK_SECRET"
                )
        try:
            parse_monitor_spec(self.spec())
        except InvalidSpecError as exc:  # a rule of the CRD that the checks above missed
            raise ValueError(str(exc)) from exc
        return self


class CleanupSettings(StoreSettings):
    """``cleanup``: one retention run over the store."""

    retention: RetentionSettings
    capture: CaptureSettings


class RotateKeysSettings(StoreSettings):
    """``rotate-keys``: every sealed value and captured-log file re-sealed under the active key."""

    capture: CaptureSettings
    dry_run: Annotated[bool, Source(flag="--dry-run", switch=True)] = Field(
        default=False,
        description="change nothing: print how many rows hold data under each key id"
        " (`plain`: stored without a key)",
    )
    batch_size: Annotated[int, Source(flag="--batch-size", metavar="ROWS")] = Field(
        default=200, ge=1, le=10000, description="rows read and re-sealed per batch"
    )


class ReportSettings(StoreSettings):
    """``report``: one incident's post-mortem report, from the store."""

    incident_id: Annotated[UUID, Source(argument="INCIDENT_ID")] = Field(
        description="the incident's id (its `incidentId`)"
    )


class MaintenanceSettings(CommandSettings):
    """``maintenance start``: an ad-hoc window through the admin API of a running operator or
    standalone monitor (``POST /admin/downtime/maintenance``)."""

    action: Annotated[Literal["start"], Source(argument="ACTION")] = Field(
        description="`start`: put the monitors in maintenance from now"
    )
    monitors: Annotated[
        tuple[str, ...], Source(flag="--monitor", metavar="NAME", repeatable=True)
    ] = Field(min_length=1, description="a monitor's name (repeatable)")
    namespace: Annotated[str, Source(flag="--namespace", short="-n", metavar="NS")] = Field(
        default="default", description="the monitors' namespace"
    )
    duration: Annotated[str, Source(flag="--for", metavar="DURATION")] = Field(
        description="how long, whole minutes or hours: 30m, 2h, 1h30m"
    )
    reason: Annotated[str, Source(flag="--reason", metavar="TEXT")] = Field(
        min_length=1, description="why, recorded with the window and in the audit log"
    )
    api_url: Annotated[str, Source(env=("DOWNTIME_API_URL",), flag="--api-url", metavar="URL")] = (
        Field(default="http://127.0.0.1:8080", description="the admin API's base URL")
    )
    api_key: Annotated[SecretStr, Source(env=("ADMIN_API_KEY",))] = Field(
        description="one of the admin API's keys"
    )


def _milliseconds(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"
