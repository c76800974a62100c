"""The settings, grouped by concern (as kopf groups its own); the commands compose the groups.

Each field has a one-line description (the README's tables and ``--help`` say the same) and its
sources, declared once, beside it.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from downtime_operator.domain.sharding import Shard
from downtime_operator.services.retention import DEFAULT_RETENTION_DAYS
from downtime_operator.settings.sources import SettingsError, Source

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


CommaSeparated = BeforeValidator(_comma_separated)


class Group(BaseModel):
    """Frozen, and a misspelt field (in a command's ``Defaults``) is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(Group):
    """Where incidents are recorded."""

    url: Annotated[
        SecretStr | None,
        Source(env=("DATABASE_URL", "SUPABASE_DB_URL"), flag="--database-url", metavar="DSN"),
    ] = Field(
        default=None,
        description="PostgreSQL DSN (`postgresql://...`); without it `monitor`, `cleanup` and"
        " `report` use the SQLite file",
    )
    db_path: Annotated[Path, Source(flag="--db-path", metavar="FILE")] = Field(
        default=Path("downtime.db"), description="the SQLite file when no DSN is given"
    )
    pool_size: Annotated[int, Source(env=("DATABASE_POOL_SIZE",))] = Field(
        default=10,
        ge=1,
        le=1000,
        description="PostgreSQL connections of the engine's pool: a mass outage writes its"
        " incidents side by side, up to this many at once",
    )

    @field_validator("url")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgres://", "postgresql://")
        ):
            raise ValueError("must be a postgresql:// DSN")
        return value

    @property
    def dsn(self) -> str:
        """The DSN, for the commands that only work with PostgreSQL (they refuse to load
        without one, so this raises only for settings built by hand)."""
        if self.url is None:
            raise SettingsError("DATABASE_URL: required (a postgresql:// DSN)")
        return self.url.get_secret_value()


