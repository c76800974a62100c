"""The ``monitor`` and ``cleanup`` commands: the seed's standalone tool on the operator's engine.

One URL, no Kubernetes and, by default, no database server: incidents go to an embedded SQLite
file unless a PostgreSQL DSN is given. The seed's flags and environment variables keep their
meaning; flags override the environment; an invalid value stops the command with exit status 2
and a message naming the flag or variable it came from, before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.adapters.kube.resources import KubeResources, load_api_client
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.loki import loki_client_for
from downtime_operator.adapters.null_resources import LoggingResources
from downtime_operator.adapters.postgres import PostgresIncidentStore, apply_migrations
from downtime_operator.adapters.postgres.audit import PostgresAuditLog
from downtime_operator.adapters.postgres.log_captures import PostgresLogCaptures
from downtime_operator.adapters.postgres.queries import PostgresIncidentQueries, connect_pool
from downtime_operator.adapters.sqlite import (
    SqliteAuditLog,
    SqliteIncidentQueries,
    SqliteIncidentStore,
    SqliteLogCaptures,
)
from downtime_operator.admin_server import AdminQueries, serve_admin_api
from downtime_operator.api.server import ListenError
from downtime_operator.domain.models import CheckResult, Incident, IncidentStatus, MonitorRef
from downtime_operator.domain.spec import InvalidSpecError, parse_monitor_spec
from downtime_operator.services.admin_ports import AuditLog
from downtime_operator.services.engine import MonitorEngine
from downtime_operator.services.log_capture import LogCaptureDeps, LogCaptureService
from downtime_operator.services.monitor_runner import MonitorRunner, RunnerDeps, SpecSnapshot
from downtime_operator.services.ports import (
    IncidentResources,
    LogCaptureStore,
    OpenIncidentExistsError,
)
from downtime_operator.services.retention import DEFAULT_RETENTION_DAYS, RetentionService
from downtime_operator.services.retry_queue import OrderedRetryQueue
from downtime_operator.services.stop import EventStopSignal
from downtime_operator.settings import ApiSettings, SettingsError, load_api_settings

logger = logging.getLogger("downtime_operator.monitor")

EXIT_USAGE = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STANDALONE_NAMESPACE = "standalone"
"""``monitor_namespace`` of standalone incidents; the name is derived from the URL."""

Store = PostgresIncidentStore | SqliteIncidentStore
Closer = Callable[[], Awaitable[None]]
Model = TypeVar("Model", bound=BaseModel)


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where a setting may come from: a flag (wins) and environment variables (first set wins)."""

    flag: str | None = None
    env: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.flag or self.env[0]


class StoreSettings(BaseModel):
    """What both commands share: where incidents are, and how much to log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: SecretStr | None = None
    db_path: Path = Path("downtime.db")
    log_level: str = "INFO"
    log_files_dir: Path = Path("logs/downtime")
    """Captured-log files: written there by ``monitor``, removed only from there by ``cleanup``."""

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgres://", "postgresql://")
        ):
            raise ValueError("must be a postgresql:// DSN")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}")
        return value.upper()


_STORE_SOURCES = {
    "database_url": _Source("--database-url", ("DATABASE_URL", "SUPABASE_DB_URL")),
    "db_path": _Source("--db-path"),
    "log_level": _Source(env=("LOG_LEVEL",)),
    "log_files_dir": _Source(env=("LOG_FILES_DIR",)),
}
_SECRETS = frozenset({"database_url", "loki_api_key"})
"""Never echoed back in an error message."""


class MonitorSettings(StoreSettings):
    url: str = Field(default="https://api.gatewayz.ai", validate_default=True)
    interval: float = Field(default=60.0, ge=1, allow_inf_nan=False)
    timeout: float = Field(default=10.0, ge=0.001, allow_inf_nan=False)
    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    log_capture: bool = True
    notifications: bool = False
    verbose: bool = False
    loki_enabled: bool = False
    loki_query_url: str | None = None
    loki_username: str | None = None
    loki_api_key: SecretStr | None = None
    loki_tenant_id: str | None = None
    loki_query: str | None = None
    capture_before: float = Field(default=300.0, ge=0, le=86400, allow_inf_nan=False)
    capture_after: float = Field(default=300.0, ge=0, le=86400, allow_inf_nan=False)
    api_port: int | None = Field(default=None, ge=0, le=65535)
    api_host: str = "127.0.0.1"
    """Loopback unless asked: a laptop's monitor should not serve its API to the network."""

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

    @property
    def capture_enabled(self) -> bool:
        return self.loki_enabled and self.log_capture

    def spec(self) -> dict[str, Any]:
        """The HealthMonitor spec this monitor runs, as the operator would read it."""
        capture: dict[str, Any] = {
            "enabled": self.capture_enabled,
            "before": _milliseconds(self.capture_before),
            "after": _milliseconds(self.capture_after),
        }
        if self.loki_query:
            capture["query"] = self.loki_query
        return {
            "url": self.url,
            "interval": _milliseconds(self.interval),
            "timeout": _milliseconds(self.timeout),
            "failureThreshold": self.failure_threshold,
            "successThreshold": self.success_threshold,
            "logCapture": capture,
        }


