"""All monitors of one process: their runners and the shared write queues' workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.log_capture import LogCaptureService
from downtime_operator.services.monitor_runner import MonitorRunner, RunnerDeps
from downtime_operator.services.stop import EventStopSignal

logger = logging.getLogger(__name__)


class MonitorEngine:
    def __init__(
        self,
        *,
        deps: RunnerDeps,
        closers: tuple[Callable[[], Awaitable[None]], ...] = (),
        log_capture: LogCaptureService | None = None,
    ) -> None:
        self.deps = deps
        self.log_capture = log_capture
        """Runs the due log captures, and answers for captured logs (``IncidentLogs``)."""
        self._closers = closers
        self._runners: dict[MonitorRef, MonitorRunner] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._capture_stop = EventStopSignal()
        self._capture_loop: asyncio.Task[None] | None = None

    def runner_for(self, ref: MonitorRef) -> MonitorRunner:
        """The same runner for a monitor whose daemon restarts, so its state carries over."""
        if ref not in self._runners:
            self._runners[ref] = MonitorRunner(ref=ref, deps=self.deps)
        return self._runners[ref]

    def forget(self, ref: MonitorRef) -> None:
        self._runners.pop(ref, None)

    @property
    def runners(self) -> dict[MonitorRef, MonitorRunner]:
        return dict(self._runners)

    def start(self) -> None:
        for queue in (self.deps.store_writes, self.deps.kube_writes):
            self._workers.append(asyncio.create_task(queue.run(), name="write-queue"))

    async def start_log_capture(self) -> None:
        """Start running due captures; separate from ``start`` so the wiring can start it once
        the schema it reads is in place (after the migrations in the store queue)."""
        if self.log_capture is not None and self._capture_loop is None:
            self._capture_loop = asyncio.create_task(
                self.log_capture.run(stop=self._capture_stop), name="log-capture"
            )

    async def close(self, *, drain_timeout: float = 20.0) -> None:
        """Flush pending writes (bounded), then stop workers and release connections.

        The capture loop stops first: a capture in flight may finish (bounded), and its CR
        update joins the writes being flushed; one cut short is given back to the next start.
        """
        await self._stop_capture_loop(drain_timeout)
        for queue in (self.deps.store_writes, self.deps.kube_writes):
            if not await queue.drained(drain_timeout):
                logger.error("shutdown: %d writes still pending and lost", queue.pending)
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for closer in self._closers:
            await closer()

    async def _stop_capture_loop(self, within: float) -> None:
        task, self._capture_loop = self._capture_loop, None
        if task is None:
            return
        self._capture_stop.set()
        try:
            async with asyncio.timeout(within):
                await asyncio.shield(task)
        except TimeoutError:
            logger.warning("shutdown: log capture still running after %.0fs; cancelled", within)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
