"""Prometheus metrics (listed in the README), fed by the runners' check observer and the
incident pipeline.

Each process builds its own registry (not prometheus_client's global default one), so nothing is
shared between tests or between an operator and an admin API living in the same process unless
the wiring passes the registry on.

Counters count what this process saw since it started (Prometheus' ``increase()`` handles the
reset on restart). With peering only the active replica checks, so only it moves the counters;
sum over replicas in queries. ``severity`` on ``downtime_incidents_total`` is the severity at
detection: an escalation later does not move an incident to another series.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.models import CheckResult, MonitorRef
from downtime_operator.domain.slo import SloFigures
from downtime_operator.services.pipeline import monitor_lane

PREFIX = "gatewayz_"
CHECK_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Health endpoints answer in milliseconds when fine; the top buckets catch timeouts (<= 30s)."""


LAG_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""How late checks start: milliseconds when the engine keeps time, seconds when it does not."""


NOTIFICATION_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
"""Under a second when a channel answers; minutes while one is paced or retried."""


class WriteQueue(Protocol):
    """What the pending-writes metric reads of a queue (the sinks' and the status writer)."""

    @property
    def name(self) -> str: ...

    @property
    def failures(self) -> int: ...

    def pending_by_lane(self) -> dict[str, int]: ...


def lane_namespace(lane: str) -> str:
    """A queue's lanes are per monitor (``namespace/name``) or per namespace: the label is the
    namespace, so one series per namespace, not per monitor, however many monitors wait."""
    return lane.partition("/")[0]


def monitor_label(ref: MonitorRef) -> str:
    """``namespace/name``: monitor names repeat across namespaces."""
    return str(ref)


class OperatorMetrics:
    """The metrics, and the incident sink that keeps the incident series current."""

    name = "metrics"
    permanent: tuple[type[BaseException], ...] = ()
    lane = staticmethod(monitor_lane)

    def __init__(
        self, *, registry: CollectorRegistry | None = None, shard: str | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._exposed: CollectorRegistry | _ShardLabelled = (
            self.registry if shard is None else _ShardLabelled(self.registry, shard=shard)
        )
        self._incidents = Counter(
            f"{PREFIX}downtime_incidents",
            "Incidents opened (detected), by severity at detection and monitor.",
            ["severity", "monitor"],
            registry=self.registry,
        )
        self._downtime = Counter(
            f"{PREFIX}downtime_duration_seconds",
            "Seconds of downtime of resolved incidents (ended_at - started_at), by monitor.",
            ["monitor"],
            registry=self.registry,
        )
        self._ongoing = Gauge(
            f"{PREFIX}downtime_incidents_ongoing",
            "Open incidents (ongoing or investigating) carried by this process, by monitor.",
            ["monitor"],
            registry=self.registry,
        )
        self._severity = Gauge(
            f"{PREFIX}downtime_incident_severity",
            "1 for each open incident carried by this process, labelled with its current"
            " severity (an escalation moves it), by monitor: alerts on critical outages.",
            ["monitor", "severity"],
            registry=self.registry,
        )
        self._severity_shown: dict[str, str] = {}
        """The severity label each monitor's open incident is shown under."""
        self._check_seconds = Histogram(
            f"{PREFIX}health_check_duration_seconds",
            "Latency of health checks that got an answer, by monitor.",
            ["monitor"],
            buckets=CHECK_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._lag = Histogram(
            f"{PREFIX}health_check_lag_seconds",
            "How long after its scheduled time each check started (all monitors of this"
            " process): the engine keeps time while this stays in milliseconds.",
            buckets=LAG_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._notifications = Counter(
            f"{PREFIX}downtime_notifications",
            "Notification attempts that ended, by channel (namespace/name), type (slack,"
            " pagerduty, resend, smtp, webhook) and outcome (sent, retried, failed).",
            ["channel", "type", "outcome"],
            registry=self.registry,
        )
        self._notifications_pending = Gauge(
            f"{PREFIX}downtime_notifications_pending",
            "Notifications in the outbox not yet sent or given up on (all channels).",
            registry=self.registry,
        )
        self._notification_seconds = Histogram(
            f"{PREFIX}downtime_notification_delivery_seconds",
            "Seconds from the incident event (detection, resolution, ...) to its delivery.",
            buckets=NOTIFICATION_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._up = Gauge(
            f"{PREFIX}health_check_up",
            "1 if the monitor's last check passed, 0 if it failed.",
            ["monitor"],
            registry=self.registry,
        )
        self._slo_availability = Gauge(
            f"{PREFIX}downtime_slo_availability",
            "Availability over the monitor's spec.slo window, as a ratio (maintenance and time"
            " before the monitor existed excluded), by monitor.",
            ["monitor"],
            registry=self.registry,
        )
        self._budget_remaining = Gauge(
            f"{PREFIX}downtime_error_budget_remaining_ratio",
            "Share of the error budget left over the spec.slo window (negative once the"
            " objective is missed), by monitor.",
            ["monitor"],
            registry=self.registry,
        )
        self._burn_rate = Gauge(
            f"{PREFIX}downtime_burn_rate",
            "Error rate over the allowed one (1: the budget lasts exactly the window), by"
            " monitor and window (h1, h6, d3).",
            ["monitor", "window"],
            registry=self.registry,
        )

    def slo_observed(self, ref: MonitorRef, figures: SloFigures) -> None:
        """The runners' SloObserver: each monitor's ``status.slo``, once per sync period."""
        monitor = monitor_label(ref)
        self._slo_availability.labels(monitor=monitor).set(figures.availability)
        self._budget_remaining.labels(monitor=monitor).set(figures.budget_remaining_ratio)
        for window, rate in figures.burn_rates.items():
            self._burn_rate.labels(monitor=monitor, window=window).set(rate)

    def check_observed(self, ref: MonitorRef, result: CheckResult, lag: float) -> None:
        """The runners' CheckObserver."""
        self._lag.observe(max(0.0, lag))
        monitor = monitor_label(ref)
        self._up.labels(monitor=monitor).set(1 if result.ok else 0)
        if result.latency_ms is not None:
            self._check_seconds.labels(monitor=monitor).observe(result.latency_ms / 1000)

    async def apply(self, event: IncidentEvent) -> None:
        """The incident sink: opened, carried on, and ended incidents."""
        incident = event.incident
        monitor = monitor_label(incident.monitor)
        kind = event.kind
        if kind is IncidentEventKind.OPENED:
            self._incidents.labels(severity=incident.severity.value, monitor=monitor).inc()
        if kind in (IncidentEventKind.OPENED, IncidentEventKind.RESUMED):
            self._ongoing.labels(monitor=monitor).set(1)
            self._show_severity(monitor, incident.severity.value)
        elif kind is IncidentEventKind.ESCALATED:
            self._show_severity(monitor, incident.severity.value)
        elif kind in (IncidentEventKind.RESOLVED, IncidentEventKind.RELEASED):
            self._ongoing.labels(monitor=monitor).set(0)
            self._show_severity(monitor, None)
            if kind is IncidentEventKind.RESOLVED and incident.duration_seconds is not None:
                self._downtime.labels(monitor=monitor).inc(incident.duration_seconds)

    def _show_severity(self, monitor: str, severity: str | None) -> None:
        """One series per open incident: the old severity's series goes, so a sum or an alert
        over ``severity="critical"`` never counts an incident that moved on or ended."""
        shown = self._severity_shown.pop(monitor, None)
        if shown is not None and shown != severity:
            self._severity.remove(monitor, shown)
        if severity is not None:
            self._severity.labels(monitor=monitor, severity=severity).set(1)
            self._severity_shown[monitor] = severity

    def delivered(
        self, *, channel: str, channel_type: str, outcome: str, latency: float | None
    ) -> None:
        """The notification delivery's observer."""
        self._notifications.labels(channel=channel, type=channel_type, outcome=outcome).inc()
        if latency is not None:
            self._notification_seconds.observe(latency)

    def pending(self, count: int) -> None:
        self._notifications_pending.set(count)

    def watch_queues(self, *queues: WriteQueue) -> None:
        """Expose the write queues, read at scrape time: a stuck lane is worth an alert."""
        self.registry.register(_QueueCollector(queues))

    def text(self) -> bytes:
        """The text exposition format, for a ``/metrics`` route."""
        return generate_latest(self._exposed)


class _ShardLabelled:
    """Every series of a sharded replica carries ``shard``, so a monitor's series say which
    replica checks it and sums over shards stay correct through a pod's restart."""

    def __init__(self, registry: CollectorRegistry, *, shard: str) -> None:
        self._registry = registry
        self._shard = shard

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [
                sample._replace(labels={**sample.labels, "shard": self._shard})
                for sample in metric.samples
            ]
            yield labelled


class _QueueCollector(Collector):
    def __init__(self, queues: tuple[WriteQueue, ...]) -> None:
        self._queues = queues

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            f"{PREFIX}operator_pending_writes",
            "Writes waiting to be applied (retried while their dependency refuses them), by"
            " queue and lane (the namespace the writes are for).",
            labels=["queue", "lane"],
        )
        retries = CounterMetricFamily(
            f"{PREFIX}operator_write_retries",
            "Failed write attempts that were retried, by queue.",
            labels=["queue"],
        )
        for queue in self._queues:
            by_namespace: collections.Counter[str] = collections.Counter()
            for lane, count in queue.pending_by_lane().items():
                by_namespace[lane_namespace(lane)] += count
            for namespace, count in sorted(by_namespace.items()):
                pending.add_metric([queue.name, namespace], count)
            retries.add_metric([queue.name], queue.failures)
        yield pending
        yield retries