_MONITOR_SOURCES = {
    **_STORE_SOURCES,
    "url": _Source("--url", ("GATEWAYZ_URL",)),
    "interval": _Source("--interval", ("HEALTH_CHECK_INTERVAL",)),
    "timeout": _Source("--timeout", ("HEALTH_CHECK_TIMEOUT",)),
    "failure_threshold": _Source("--failure-threshold"),
    "success_threshold": _Source("--success-threshold"),
    "loki_enabled": _Source(env=("LOKI_ENABLED",)),
    "loki_query_url": _Source(env=("LOKI_QUERY_URL",)),
    "loki_username": _Source(env=("GRAFANA_LOKI_USERNAME",)),
    "loki_api_key": _Source(env=("GRAFANA_LOKI_API_KEY",)),
    "loki_tenant_id": _Source(env=("LOKI_TENANT_ID",)),
    "loki_query": _Source("--loki-query", ("LOKI_QUERY",)),
    "capture_before": _Source("--capture-before"),
    "capture_after": _Source("--capture-after"),
    "api_port": _Source("--api-port"),
    "api_host": _Source("--api-host", ("API_HOST",)),
}


class CleanupSettings(StoreSettings):
    days: int = Field(default=DEFAULT_RETENTION_DAYS, ge=1)
    keep_critical: bool = False


_CLEANUP_SOURCES = {**_STORE_SOURCES, "days": _Source("--days", ("RETENTION_DAYS",))}


