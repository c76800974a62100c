"""All monitors of one process: their runners, the incident pipeline and the capture loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.early_runs import EarlyRuns
from downtime_operator.services.log_capture import LogCaptureService
from downtime_operator.services.metrics_capture import MetricsCaptureService
from downtime_operator.services.monitor_runner import MonitorRunner, RunnerDeps, SpecSnapshot
from downtime_operator.services.notifications.delivery import NotificationDelivery
from downtime_operator.services.pipeline import IncidentPipeline
from downtime_operator.services.retry_queue import OrderedRetryQueue
from downtime_operator.services.status_writer import StatusWriter
from downtime_operator.services.stop import EventStopSignal, cancelled
from downtime_operator.services.uptime_board import UptimeBoard

logger = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]

STATUS_FLUSH_SECONDS = 5.0
"""Statuses are views the next start rewrites: flushed briefly at shutdown, never waited on."""


class SchemaGate:
    """The store's schema, applied at start and retried until the store answers.

    The store's sinks and the capture loop wait behind it (their writes queue meanwhile), so a
    database that is down at start delays them instead of stopping the process.
    """

    def __init__(self, migrate: Callable[[], Awaitable[list[str]]]) -> None:
        self._migrate = migrate
        self._ready = asyncio.Event()
        self.queue = OrderedRetryQueue(name="schema")
        self.queue.submit("apply migrations", self._apply)

    async def _apply(self) -> None:
        applied = await self._migrate()
        if applied:
            logger.info("applied migrations: %s", ", ".join(applied))
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait(self) -> None:
        await self._ready.wait()

    async def run(self) -> None:
        await self.queue.run()


class MonitorEngine:
    def __init__(
        self,
        *,
        deps: RunnerDeps,
        pipeline: IncidentPipeline,
        schema: SchemaGate,
        status: StatusWriter,
        uptime: UptimeBoard,
        closers: tuple[Closer, ...] = (),
        log_capture: LogCaptureService | None = None,
        notifications: NotificationDelivery | None = None,
        metrics_capture: MetricsCaptureService | None = None,
    ) -> None:
        self.deps = deps
        self.pipeline = pipeline
        self.status = status
        self.uptime = uptime
        self.log_capture = log_capture
        """Runs the due log captures, and answers for captured logs (``IncidentLogs``)."""
        self._schema = schema
        self._closers = closers
        self._runners: dict[MonitorRef, MonitorRunner] = {}
        self.early = EarlyRuns()
        """Runners started from the start-up listing, before kopf's daemons take them over."""
        self._tasks: list[asyncio.Task[None]] = []
        self._capture_stop = EventStopSignal()
        self._capture_loop: asyncio.Task[None] | None = None
        self._uptime_stop = EventStopSignal()
        self.notifications = notifications
        self._delivery_stop = EventStopSignal()
        self.metrics_capture = metrics_capture
        self._metrics_stop = EventStopSignal()
        self.closing = False
        """Set when ``close`` begins: runners stop before their next check."""

    @property
    def queues(self) -> tuple[OrderedRetryQueue | StatusWriter, ...]:
        """Every write queue, for the pending-writes metric."""
        return (self._schema.queue, *self.pipeline.queues, self.status)

    def runner_for(self, ref: MonitorRef) -> MonitorRunner:
        """The same runner for a monitor whose daemon restarts, so its state carries over."""
        if ref not in self._runners:
            self._runners[ref] = MonitorRunner(ref=ref, deps=self.deps)
        return self._runners[ref]

    def start_early(self, ref: MonitorRef, snapshot: SpecSnapshot) -> None:
        self.early.start(self.runner_for(ref), snapshot)

    def forget(self, ref: MonitorRef) -> None:
        self._runners.pop(ref, None)

    @property
    def runners(self) -> dict[MonitorRef, MonitorRunner]:
        return dict(self._runners)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._schema.run(), name="schema"))
        self.status.start()
        self._tasks.append(asyncio.create_task(self._uptime_reads(), name="uptime"))
        self.pipeline.start()
        if self.log_capture is not None:
            self._capture_loop = asyncio.create_task(
                self._captures(self.log_capture), name="log-capture"
            )
        if self.notifications is not None:
            self._tasks.append(
                asyncio.create_task(
                    self._deliveries(self.notifications), name="notification-delivery"
                )
            )
        if self.metrics_capture is not None:
            self._tasks.append(
                asyncio.create_task(
                    self._metrics_captures(self.metrics_capture), name="metrics-capture"
                )
            )

    async def _uptime_reads(self) -> None:
        await self._schema.wait()  # the table may not exist before the migrations
        await self.uptime.run(stop=self._uptime_stop)

    async def _deliveries(self, delivery: NotificationDelivery) -> None:
        await self._schema.wait()  # the outbox is a table the migrations add
        await delivery.run(stop=self._delivery_stop)

    async def _metrics_captures(self, capture: MetricsCaptureService) -> None:
        await self._schema.wait()  # the schedule is in columns the migrations add
        await capture.run(stop=self._metrics_stop)

    async def _captures(self, log_capture: LogCaptureService) -> None:
        # Captures read columns the migrations add: they start once the schema is in place.
        await self._schema.wait()
        await log_capture.run(stop=self._capture_stop)

    async def close(self, *, drain_timeout: float = 20.0) -> None:
        """Flush pending writes (bounded), then stop workers and release connections.

        The capture loop stops first: a capture in flight may finish (bounded), and its CR
        update joins the writes being flushed; one cut short is given back to the next start.
        """
        self.closing = True
        await self.early.close()
        await self._stop_capture_loop(drain_timeout)
        await self.pipeline.close(drain_timeout=drain_timeout)
        await self.status.close(drain_timeout=min(drain_timeout, STATUS_FLUSH_SECONDS))
        self._uptime_stop.set()
        # Undelivered notifications stay in the outbox (their leases run out): nothing to flush.
        self._delivery_stop.set()
        # A run cut short gives its claim back; the next start runs it.
        self._metrics_stop.set()
        for task in self._tasks:
            await cancelled(task)
        for closer in self._closers:
            await closer()

    async def _stop_capture_loop(self, within: float) -> None:
        task, self._capture_loop = self._capture_loop, None
        if task is None:
            return
        self._capture_stop.set()
        try:
            # Still waiting for the schema: no capture is in flight to let finish.
            if self._schema.ready:
                async with asyncio.timeout(within):
                    await asyncio.shield(task)
                return
        except TimeoutError:
            logger.warning("shutdown: log capture still running after %.0fs; cancelled", within)
        await cancelled(task)
