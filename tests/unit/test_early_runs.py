"""Runners started from the start-up listing, then taken over by their daemons."""

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.early_runs import EarlyRuns
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.stop import EventStopSignal
from tests.unit.engine_kit import EngineKit
from tests.unit.fakes import ClockStop, FakeClock, MemoryStore, RecordingResources, ScriptedProber

REF = MonitorRef(namespace="default", name="api")
SNAPSHOT = SpecSnapshot(
    spec={"url": "http://127.0.0.1:1/health", "interval": "1s", "timeout": "500ms"}, generation=1
)


class WallClock(FakeClock):
    """Real time: ``EarlyRuns`` stops its loops with real events."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def _kit(clock: FakeClock) -> tuple[EngineKit, ScriptedProber, RecordingResources]:
    prober = ScriptedProber(clock, lambda now: False)
    store = MemoryStore()
    resources = RecordingResources()
    kit = EngineKit(prober=prober, store=store, captures=store, resources=resources, clock=clock)
    return kit, prober, resources


async def test_daemon_takes_over_between_checks_and_keeps_the_schedule() -> None:
    clock = WallClock(datetime.now(UTC))
    kit, prober, resources = _kit(clock)
    kit.start()
    runner = MonitorRunner(ref=REF, deps=kit.deps)
    early = EarlyRuns()
    early.start(runner, SNAPSHOT)
    await asyncio.sleep(0.3)
    assert len(prober.checks) == 1  # checked at once (no start phase without started_at)
    reads = resources.open_reads

    assert await early.take_over(REF)
    assert early.running == 0
    stop = EventStopSignal()
    daemon = asyncio.create_task(runner.run(read_spec=lambda: SNAPSHOT, stop=stop, continuing=True))
    await asyncio.sleep(1.9)
    stop.set()
    await daemon

    assert len(prober.checks) == 3  # at ~0 s, ~1 s, ~2 s: none repeated at the take-over
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(prober.checks)]
    assert all(gap > 0.9 for gap in gaps), gaps
    assert resources.open_reads == reads  # not reloaded
    await early.close()
    await kit.settle()


async def test_no_early_run_means_a_fresh_start() -> None:
    early = EarlyRuns()
    assert not await early.take_over(REF)


async def test_an_early_run_never_taken_over_stops_at_the_deadline() -> None:
    clock = WallClock(datetime.now(UTC))
    kit, prober, _ = _kit(clock)
    kit.start()
    early = EarlyRuns(take_over_within=0.2)
    early.start(MonitorRunner(ref=REF, deps=kit.deps), SNAPSHOT)
    await asyncio.sleep(0.5)
    assert early.running == 0
    checks = len(prober.checks)
    await asyncio.sleep(1.2)
    assert len(prober.checks) == checks
    await early.close()
    await kit.settle()


async def test_continuing_without_a_previous_loop_reloads_and_waits_for_the_phase() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = FakeClock(t0)
    kit, prober, resources = _kit(clock)
    kit.start()
    runner = MonitorRunner(ref=REF, deps=kit.deps)
    stop = ClockStop(clock, t0 + timedelta(seconds=2.5))
    await runner.run(read_spec=lambda: SNAPSHOT, stop=stop, continuing=True)
    assert resources.open_reads == 1
    assert [(at - t0).total_seconds() for at in prober.checks] == [0.0, 1.0, 2.0]
    await kit.settle()