def _milliseconds(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _flag_dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _load(
    model: type[Model],
    *,
    sources: Mapping[str, _Source],
    args: argparse.Namespace,
    env: Mapping[str, str],
    switches: Mapping[str, bool],
) -> tuple[Model, dict[str, str]]:
    """Validate flags over env; return the settings and which name each value came from."""
    raw: dict[str, Any] = dict(switches)
    origin: dict[str, str] = {}
    for field, source in sources.items():
        for variable in source.env:
            if env.get(variable):  # set but empty counts as unset, as for the operator
                raw[field], origin[field] = env[variable], variable
                break
        if source.flag is not None:
            value = getattr(args, _flag_dest(source.flag), None)
            if value is not None:
                raw[field], origin[field] = value, source.flag
    try:
        return model.model_validate(raw), origin
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = (origin.get(field) or sources[field].name) if field in sources else field
            message = error["msg"].removeprefix("Value error, ")  # ours quote the value
            if field not in _SECRETS and error["type"] != "value_error":
                message += f" (got {error['input']!r})"
            messages.append(f"{name}: {message}")
        raise SettingsError("; ".join(messages)) from exc


def load_monitor_settings(args: argparse.Namespace, *, env: Mapping[str, str]) -> MonitorSettings:
    """The ``monitor`` command's settings; raises SettingsError naming the flag or variable."""
    settings, origin = _load(
        MonitorSettings,
        sources=_MONITOR_SOURCES,
        args=args,
        env=env,
        switches={
            "log_capture": not args.no_log_capture,
            "notifications": args.enable_notifications,
            "verbose": args.verbose,
        },
    )

    def name(field: str) -> str:
        return origin.get(field) or _MONITOR_SOURCES[field].name

    # Compared as the whole milliseconds the spec will carry.
    if round(settings.timeout * 1000) >= round(settings.interval * 1000):
        raise SettingsError(
            f"{name('timeout')} ({settings.timeout:g}s) must be shorter than"
            f" {name('interval')} ({settings.interval:g}s)"
        )
    if settings.loki_enabled and not settings.loki_query_url:
        raise SettingsError("LOKI_QUERY_URL: required when LOKI_ENABLED is true")
    if settings.capture_enabled and not settings.loki_query:
        # Without a selector every incident would record "query is not set": say so now.
        raise SettingsError(
            f"{name('loki_query')}: required when LOKI_ENABLED is true (a LogQL selector such as"
            ' {app="api"}), or pass --no-log-capture'
        )
    try:
        parse_monitor_spec(settings.spec())
    except InvalidSpecError as exc:  # a rule of the CRD that the checks above missed
        raise SettingsError(str(exc)) from exc
    return settings


def load_cleanup_settings(args: argparse.Namespace, *, env: Mapping[str, str]) -> CleanupSettings:
    settings, _ = _load(
        CleanupSettings,
        sources=_CLEANUP_SOURCES,
        args=args,
        env=env,
        switches={"keep_critical": args.keep_critical},
    )
    return settings


def monitor_ref_for(url: str) -> MonitorRef:
    """A stable name from the URL (host, port, path), so a restart finds its open incident."""
    parts = urlsplit(url)
    raw = f"{parts.hostname}-{parts.port or ''}-{parts.path}".lower()
    return MonitorRef(
        namespace=STANDALONE_NAMESPACE, name=re.sub(r"[^a-z0-9.]+", "-", raw).strip("-")
    )


# -- command line --------------------------------------------------------------------------------


def add_standalone_commands(commands: Any) -> None:
    """Register ``monitor`` and ``cleanup`` on the CLI's sub-parsers (``argparse`` action)."""
    monitor = commands.add_parser(
        "monitor",
        help="watch one URL without Kubernetes (incidents in SQLite or PostgreSQL)",
        description="Watch one health endpoint; flags override the environment variables.",
    )
    monitor.add_argument(
        "--url", metavar="URL", help="base URL to monitor (env GATEWAYZ_URL; /health added)"
    )
    monitor.add_argument(
        "--interval", metavar="SECONDS", help="seconds between checks (env HEALTH_CHECK_INTERVAL)"
    )
    monitor.add_argument(
        "--timeout", metavar="SECONDS", help="HTTP timeout in seconds (env HEALTH_CHECK_TIMEOUT)"
    )
    monitor.add_argument(
        "--no-log-capture", action="store_true", help="disable automatic log capture"
    )
    monitor.add_argument(
        "--enable-notifications",
        action="store_true",
        help="accepted for the seed's scripts; no notification channel exists yet (warns)",
    )
    monitor.add_argument("--verbose", "-v", action="store_true", help="DEBUG logging")
    monitor.add_argument(
        "--failure-threshold", metavar="N", help="failed checks that open an incident (3)"
    )
    monitor.add_argument("--success-threshold", metavar="N", help="good checks that resolve it (1)")
    monitor.add_argument(
        "--loki-query", metavar="LOGQL", help='LogQL selector of the logs, e.g. {app="api"}'
    )
    monitor.add_argument(
        "--capture-before", metavar="SECONDS", help="logs captured before an outage (300)"
    )
    monitor.add_argument(
        "--capture-after", metavar="SECONDS", help="logs captured after an outage (300)"
    )
    monitor.add_argument(
        "--api-port",
        metavar="PORT",
        help="serve the admin API on this port (keys from ADMIN_API_KEYS or ADMIN_API_KEYS_FILE)",
    )
    monitor.add_argument(
        "--api-host", metavar="HOST", help="address of the admin API (env API_HOST; 127.0.0.1)"
    )
    _add_store_arguments(monitor)
    monitor.set_defaults(standalone=monitor_command)

    cleanup = commands.add_parser(
        "cleanup",
        help="delete resolved incidents older than N days, with their CRs and log files",
    )
    cleanup.add_argument("--days", metavar="N", help="age in days (env RETENTION_DAYS, default 90)")
    cleanup.add_argument(
        "--keep-critical", action="store_true", help="keep critical incidents however old"
    )
    _add_store_arguments(cleanup)
    cleanup.set_defaults(standalone=cleanup_command)


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", metavar="DSN", help="PostgreSQL DSN (env DATABASE_URL or SUPABASE_DB_URL)"
    )
    parser.add_argument(
        "--db-path", metavar="FILE", help="SQLite file when no DSN is given (default ./downtime.db)"
    )


def _usage_error(command: str, exc: Exception) -> int:
    print(f"downtime-operator {command}: {exc}", file=sys.stderr)
    return EXIT_USAGE


