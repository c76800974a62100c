"""The engine's moving parts over fakes, on a fake clock: what the unit tests run a runner on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from downtime_operator.services.monitor_runner import RunnerDeps
from downtime_operator.services.pipeline import IncidentPipeline, IncidentSink
from downtime_operator.services.ports import IncidentStore, LogCaptureStore, Prober
from downtime_operator.services.sinks import ShownResources, standard_pipeline
from downtime_operator.services.status_writer import StatusWriter
from downtime_operator.services.uptime_board import UptimeBoard
from tests.unit.fakes import FakeClock


class EngineKit:
    """Runner dependencies with a real pipeline and status writer (retries without waiting,
    a write budget on the fake clock); ``start`` before a run, ``settle`` after it."""

    def __init__(
        self,
        *,
        prober: Prober,
        store: IncidentStore,
        captures: LogCaptureStore,
        resources: ShownResources,
        clock: FakeClock,
        loki_configured: bool = False,
    ) -> None:
        self._store, self._captures, self._resources = store, captures, resources
        self.pipeline = self._pipeline(())
        self.status = StatusWriter(
            write=resources.patch_monitor_status,
            rate=1000,
            monotonic=lambda: clock.now().timestamp(),
        )
        self.uptime = UptimeBoard(store=store, clock=clock, period=timedelta(seconds=60))
        self.deps = RunnerDeps(
            prober=prober,
            store=store,
            resources=resources,
            clock=clock,
            events=self.pipeline,
            status=self.status,
            uptime=self.uptime,
            loki_configured=loki_configured,
        )

    def _pipeline(self, sinks: Sequence[IncidentSink]) -> IncidentPipeline:
        return standard_pipeline(
            incidents=self._store,
            captures=self._captures,
            resources=self._resources,
            sinks=sinks,
            base_delay=0.001,
            max_delay=0.001,
        )

    def add_sinks(self, *sinks: IncidentSink) -> None:
        self.pipeline = self.deps.events = self._pipeline(sinks)

    def start(self) -> None:
        self.pipeline.start()
        self.status.start()

    async def settle(self) -> None:
        """Apply every event and status handed over so far."""
        assert await self.pipeline.close(drain_timeout=5)
        assert await self.status.drained(5)
        assert await self.status.close(drain_timeout=5)

    def failures(self, sink: str) -> int:
        return sum(q.failures for q in self.pipeline.queues if q.name == sink)
