"""The ``monitor`` and ``cleanup`` commands: the seed's standalone tool on the operator's engine.

One URL, no Kubernetes and, by default, no database server: incidents go to an embedded SQLite
file unless a PostgreSQL DSN is given. The seed's flags and environment variables keep their
meaning; flags override the environment; an invalid value stops the command with exit status 2
and a message naming the flag or variable it came from, before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.key_rotation import RotationReport
from downtime_operator.adapters.kube.resources import KubeResources, load_api_client
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.log_keys import log_key_ring, reloading_log_keys
from downtime_operator.adapters.loki import loki_client_for
from downtime_operator.adapters.notify.channels import HttpChannelTransport
from downtime_operator.adapters.notify.env_channels import channels_from_env
from downtime_operator.adapters.null_resources import LoggingResources
from downtime_operator.adapters.stores import StoreOpenError, open_store_backend
from downtime_operator.admin_server import serve_admin_api
from downtime_operator.assembly import NotificationSetup, build_engine
from downtime_operator.domain.maintenance import parse_window_spec
from downtime_operator.domain.models import CheckResult, Incident, IncidentStatus, MonitorRef
from downtime_operator.domain.sla_report import MonitorObjective, monitor_objective
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.ports import IncidentResources
from downtime_operator.services.retention import RetentionService
from downtime_operator.services.slo.maintenance import MaintenanceCalendar
from downtime_operator.services.stop import EventStopSignal
from downtime_operator.services.store_backend import StoreBackend
from downtime_operator.settings import (
    ApiSettings,
    CleanupSettings,
    MonitorSettings,
    RotateKeysSettings,
    SettingsError,
    StoreSettings,
)

logger = logging.getLogger("downtime_operator.monitor")

STANDALONE_NAMESPACE = "standalone"
"""``monitor_namespace`` of standalone incidents; the name is derived from the URL."""


def monitor_ref_for(url: str) -> MonitorRef:
    """A stable name from the URL (host, port, path), so a restart finds its open incident."""
    parts = urlsplit(url)
    raw = f"{parts.hostname}-{parts.port or ''}-{parts.path}".lower()
    return MonitorRef(
        namespace=STANDALONE_NAMESPACE, name=re.sub(r"[^a-z0-9.]+", "-", raw).strip("-")
    )


# -- running -------------------------------------------------------------------------------------


async def open_store(settings: StoreSettings, keys: LogKeyRing | None = None) -> StoreBackend:
    """PostgreSQL when a DSN is given, else the SQLite file (created on first use); captured
    data sealed under ``keys`` (default: the settings' keys as they are at start)."""
    database = settings.database
    try:
        return await open_store_backend(
            dsn=database.url.get_secret_value() if database.url is not None else None,
            db_path=database.db_path,
            max_size=database.pool_size,
            keys=log_key_ring(settings.encryption) if keys is None else keys,
        )
    except StoreOpenError as exc:
        raise SettingsError(f"--db-path: {exc}") from exc


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
        keys = log_key_ring(settings.encryption)
        async with reloading_log_keys(keys, settings.encryption):
            backend = await open_store(settings, keys)
            await _monitor(settings, backend=backend, stop=stop, api=api)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


class _InProcessMaintenance:
    """Ad-hoc windows without Kubernetes: straight into the running monitor's calendar."""

    def __init__(self, calendar: MaintenanceCalendar) -> None:
        self._calendar = calendar

    async def start_maintenance(
        self, *, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> None:
        self._calendar.put(namespace=namespace, name=name, spec=parse_window_spec(spec))


class _FlagObjectives:
    """The SLA report's objectives: the one monitor's ``--slo``, if given."""

    def __init__(self, ref: MonitorRef, spec: Mapping[str, Any]) -> None:
        objective = monitor_objective(spec, created_at=None)
        self._found = {} if objective is None else {ref: objective}

    async def objectives(self) -> dict[MonitorRef, MonitorObjective]:
        return dict(self._found)


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
    settings: MonitorSettings,
    *,
    backend: StoreBackend,
    stop: EventStopSignal,
    api: ApiSettings | None,
) -> None:
    loki = loki_client_for(settings.loki) if settings.capture_enabled else None
    log_files_dir = settings.capture.log_files_dir
    ref = monitor_ref_for(settings.probe.url)
    spec_body = settings.spec()
    notifications = None
    if settings.notifications:
        channels = channels_from_env(settings.channels, namespace=ref.namespace)
        spec_body["notifications"] = [{"channel": name} for name in channels.names]
        notify = settings.notify
        notifications = NotificationSetup(
            directory=channels,
            transport=HttpChannelTransport(
                api_url=notify.public_api_url,
                resend_url=notify.resend_api_url,
                pagerduty_url=notify.pagerduty_events_url,
            ),
            owner=f"standalone-{socket.gethostname()}-{os.getpid()}",
        )
    maintenance = MaintenanceCalendar()
    for name, window in settings.slo.windows(monitor=ref.name).items():
        maintenance.put(namespace=ref.namespace, name=name, spec=window)
    engine = await build_engine(
        backend=backend,
        resources=LoggingResources(),
        log_files_dir=log_files_dir,
        loki=loki,
        observer=_log_check,
        notifications=notifications,
        maintenance=maintenance,
    )
    spec = SpecSnapshot(spec=spec_body)
    logger.info(
        "monitoring %s every %gs (timeout %gs; %d failed checks open an incident);"
        " incidents in %s as %s; log capture %s; notifications %s",
        settings.probe.url,
        settings.probe.interval,
        settings.probe.timeout,
        settings.probe.failure_threshold,
        backend.description,
        ref,
        f"from {settings.loki.query_url} ({settings.capture.query})" if loki else "off",
        ", ".join(c["channel"] for c in spec_body.get("notifications", ())) or "off",
    )
    runner = engine.runner_for(ref)
    try:
        async with contextlib.AsyncExitStack() as serving_api:
            if api is not None:
                await serving_api.enter_async_context(
                    serve_admin_api(
                        api,
                        backend=backend,
                        resources=_AdminResources(runner),
                        log_files_dir=log_files_dir,
                        clock=SystemClock(),
                        source=loki,
                        objectives=_FlagObjectives(ref, spec_body),
                        maintenance=_InProcessMaintenance(maintenance),
                    )
                )
            await runner.run(read_spec=lambda: spec, stop=stop)
        logger.info("stopping: flushing pending writes")
    finally:
        await engine.close()


@contextlib.asynccontextmanager
async def _resources_for(
    backend: StoreBackend, *, env: Mapping[str, str]
) -> AsyncIterator[IncidentResources]:
    """Delete CRs only where they can exist: a PostgreSQL shared with an operator, and a
    reachable cluster (in a pod, or KUBECONFIG set). The standalone monitor has no CRs."""
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST"))
    if not (backend.shared_with_clusters and (in_cluster or env.get("KUBECONFIG"))):
        yield LoggingResources()
        return
    resources = KubeResources(await load_api_client(env.get("KUBECONFIG")))
    try:
        yield resources
    finally:
        await resources.close()


async def run_cleanup(settings: CleanupSettings, *, env: Mapping[str, str]) -> int:
    """One retention run; exit 1 when some incidents had to be left for the next run."""
    backend = await open_store(settings)
    try:
        async with _resources_for(backend, env=env) as resources:
            retention = RetentionService(
                store=backend.incidents,
                resources=resources,
                log_files=LocalLogFiles(directory=settings.capture.log_files_dir),
                clock=SystemClock(),
            )
            report = await retention.cleanup(
                days=settings.retention.days, keep_critical=settings.retention.keep_critical
            )
    finally:
        await backend.close()
    policy = settings.retention
    print(report.summary(days=policy.days, keep_critical=policy.keep_critical))
    return 1 if report.deferred else 0


async def run_rotate_keys(settings: RotateKeysSettings) -> int:
    """Re-seal every row and file under the active key (``--dry-run``: count rows per key id).

    Exit 1 when some rows are left for another run (changed meanwhile, or SIGTERM/SIGINT:
    running it again finishes them), or cannot be opened (their key is not in the ring, or
    they fail authentication: listed, and left as they are)."""
    keys = log_key_ring(settings.encryption, announce=False)
    if not keys:
        raise SettingsError(
            "LOG_ENCRYPTION_KEYS or LOG_ENCRYPTION_KEYS_FILE must name at least one key"
        )
    database = settings.database
    try:
        backend = await open_store_backend(
            dsn=database.url.get_secret_value() if database.url is not None else None,
            db_path=database.db_path,
            max_size=2,
            keys=keys,
        )
    except StoreOpenError as exc:
        raise SettingsError(f"--db-path: {exc}") from exc
    rotation = backend.key_rotation(settings.capture.log_files_dir)
    stop = EventStopSignal()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if settings.dry_run:
            counted = await rotation.count_keys(batch=settings.batch_size)
            print(f"{counted.rows} incidents in {backend.description}; active key {keys.active_id}")
            for key_id, rows in sorted(counted.keys.items()):
                print(f"{key_id}: {rows} rows")
            return 0
        report = await rotation.rotate(
            batch=settings.batch_size, stop=stop.is_set, progress=_rotation_progress
        )
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await backend.close()
    print(
        f"rotate-keys: {report.rows} incidents read, {report.resealed} re-sealed under"
        f" {keys.active_id} ({report.files} log files); {report.changed} changed meanwhile,"
        f" {report.missing_files} log files missing, {len(report.unreadable)} unreadable"
        + ("; interrupted: run again to finish" if report.interrupted else "")
    )
    for line in report.unreadable:  # left as they are: add their key to the ring, or look
        print(f"rotate-keys: not re-sealed, {line}", file=sys.stderr)
    return 1 if report.interrupted or report.changed or report.unreadable else 0


def _rotation_progress(report: RotationReport, total: int) -> None:
    """A bar and counts on stderr, every 50 rows and at the last."""
    if report.rows % 50 and report.rows < total:
        return
    done = min(report.rows, total)
    width = 30
    filled = width * done // total if total else width
    print(
        f"rotate-keys [{'#' * filled}{'.' * (width - filled)}] {done}/{total} incidents,"
        f" {report.resealed} re-sealed, {report.files} files",
        file=sys.stderr,
        flush=True,
    )