def load_standalone_api(settings: MonitorSettings, *, env: Mapping[str, str]) -> ApiSettings | None:
    """The admin API's settings when ``--api-port`` is given: keys and limits as for the
    operator (ADMIN_API_KEYS, ADMIN_API_KEYS_FILE, API_*), address and port from the flags."""
    if settings.api_port is None:
        return None
    api = load_api_settings(env).model_copy(
        update={"host": settings.api_host, "port": settings.api_port}
    )
    if not api.keys:
        raise SettingsError(
            "--api-port: ADMIN_API_KEYS or ADMIN_API_KEYS_FILE must name at least one key"
        )
    return api


def monitor_command(args: argparse.Namespace, *, env: Mapping[str, str]) -> int:
    try:
        settings = load_monitor_settings(args, env=env)
        api = load_standalone_api(settings, env=env)
    except SettingsError as exc:
        return _usage_error("monitor", exc)
    level = "DEBUG" if settings.verbose else settings.log_level
    logging.basicConfig(level=level, format=LOG_FORMAT)
    try:
        return asyncio.run(run_monitor(settings, api=api))
    except SettingsError as exc:
        return _usage_error("monitor", exc)
    except ListenError as exc:  # not a usage error: the port may be free on the next start
        print(f"downtime-operator monitor: {exc}", file=sys.stderr)
        return 1


def cleanup_command(args: argparse.Namespace, *, env: Mapping[str, str]) -> int:
    try:
        settings = load_cleanup_settings(args, env=env)
    except SettingsError as exc:
        return _usage_error("cleanup", exc)
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    try:
        return asyncio.run(run_cleanup(settings, env=env))
    except SettingsError as exc:
        return _usage_error("cleanup", exc)


# -- running -------------------------------------------------------------------------------------


async def open_store(settings: StoreSettings) -> Store:
    """PostgreSQL when a DSN is given, else the SQLite file (created on first use)."""
    if settings.database_url is not None:
        # min_size=0: no connection yet, so a database that is down at start delays writes
        # (they queue) instead of stopping the monitor.
        return await PostgresIncidentStore.connect(
            settings.database_url.get_secret_value(), min_size=0, max_size=2
        )
    try:
        return await SqliteIncidentStore.open(settings.db_path)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise SettingsError(f"--db-path: cannot use {str(settings.db_path)!r}: {exc}") from exc


def describe_store(settings: StoreSettings) -> str:
    """Where incidents go, for the log, without the password of a DSN."""
    if settings.database_url is None:
        return f"SQLite {settings.db_path.resolve()}"
    parts = urlsplit(settings.database_url.get_secret_value())
    return f"PostgreSQL {parts.hostname}:{parts.port or 5432}{parts.path}"


def _log_check(ref: MonitorRef, result: CheckResult, lag: float) -> None:
    if result.ok:
        logger.debug("check ok: HTTP %s in %.0f ms", result.status_code, result.latency_ms or 0)
    else:
        logger.debug("check failed: %s", result.error)


async def run_monitor(settings: MonitorSettings, *, api: ApiSettings | None = None) -> int:
    """Check until SIGTERM/SIGINT; the in-flight check finishes and queued writes are flushed.

    An incident that is open at shutdown stays open in the store; the next start reloads it
    (the runner asks the store first) and carries on with the same incident. Log captures are
    planned in the store, so one that is due (or claimed, then given back) at shutdown runs
    after the next start.
    """
    stop = EventStopSignal()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        store = await open_store(settings)
        await _monitor(settings, store=store, stop=stop, api=api)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


@dataclass(frozen=True)
class _StorePorts:
    """What the monitor and its admin API need of the store, beside the incident store."""

    captures: LogCaptureStore
    queries: AdminQueries
    audit: AuditLog


async def _ports_for(store: Store, settings: StoreSettings) -> tuple[_StorePorts, Closer]:
    """Over the same SQLite file; for PostgreSQL the API reads through a pool of its own."""
    if isinstance(store, SqliteIncidentStore):
        db = store.database
        ports = _StorePorts(SqliteLogCaptures(db), SqliteIncidentQueries(db), SqliteAuditLog(db))
        return ports, _nothing
    assert settings.database_url is not None
    pool = await connect_pool(settings.database_url.get_secret_value(), max_size=2)
    ports = _StorePorts(
        PostgresLogCaptures(store.pool), PostgresIncidentQueries(pool), PostgresAuditLog(pool)
    )
    return ports, pool.close


async def _nothing() -> None:
    """Nothing of its own to close."""


