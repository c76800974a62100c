"""Picks the concrete adapters and builds the engine; the only place that knows them all."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable

import kopf

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.kube.channels import KubeChannelDirectory, KubeChannelReporter
from downtime_operator.adapters.kube.context import KubeContextReader
from downtime_operator.adapters.kube.maintenance_windows import KubeMaintenanceWindows
from downtime_operator.adapters.kube.objectives import KubeObjectives
from downtime_operator.adapters.kube.resources import KubeResources, load_api_client
from downtime_operator.adapters.kube.secrets import KubeSecrets
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.log_keys import log_key_ring, reloading_log_keys
from downtime_operator.adapters.loki import LokiClient, loki_client_for
from downtime_operator.adapters.metrics import OperatorMetrics
from downtime_operator.adapters.metrics_server import metrics_app
from downtime_operator.adapters.notify.channels import HttpChannelTransport
from downtime_operator.adapters.postgres.backend import PostgresBackend
from downtime_operator.adapters.probe_process import ProcessProber
from downtime_operator.adapters.prometheus import prometheus_client_for
from downtime_operator.admin_server import serve_admin_api
from downtime_operator.api.server import serving
from downtime_operator.assembly import NotificationSetup, build_engine
from downtime_operator.handlers import MonitorListing, register
from downtime_operator.services.engine import Closer, MonitorEngine
from downtime_operator.services.kube_context import KubeContextSink
from downtime_operator.services.pipeline import IncidentSink
from downtime_operator.services.retention import RetentionService
from downtime_operator.services.slo.maintenance import (
    MaintenanceCalendar,
    WindowStatusPublisher,
)
from downtime_operator.services.stop import EventStopSignal
from downtime_operator.services.store_backend import StoreBackend
from downtime_operator.settings import ApiSettings, OperatorSettings

logger = logging.getLogger(__name__)


async def operator_engine(
    settings: OperatorSettings,
    *,
    metrics: OperatorMetrics,
    resources: KubeResources,
    channels: KubeChannelDirectory | None = None,
    keys: LogKeyRing | None = None,
    maintenance: MaintenanceCalendar | None = None,
) -> MonitorEngine:
    """The engine over PostgreSQL, shown on ``resources``, with metrics and daily retention;
    notifications through the NotificationChannels the watch keeps in ``channels``; captured
    data sealed under ``keys`` (the process's log key ring); monitors in the
    MaintenanceWindows the watch keeps in ``maintenance``."""
    shard = settings.kubernetes.shard
    backend = await PostgresBackend.connect(
        settings.database.dsn, max_size=settings.database.pool_size, keys=keys
    )
    engine = await build_engine(
        backend=backend,
        resources=resources,
        log_files_dir=settings.capture.log_files_dir,
        loki=_loki_client(settings),
        prometheus=prometheus_client_for(settings.prometheus),
        sinks=(metrics,),
        store_sinks=_context_sinks(settings, backend=backend, resources=resources),
        secrets=KubeSecrets(resources.api_client),
        observer=metrics.check_observed,
        status_sync_period=settings.kubernetes.status_sync_period,
        status_writes_per_second=settings.kubernetes.status_writes_per_second,
        prober=ProcessProber(SystemClock()) if settings.kubernetes.check_worker else None,
        closers=(
            *_retention(settings, backend=backend, resources=resources),
            *_window_statuses(settings, maintenance=maintenance, resources=resources),
            resources.close,
        ),
        shard=None if shard is None else shard.index,
        maintenance=maintenance,
        burn_rules=settings.slo.burn_factors().rules(),
        slo_observer=metrics.slo_observed,
        notifications=None
        if channels is None
        else NotificationSetup(
            directory=channels,
            transport=HttpChannelTransport(
                api_url=settings.notify.public_api_url,
                resend_url=settings.notify.resend_api_url,
                pagerduty_url=settings.notify.pagerduty_events_url,
            ),
            # Unique per live process; a pod's name survives a container restart.
            owner=settings.kubernetes.pod_id or f"{socket.gethostname()}-{os.getpid()}",
            reporter=KubeChannelReporter(resources.api_client),
            observer=metrics,
        ),
    )
    metrics.watch_queues(*engine.queues)
    return engine


def _context_sinks(
    settings: OperatorSettings, *, backend: StoreBackend, resources: KubeResources
) -> tuple[IncidentSink, ...]:
    """The incidents' Kubernetes context (``KUBERNETES_CONTEXT_ENABLED``), read with the
    operator's own client and kept in the store beside the incident."""
    if not settings.kubernetes.context_enabled:
        return ()
    return (
        KubeContextSink(
            reader=KubeContextReader(resources.api_client),
            store=backend.kube_contexts,
            view=resources,
            clock=SystemClock(),
        ),
    )


def _loki_client(settings: OperatorSettings) -> LokiClient | None:
    return loki_client_for(settings.loki) if settings.loki.enabled else None


def _window_statuses(
    settings: OperatorSettings,
    *,
    maintenance: MaintenanceCalendar | None,
    resources: KubeResources,
) -> tuple[Closer, ...]:
    """Keep the MaintenanceWindows' status current; return its stopper. Every shard knows
    every window and monitor, so the first one writes for all."""
    shard = settings.kubernetes.shard
    if maintenance is None or (shard is not None and shard.index != 0):
        return ()
    publisher = WindowStatusPublisher(
        calendar=maintenance,
        writer=KubeMaintenanceWindows(resources.api_client),
        clock=SystemClock(),
    )
    stop = EventStopSignal()
    task = asyncio.create_task(publisher.run(stop=stop), name="maintenance-window-status")

    async def stop_and_wait() -> None:
        stop.set()
        await task

    return (stop_and_wait,)


def _retention(
    settings: OperatorSettings, *, backend: StoreBackend, resources: KubeResources
) -> tuple[Closer, ...]:
    """Run retention daily (rows, their CRs and log files together); return its stopper.

    One pass over the shared database is enough: with shards, the first one runs it.
    """
    shard = settings.kubernetes.shard
    if shard is not None and shard.index != 0:
        return ()
    retention = RetentionService(
        store=backend.incidents,
        resources=resources,
        log_files=LocalLogFiles(directory=settings.capture.log_files_dir),
        clock=SystemClock(),
    )
    stop = EventStopSignal()
    task = asyncio.create_task(
        retention.run_daily(
            stop=stop,
            days=settings.retention.days,
            keep_critical=settings.retention.keep_critical,
        ),
        name="retention",
    )

    async def stop_and_wait() -> None:
        stop.set()
        await task

    return (stop_and_wait,)


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
    settings: OperatorSettings, *, metrics: OperatorMetrics, keys: LogKeyRing | None = None
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    channels = KubeChannelDirectory()
    maintenance = MaintenanceCalendar()

    kubernetes = settings.kubernetes
    # With peering, kopf decides whether this replica runs its monitors: none start early.
    start_early = kubernetes.peering_name is None

    async def factory() -> tuple[MonitorEngine, MonitorListing | None]:
        resources = KubeResources(await load_api_client(kubernetes.kubeconfig))
        engine = await operator_engine(
            settings,
            metrics=metrics,
            resources=resources,
            channels=channels,
            keys=keys,
            maintenance=maintenance,
        )
        listing = functools.partial(resources.list_monitors, namespaces=kubernetes.watch_namespaces)
        return engine, listing if start_early else None

    configure = functools.partial(
        _configure_kopf, peering_lifetime=settings.kubernetes.peering_lifetime
    )
    register(
        registry,
        engine_factory=factory,
        configure=configure,
        shard=kubernetes.shard,
        channels=channels,
        maintenance=maintenance,
    )
    return registry


async def run_operator(settings: OperatorSettings, api: ApiSettings | None = None) -> None:
    """The operator; with ``api`` (when it has keys, or API_ENABLED) the admin API beside it."""
    kubernetes = settings.kubernetes
    shard = kubernetes.shard
    metrics = OperatorMetrics(shard=None if shard is None else shard.label)
    keys = log_key_ring(settings.encryption)  # one ring: the engine's and the API's
    registry = operator_registry(settings, metrics=metrics, keys=keys)
    memo = kopf.Memo()
    peering_name = kubernetes.peering_name
    if peering_name is not None and shard is not None:
        peering_name = shard.peering_name(peering_name)
    # kopf freezes all replicas that share the highest priority, so each picks its own.
    priority = kubernetes.peering_priority
    if priority is None and peering_name is not None:
        priority = secrets.randbelow(2**31)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(reloading_log_keys(keys, settings.encryption))
        if settings.metrics.port is not None:
            app = metrics_app(metrics_text=metrics.text, ready=lambda: "engine" in memo)
            await stack.enter_async_context(
                serving(app, host=settings.metrics.host, port=settings.metrics.port, name="metrics")
            )
        if api is not None and api.serve:
            await stack.enter_async_context(
                admin_api(settings, api, metrics_text=metrics.text, keys=keys)
            )
        await kopf.operator(
            registry=registry,
            clusterwide=not kubernetes.watch_namespaces,
            namespaces=list(kubernetes.watch_namespaces),
            standalone=peering_name is None,
            peering_name=peering_name,
            priority=priority,
            memo=memo,
        )


@contextlib.asynccontextmanager
async def admin_api(
    settings: OperatorSettings,
    api: ApiSettings,
    *,
    metrics_text: Callable[[], bytes] | None = None,
    keys: LogKeyRing | None = None,
) -> AsyncIterator[int]:
    """Serve the admin API (yields its port) over a pool of its own.

    Its own pool, so that people reading incidents never wait behind the runners' writes (and
    its own Loki client). What the API serves is assembled in ``admin_server``. ``keys``: the
    operator's log key ring; alone (``api``), the API reads and reloads its own.
    """
    async with contextlib.AsyncExitStack() as stack:
        if keys is None:
            keys = log_key_ring(settings.encryption)
            await stack.enter_async_context(reloading_log_keys(keys, settings.encryption))
        # Each is closed even when a later one cannot be opened.
        backend = await PostgresBackend.connect(settings.database.dsn, max_size=5, keys=keys)
        stack.push_async_callback(backend.close)
        resources = KubeResources(await load_api_client(settings.kubernetes.kubeconfig))
        stack.push_async_callback(resources.close)
        loki = _loki_client(settings)
        if loki is not None:
            await loki.start()
            stack.push_async_callback(loki.close)
        yield await stack.enter_async_context(
            serve_admin_api(
                api,
                backend=backend,
                resources=resources,
                log_files_dir=settings.capture.log_files_dir,
                clock=SystemClock(),
                source=loki,
                metrics_text=metrics_text,
                objectives=KubeObjectives(
                    resources, namespaces=settings.kubernetes.watch_namespaces
                ),
                maintenance=KubeMaintenanceWindows(resources.api_client),
            )
        )


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
    backend = await PostgresBackend.connect(settings.database.dsn, min_size=1, max_size=1)
    try:
        return await backend.migrate()
    finally:
        await backend.close()