class KubernetesSettings(Group):
    """The cluster the operator watches, and how its replicas share the work."""

    kubeconfig: Annotated[str | None, Source(env=("KUBECONFIG",))] = Field(
        default=None, description="kubeconfig when running outside a pod (else in-cluster)"
    )
    watch_namespaces: Annotated[
        tuple[str, ...], CommaSeparated, Source(env=("WATCH_NAMESPACES",))
    ] = Field(default=(), description="comma-separated namespaces to watch; none: all of them")
    status_sync_period: Annotated[timedelta, Source(env=("STATUS_SYNC_PERIOD_SECONDS",))] = Field(
        default=timedelta(seconds=60),
        description="how often (seconds) `status.lastCheck` may be refreshed when nothing else"
        " changed",
    )
    status_writes_per_second: Annotated[float, Source(env=("STATUS_WRITES_PER_SECOND",))] = Field(
        default=20.0,
        gt=0,
        allow_inf_nan=False,
        description="budget of HealthMonitor status writes per replica: state changes go at"
        " once, the periodic `lastCheck`/uptime refreshes are spread to fit",
    )
    check_worker: Annotated[bool, Source(env=("CHECK_WORKER",))] = Field(
        default=True,
        description="run the HTTP checks in a worker process (a second interpreter, so a"
        " second core): a mass outage's writes and a thousand checks a second no longer share"
        " one event loop; if the worker dies, checks run in the operator until it is back",
    )
    context_enabled: Annotated[bool, Source(env=("KUBERNETES_CONTEXT_ENABLED",))] = Field(
        default=True,
        description="record each incident's Kubernetes context at detection and resolution (the"
        " pods, rollouts, endpoints and Warning Events behind `spec.targetRef` or an in-cluster"
        " Service URL, with probable causes); needs get/list/watch on pods, replicasets,"
        " endpointslices and events",
    )
    peering_name: Annotated[str | None, Source(env=("PEERING_NAME",))] = Field(
        default=None, description="kopf peering object name, for several replicas"
    )
    peering_priority: Annotated[int | None, Source(env=("PEERING_PRIORITY",))] = Field(
        default=None,
        description="kopf peering priority; unset: random per process (replicas of equal"
        " priority would all pause)",
    )
    pod_id: Annotated[str | None, Source(env=("POD_ID",))] = Field(
        default=None,
        description="this replica's identity (the chart sets the pod's name): kopf's peering"
        " identity, and the owner of the notifications it is sending, which a restart under"
        " the same name takes back at once",
    )
    peering_lifetime: Annotated[int, Source(env=("PEERING_LIFETIME_SECONDS",))] = Field(
        default=60,
        ge=1,
        description="seconds a replica's keep-alive counts: a standby takes over at most this"
        " long after the active one died",
    )

    shard_count: Annotated[int, Source(env=("SHARD_COUNT",))] = Field(
        default=1,
        ge=1,
        le=1024,
        description="replicas the monitors are split between (the chart's `sharding.shards`);"
        " each checks the monitors whose UID hashes to its `SHARD_INDEX`",
    )
    shard_index: Annotated[int | None, Source(env=("SHARD_INDEX",))] = Field(
        default=None,
        ge=0,
        description="this replica's shard, 0 to `SHARD_COUNT`-1 (the chart sets the"
        " StatefulSet pod's index); required when `SHARD_COUNT` is above 1",
    )

    @model_validator(mode="after")
    def _shard_exists(self) -> Self:
        if self.shard_count > 1 and self.shard_index is None:
            raise ValueError("SHARD_INDEX: required when SHARD_COUNT is above 1")
        if self.shard_index is not None and self.shard_index >= self.shard_count:
            raise ValueError(
                f"SHARD_INDEX: {self.shard_index} is not below SHARD_COUNT ({self.shard_count})"
            )
        return self

    @property
    def shard(self) -> Shard | None:
        """This replica's share, or None when one replica checks every monitor."""
        if self.shard_count == 1:
            return None
        return Shard(index=self.shard_index or 0, count=self.shard_count)

    @field_validator("status_sync_period", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # The variable is a number of seconds; pydantic would read "60" as an ISO duration.
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            return timedelta(seconds=float(value))
        return value

    @field_validator("watch_namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Exact names only: kopf's namespace scanning (which would resolve patterns) is off, so
        # the operator needs no permission to list namespaces.
        for name in value:
            if not _NAMESPACE.match(name):
                raise ValueError(f"{name!r} is not a namespace name (patterns are not supported)")
        return value


class LokiSettings(Group):
    """Grafana Loki, where incidents' logs are captured from."""

    enabled: Annotated[bool, Source(env=("LOKI_ENABLED",))] = Field(
        default=False, description="capture each incident's logs from Grafana Loki"
    )
    query_url: Annotated[str | None, Source(env=("LOKI_QUERY_URL",))] = Field(
        default=None,
        validate_default=True,
        description="Loki base URL (`/loki/api/v1/query_range` is appended); required when enabled",
    )
    username: Annotated[str | None, Source(env=("GRAFANA_LOKI_USERNAME",))] = Field(
        default=None, description="basic auth user for Loki (Grafana Cloud)"
    )
    api_key: Annotated[SecretStr | None, Source(env=("GRAFANA_LOKI_API_KEY",))] = Field(
        default=None, description="basic auth password for Loki (Grafana Cloud)"
    )
    tenant_id: Annotated[str | None, Source(env=("LOKI_TENANT_ID",))] = Field(
        default=None, description="sent as `X-Scope-OrgID` for multi-tenant Loki"
    )

    @field_validator("query_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("enabled"):
                raise ValueError("required when LOKI_ENABLED is true")
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class PrometheusSettings(Group):
    """Prometheus (or a compatible service), whose series around each outage go into the
    incident's metrics snapshot for monitors that list ``spec.metrics``."""

    url: Annotated[str | None, Source(env=("PROMETHEUS_URL",))] = Field(
        default=None,
        description="Prometheus base URL, with a path prefix if it has one"
        " (`/api/v1/query_range` is appended); unset: no series are fetched",
    )
    username: Annotated[str | None, Source(env=("PROMETHEUS_USERNAME",))] = Field(
        default=None, description="basic auth user for Prometheus"
    )
    password: Annotated[SecretStr | None, Source(env=("PROMETHEUS_PASSWORD",))] = Field(
        default=None, description="basic auth password for Prometheus"
    )
    bearer_token: Annotated[SecretStr | None, Source(env=("PROMETHEUS_BEARER_TOKEN",))] = Field(
        default=None, description="sent as `Authorization: Bearer` (instead of basic auth)"
    )
    org_id: Annotated[str | None, Source(env=("PROMETHEUS_ORG_ID",))] = Field(
        default=None, description="sent as `X-Scope-OrgID` (Mimir, Cortex, Thanos tenants)"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_sign_in(self) -> Self:
        if self.username and self.bearer_token:
            raise ValueError(
                "PROMETHEUS_BEARER_TOKEN: cannot be combined with PROMETHEUS_USERNAME (basic auth)"
            )
        return self


class CaptureSettings(Group):
    """Where captured logs are kept."""

    log_files_dir: Annotated[Path, Source(env=("LOG_FILES_DIR",))] = Field(
        default=Path("logs/downtime"),
        description="where captures above 1000 lines (or `storage: file`) are written as JSON;"
        " retention removes `.json` files of this directory only",
    )


class MonitorCaptureSettings(CaptureSettings):
    """The standalone monitor's capture window (the operator reads it from each HealthMonitor)."""

    enabled: Annotated[bool, Source(flag="--no-log-capture", switch=False)] = Field(
        default=True,
        description="capture incidents' logs when LOKI_ENABLED is true; the flag turns it off",
    )
    query: Annotated[
        str | None, Source(env=("LOKI_QUERY",), flag="--loki-query", metavar="LOGQL")
    ] = Field(
        default=None,
        description='LogQL selector of the application\'s logs, e.g. {app="api"}; required'
        " when LOKI_ENABLED is true",
    )
    before: Annotated[float, Source(flag="--capture-before", metavar="SECONDS")] = Field(
        default=300.0,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="seconds of logs captured before the outage began",
    )
    after: Annotated[float, Source(flag="--capture-after", metavar="SECONDS")] = Field(
        default=300.0,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="seconds of logs captured after it ended",
    )


class RetentionSettings(Group):
    """How long resolved incidents are kept."""

    days: Annotated[int, Source(env=("RETENTION_DAYS",), flag="--days", metavar="N")] = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        description="resolved incidents older than this many days are deleted, with their"
        " DowntimeIncidents and log files",
    )
    keep_critical: Annotated[bool, Source(flag="--keep-critical", switch=True)] = Field(
        default=False, description="keep critical incidents however old"
    )


class ProbeSettings(Group):
    """The one endpoint the standalone monitor checks, and its thresholds."""

    url: Annotated[str, Source(env=("GATEWAYZ_URL",), flag="--url", metavar="URL")] = Field(
        default="https://api.gatewayz.ai",
        validate_default=True,
        description="URL to check; `/health` is appended when it has no path",
    )
    interval: Annotated[
        float, Source(env=("HEALTH_CHECK_INTERVAL",), flag="--interval", metavar="SECONDS")
    ] = Field(
        default=60.0,
        ge=1,
        allow_inf_nan=False,
        description="seconds between checks (at least 1); after a failure, re-checks every"
        " 10 s at most",
    )
    timeout: Annotated[
        float, Source(env=("HEALTH_CHECK_TIMEOUT",), flag="--timeout", metavar="SECONDS")
    ] = Field(
        default=10.0,
        ge=0.001,
        allow_inf_nan=False,
        description="HTTP timeout in seconds, shorter than the interval",
    )
    failure_threshold: Annotated[int, Source(flag="--failure-threshold", metavar="N")] = Field(
        default=3, ge=1, description="consecutive failures that open an incident"
    )
    success_threshold: Annotated[int, Source(flag="--success-threshold", metavar="N")] = Field(
        default=1, ge=1, description="consecutive successes that resolve it"
    )

    @field_validator("url")
    @classmethod
    def _health_url(cls, value: str) -> str:
        """An http(s) URL; the seed's base URL gets ``/health`` when it has no path."""
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        _ = parts.port  # raises ValueError for a port that is not a number
        if parts.path in ("", "/"):
            parts = parts._replace(path="/health")
        return urlunsplit(parts)


class LoggingSettings(Group):
    """What the process logs, and how."""

    level: Annotated[str, Source(env=("LOG_LEVEL",))] = Field(
        default="INFO", description="log level (DEBUG, INFO, WARNING, ERROR)"
    )
    as_json: Annotated[bool, Source(env=("LOG_JSON",))] = Field(
        default=False,
        description="one JSON object per line (time, level, logger, message, exception)"
        " instead of text",
    )
    verbose: Annotated[bool, Source(flag="--verbose", short="-v", switch=True)] = Field(
        default=False, description="DEBUG logging (the monitor logs every check)"
    )

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}")
        return value.upper()


class MetricsSettings(Group):
    """The Prometheus metrics and probe server of the operator."""

    port: Annotated[int | None, Source(env=("METRICS_PORT",))] = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve `/metrics`, `/healthz`, `/readyz` on this port; unset: not served",
    )
    host: Annotated[str, Source(env=("METRICS_HOST",))] = Field(
        default="0.0.0.0", description="address the metrics server listens on"
    )