class _AdminResources(LoggingResources):
    """The admin API's resources without Kubernetes: the running monitor learns of a manual
    resolve or acknowledge from here, as the operator's monitors learn it from their watch."""

    def __init__(self, runner: MonitorRunner) -> None:
        super().__init__()
        self._runner = runner

    async def upsert_incident(self, incident: Incident) -> None:
        await super().upsert_incident(incident)
        if incident.status is IncidentStatus.RESOLVED:
            self._runner.resolved_elsewhere(incident.incident_id)
        elif incident.status is IncidentStatus.INVESTIGATING:
            self._runner.acknowledged_elsewhere(incident.incident_id)


async def _monitor(
    settings: MonitorSettings, *, store: Store, stop: EventStopSignal, api: ApiSettings | None
) -> None:
    clock = SystemClock()
    prober = HttpProber(clock)
    await prober.start()
    store_writes = OrderedRetryQueue(name="store", permanent=(OpenIncidentExistsError, ValueError))
    if isinstance(store, PostgresIncidentStore):
        pool = store.pool

        async def migrate() -> None:
            await apply_migrations(pool)

        store_writes.submit("apply migrations", migrate)
    ports, close_ports = await _ports_for(store, settings)
    loki = loki_client_for(settings) if settings.capture_enabled else None
    if loki is not None:
        await loki.start()
    resources = LoggingResources()
    files = LocalLogFiles(directory=settings.log_files_dir)
    deps = RunnerDeps(
        prober=prober,
        store=store,
        resources=resources,
        clock=clock,
        store_writes=store_writes,
        kube_writes=OrderedRetryQueue(name="events"),
        observer=_log_check,
        captures=ports.captures,
        loki_configured=loki is not None,
    )
    engine = MonitorEngine(
        deps=deps,
        closers=(prober.close, *((loki.close,) if loki else ()), close_ports, store.close),
        log_capture=LogCaptureService(
            LogCaptureDeps(
                store=ports.captures,
                files=files,
                status=resources,
                kube_writes=deps.kube_writes,
                clock=clock,
                source=loki,
            )
        ),
    )
    ref = monitor_ref_for(settings.url)
    spec = SpecSnapshot(spec=settings.spec())
    logger.info(
        "monitoring %s every %gs (timeout %gs; %d failed checks open an incident);"
        " incidents in %s as %s; log capture %s",
        settings.url,
        settings.interval,
        settings.timeout,
        settings.failure_threshold,
        describe_store(settings),
        ref,
        f"from {settings.loki_query_url} ({settings.loki_query})" if loki else "off",
    )
    if settings.notifications:
        logger.warning("no notification channel is available yet: --enable-notifications ignored")
    engine.start()
    # Captures read columns the migrations add: start them once the schema is in place.
    store_writes.submit("start log capture", engine.start_log_capture)
    runner = engine.runner_for(ref)
    try:
        async with contextlib.AsyncExitStack() as serving_api:
            if api is not None:
                await serving_api.enter_async_context(
                    serve_admin_api(
                        api,
                        queries=ports.queries,
                        audit=ports.audit,
                        captures=ports.captures,
                        files=files,
                        resources=_AdminResources(runner),
                        clock=clock,
                        source=loki,
                    )
                )
            await runner.run(read_spec=lambda: spec, stop=stop)
        logger.info("stopping: flushing pending writes")
    finally:
        await engine.close()


def _resources_for(store: Store, *, env: Mapping[str, str]) -> IncidentResources:
    """Delete CRs only where they can exist: a PostgreSQL shared with an operator, and a
    reachable cluster (in a pod, or KUBECONFIG set). The standalone monitor has no CRs."""
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST"))
    if isinstance(store, PostgresIncidentStore) and (in_cluster or env.get("KUBECONFIG")):
        return KubeResources(load_api_client(env.get("KUBECONFIG")))
    return LoggingResources()


async def run_cleanup(settings: CleanupSettings, *, env: Mapping[str, str]) -> int:
    """One retention run; exit 1 when some incidents had to be left for the next run."""
    store = await open_store(settings)
    try:
        retention = RetentionService(
            store=store,
            resources=_resources_for(store, env=env),
            log_files=LocalLogFiles(directory=settings.log_files_dir),
            clock=SystemClock(),
        )
        report = await retention.cleanup(days=settings.days, keep_critical=settings.keep_critical)
    finally:
        await store.close()
    print(report.summary(days=settings.days, keep_critical=settings.keep_critical))
    return 1 if report.deferred else 0
