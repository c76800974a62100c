"""All monitors of one process: their runners and the shared write queues' workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.monitor_runner import MonitorRunner, RunnerDeps

logger = logging.getLogger(__name__)


class MonitorEngine:
    def __init__(
        self,
        *,
        deps: RunnerDeps,
        closers: tuple[Callable[[], Awaitable[None]], ...] = (),
    ) -> None:
        self.deps = deps
        self._closers = closers
        self._runners: dict[MonitorRef, MonitorRunner] = {}
        self._workers: list[asyncio.Task[None]] = []

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

    async def close(self, *, drain_timeout: float = 20.0) -> None:
        """Flush pending writes (bounded), then stop workers and release connections."""
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
