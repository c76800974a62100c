"""The one engine builder: a store backend and a mode's sinks in, a running engine out.

``run`` (the operator), ``monitor`` (standalone), the admin API and the benchmarks all build
through here, so they cannot drift apart in how incidents are recorded: the same sinks with the
same retry rules, the schema applied before the store's first write, log capture over the same
store. What differs by mode is passed in: where incidents are shown (Kubernetes or log lines),
extra sinks (metrics), Secrets for ``headersFrom``, the check observer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.adapters.loki import LokiClient
from downtime_operator.adapters.notify.channels import HttpChannelTransport
from downtime_operator.adapters.prometheus import PrometheusClient
from downtime_operator.domain.burn_alerts import BurnFactors, BurnRule
from downtime_operator.services.engine import Closer, MonitorEngine, SchemaGate
from downtime_operator.services.log_capture import LogCaptureDeps, LogCaptureService
from downtime_operator.services.metrics_capture import MetricsCaptureDeps, MetricsCaptureService
from downtime_operator.services.monitor_runner import CheckObserver, RunnerDeps, SloObserver
from downtime_operator.services.notifications.delivery import NotificationDelivery
from downtime_operator.services.notifications.ports import (
    ChannelDirectory,
    ChannelReporter,
    DeliveryObserver,
)
from downtime_operator.services.notifications.sink import NotificationSink
from downtime_operator.services.open_incidents import OpenIncidents
from downtime_operator.services.pipeline import (
    IncidentPipeline,
    IncidentPublisher,
    IncidentSink,
    SinkRoute,
)
from downtime_operator.services.ports import Clock, LogSource, Prober, SecretValues
from downtime_operator.services.sinks import ResourceSink, ShownResources, standard_pipeline
from downtime_operator.services.slo.burn_notices import BurnNotifier
from downtime_operator.services.slo.maintenance import (
    MaintenanceCalendar,
    MaintenanceKeeper,
    MaintenanceRecorder,
)
from downtime_operator.services.status_writer import StatusWriter
from downtime_operator.services.store_backend import StoreBackend
from downtime_operator.services.uptime_board import UptimeBoard


@dataclass(frozen=True, kw_only=True)
class NotificationSetup:
    """A mode's notification channels and where their outcomes are shown."""

    directory: ChannelDirectory
    transport: HttpChannelTransport
    owner: str
    """Whose leases the outbox rows carry: this process, unique among replicas."""
    reporter: ChannelReporter | None = None
    observer: DeliveryObserver | None = None


def log_capture_service(
    *,
    backend: StoreBackend,
    log_files_dir: Path,
    source: LogSource | None,
    events: IncidentPublisher,
    clock: Clock,
) -> LogCaptureService:
    """Captures over the backend's capture port, results published to ``events``."""
    return LogCaptureService(
        LogCaptureDeps(
            store=backend.captures,
            files=backend.capture_files(log_files_dir),
            events=events,
            clock=clock,
            source=source,
        )
    )


def resource_pipeline(resources: ShownResources) -> IncidentPipeline:
    """Only where incidents are shown: the admin API's own pipeline (its transitions are
    already written to the store when they are published)."""
    return IncidentPipeline([SinkRoute(sink=ResourceSink(resources))])


class OwnedProber(Prober, Protocol):
    """A prober the engine starts and closes (in-process, or with its check worker)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


async def build_engine(
    *,
    backend: StoreBackend,
    resources: ShownResources,
    log_files_dir: Path,
    loki: LokiClient | None = None,
    prometheus: PrometheusClient | None = None,
    sinks: Sequence[IncidentSink] = (),
    store_sinks: Sequence[IncidentSink] = (),
    secrets: SecretValues | None = None,
    observer: CheckObserver | None = None,
    status_sync_period: timedelta = timedelta(seconds=60),
    status_writes_per_second: float = 20.0,
    prober: OwnedProber | None = None,
    closers: Sequence[Closer] = (),
    shard: int | None = None,
    notifications: NotificationSetup | None = None,
    maintenance: MaintenanceCalendar | None = None,
    burn_rules: tuple[BurnRule, ...] = BurnFactors().rules(),
    slo_observer: SloObserver | None = None,
) -> MonitorEngine:
    """The started engine. It owns what it is given (backend, Loki and Prometheus clients,
    prober) and
    closes them on ``close``, once its writes are flushed, after the mode's own ``closers``
    (background work, the Kubernetes client). The mode's ``store_sinks`` write to the store
    too, so they wait for its schema like the notification outbox. Its
    sinks are ``standard_pipeline``'s, each with its own ordered lanes, so one failing delays
    no other and no check."""
    clock = SystemClock()
    if prober is None:
        prober = HttpProber(clock)
    await prober.start()
    if loki is not None:
        await loki.start()
    if prometheus is not None:
        await prometheus.start()
    schema = SchemaGate(backend.migrate)
    delivery: NotificationDelivery | None = None
    gated: list[IncidentSink] = [*store_sinks]
    if notifications is not None:
        await notifications.transport.start()
        delivery = NotificationDelivery(
            outbox=backend.notifications,
            directory=notifications.directory,
            transport=notifications.transport,
            clock=clock,
            owner=notifications.owner,
            secrets=secrets,
            reporter=notifications.reporter,
            observer=notifications.observer,
        )
        gated.append(
            NotificationSink(
                outbox=backend.notifications,
                directory=notifications.directory,
                clock=clock,
                wake=delivery.wake,
            )
        )
    pipeline = standard_pipeline(
        incidents=backend.incidents,
        captures=backend.captures,
        metric_captures=backend.metric_captures,
        resources=resources,
        sinks=sinks,
        store_sinks=gated,
        schema=schema.wait,
    )
    status = StatusWriter(write=resources.patch_monitor_status, rate=status_writes_per_second)
    uptime = UptimeBoard(
        store=backend.incidents,
        maintenance=backend.maintenance,
        clock=clock,
        period=status_sync_period,
    )
    deps = RunnerDeps(
        prober=prober,
        store=backend.incidents,
        resources=resources,
        clock=clock,
        events=pipeline,
        status=status,
        uptime=uptime,
        status_sync_period=status_sync_period,
        observer=observer,
        started_at=clock.now(),
        loki_configured=loki is not None,
        secrets=secrets,
        shard=shard,
        open_incidents=OpenIncidents(store=backend.incidents, resources=resources, clock=clock),
        maintenance=None
        if maintenance is None
        else MaintenanceKeeper(
            calendar=maintenance,
            recorder=MaintenanceRecorder(ledger=backend.maintenance, open_periods=uptime),
        ),
        burn_rules=burn_rules,
        slo_observer=slo_observer,
        burn_notices=None
        if delivery is None
        else BurnNotifier(outbox=backend.notifications, clock=clock, wake=delivery.wake),
    )
    engine = MonitorEngine(
        deps=deps,
        pipeline=pipeline,
        schema=schema,
        status=status,
        uptime=uptime,
        closers=(
            *closers,
            *((notifications.transport.close,) if notifications else ()),
            prober.close,
            *((loki.close,) if loki else ()),
            *((prometheus.close,) if prometheus else ()),
            backend.close,
        ),
        log_capture=log_capture_service(
            backend=backend,
            log_files_dir=log_files_dir,
            source=loki,
            events=pipeline,
            clock=clock,
        ),
        notifications=delivery,
        metrics_capture=MetricsCaptureService(
            MetricsCaptureDeps(store=backend.metric_captures, clock=clock, source=prometheus)
        ),
    )
    engine.start()
    return engine
