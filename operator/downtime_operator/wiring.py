"""Picks the concrete adapters and builds the engine; the only place that knows them all."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import kopf

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.adapters.kube.resources import KubeResources, load_api_client
from downtime_operator.adapters.kube.secrets import KubeSecrets
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.loki import LokiClient, loki_client_for
from downtime_operator.adapters.metrics import OperatorMetrics
from downtime_operator.adapters.metrics_server import metrics_app
from downtime_operator.adapters.postgres.audit import PostgresAuditLog
from downtime_operator.adapters.postgres.log_captures import PostgresLogCaptures
from downtime_operator.adapters.postgres.migrations import apply_migrations
from downtime_operator.adapters.postgres.queries import PostgresIncidentQueries, connect_pool
from downtime_operator.adapters.postgres.store import PostgresIncidentStore
from downtime_operator.admin_server import serve_admin_api
from downtime_operator.api.server import serving
from downtime_operator.handlers import register
from downtime_operator.services.engine import MonitorEngine
from downtime_operator.services.log_capture import LogCaptureDeps, LogCaptureService
from downtime_operator.services.monitor_runner import RunnerDeps
from downtime_operator.services.ports import OpenIncidentExistsError, WriteRefusedError
from downtime_operator.services.retention import RetentionService
from downtime_operator.services.retry_queue import OrderedRetryQueue
from downtime_operator.services.stop import EventStopSignal
from downtime_operator.settings import ApiSettings, OperatorSettings

logger = logging.getLogger(__name__)


async def build_engine(settings: OperatorSettings, *, metrics: OperatorMetrics) -> MonitorEngine:
    clock = SystemClock()
    store = await PostgresIncidentStore.connect(settings.database_url, min_size=0)
    prober = HttpProber(clock=clock)
    await prober.start()
    api_client = load_api_client(settings.kubeconfig)
    resources = KubeResources(api_client)
    store_writes = OrderedRetryQueue(
        name="postgres", permanent=(OpenIncidentExistsError, ValueError)
    )
    # Postgres may be down at start: the schema goes first in the queue, and every write after
    # it waits (in order) until it has been applied.
    store_writes.submit("apply migrations", lambda: _migrate(store))
    loki = _loki_client(settings)
    if loki is not None:
        await loki.start()
    captures = PostgresLogCaptures(store.pool)
    deps = RunnerDeps(
        prober=prober,
        store=store,
        resources=resources,
        clock=clock,
        store_writes=store_writes,
        kube_writes=OrderedRetryQueue(name="kubernetes", permanent=(WriteRefusedError,)),
        status_sync_period=settings.status_sync_period,
        observer=metrics.check_observed,
        incident_observer=metrics.incident_changed,
        captures=captures,
        loki_configured=loki is not None,
        secrets=KubeSecrets(api_client),
    )
    metrics.watch_queues(store_writes, deps.kube_writes)
    log_capture = LogCaptureService(
        LogCaptureDeps(
            store=captures,
            files=LocalLogFiles(directory=settings.log_files_dir),
            status=resources,
            kube_writes=deps.kube_writes,
            clock=clock,
            source=loki,
        )
    )
    stop_retention = _start_retention(settings, store=store, resources=resources, clock=clock)
    closers = (stop_retention, prober.close, *((loki.close,) if loki else ()), store.close)
    engine = MonitorEngine(deps=deps, closers=closers, log_capture=log_capture)
    engine.start()
    # Captures read columns the migrations add: start them once the schema is in place.
    store_writes.submit("start log capture", engine.start_log_capture)
    return engine


def _loki_client(settings: OperatorSettings) -> LokiClient | None:
    return loki_client_for(settings) if settings.loki_enabled else None


def _start_retention(
    settings: OperatorSettings,
    *,
    store: PostgresIncidentStore,
    resources: KubeResources,
    clock: SystemClock,
) -> Callable[[], Awaitable[None]]:
    """Run retention daily (rows, their CRs and log files together); return its stopper."""
    retention = RetentionService(
        store=store,
        resources=resources,
        log_files=LocalLogFiles(directory=settings.log_files_dir),
        clock=clock,
    )
    stop = EventStopSignal()
    task = asyncio.create_task(
        retention.run_daily(stop=stop, days=settings.retention_days, keep_critical=True),
        name="retention",
    )

    async def stop_and_wait() -> None:
        stop.set()
        await task

    return stop_and_wait


async def _migrate(store: PostgresIncidentStore) -> None:
    applied = await apply_migrations(store.pool)
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied))


def _configure_kopf(settings: kopf.OperatorSettings, *, peering_lifetime: int) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # The CRDs are installed before the operator (the chart's crds/) and namespaces are named
    # exactly, so kopf need not list/watch CRDs or namespaces: least privilege (the chart's RBAC
    # grants neither), and no warnings about it. A CRD added later is seen after a restart.
    settings.scanning.disabled = True
    # A standby replica takes over at most this long after the active one died.
    settings.peering.lifetime = peering_lifetime


def operator_registry(
    settings: OperatorSettings, *, metrics: OperatorMetrics
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    async def factory() -> MonitorEngine:
        return await build_engine(settings, metrics=metrics)

    configure = functools.partial(_configure_kopf, peering_lifetime=settings.peering_lifetime)
    register(registry, engine_factory=factory, configure=configure)
    return registry


async def run_operator(settings: OperatorSettings, api: ApiSettings | None = None) -> None:
    """The operator; with ``api`` (when it has keys, or API_ENABLED) the admin API beside it."""
    metrics = OperatorMetrics()
    registry = operator_registry(settings, metrics=metrics)
    memo = kopf.Memo()
    # kopf freezes all replicas that share the highest priority, so each picks its own.
    priority = settings.peering_priority
    if priority is None and settings.peering is not None:
        priority = secrets.randbelow(2**31)
    async with contextlib.AsyncExitStack() as stack:
        if settings.metrics_port is not None:
            app = metrics_app(metrics_text=metrics.text, ready=lambda: "engine" in memo)
            await stack.enter_async_context(
                serving(app, host=settings.metrics_host, port=settings.metrics_port, name="metrics")
            )
        if api is not None and api.serve:
            await stack.enter_async_context(admin_api(settings, api, metrics_text=metrics.text))
        await kopf.operator(
            registry=registry,
            clusterwide=not settings.watch_namespaces,
            namespaces=list(settings.watch_namespaces),
            standalone=settings.peering is None,
            peering_name=settings.peering,
            priority=priority,
            memo=memo,
        )


@contextlib.asynccontextmanager
async def admin_api(
    settings: OperatorSettings,
    api: ApiSettings,
    *,
    metrics_text: Callable[[], bytes] | None = None,
) -> AsyncIterator[int]:
    """Serve the admin API (yields its port) over a pool of its own.

    Its own pool, so that people reading incidents never wait behind the runners' writes (and
    its own Loki client). What the API serves is assembled in ``admin_server``.
    """
    clock = SystemClock()
    pool = await connect_pool(settings.database_url)
    stack = contextlib.AsyncExitStack()
    try:
        loki = _loki_client(settings)
        if loki is not None:
            await loki.start()
            stack.push_async_callback(loki.close)
        async with serve_admin_api(
            api,
            queries=PostgresIncidentQueries(pool),
            audit=PostgresAuditLog(pool),
            captures=PostgresLogCaptures(pool),
            files=LocalLogFiles(directory=settings.log_files_dir),
            resources=KubeResources(load_api_client(settings.kubeconfig)),
            clock=clock,
            source=loki,
            metrics_text=metrics_text,
        ) as port:
            yield port
    finally:
        await stack.aclose()
        await pool.close()


async def run_api(settings: OperatorSettings, api: ApiSettings) -> None:
    """``downtime-operator api``: the admin API alone, until SIGTERM or SIGINT."""
    applied = await migrate(settings)  # the audit table must exist before the first POST
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with admin_api(settings, api):
        await stop.wait()


async def migrate(settings: OperatorSettings) -> list[str]:
    store = await PostgresIncidentStore.connect(settings.database_url)
    try:
        return await apply_migrations(store.pool)
    finally:
        await store.close()
