"""Uptime for every monitor from one read a period; failed reads back off and are summarised."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest

from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import Span
from downtime_operator.domain.statistics import DowntimeSpan
from downtime_operator.domain.status import UPTIME_WINDOWS
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.uptime_board import UptimeBoard
from tests.unit.fakes import ClockStop, FakeClock
from tests.unit.test_monitor_runner import SPEC, T0, World

API = MonitorRef(namespace="default", name="api")


class FlakySpans:
    """Fails its first ``failures`` reads (a timeout, whose message is empty), then answers."""

    def __init__(self, clock: FakeClock, *, failures: int) -> None:
        self.clock = clock
        self.failures = failures
        self.reads: list[datetime] = []

    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> Mapping[MonitorRef, list[DowntimeSpan]]:
        self.reads.append(self.clock.now())
        if len(self.reads) <= self.failures:
            raise TimeoutError()
        return {API: [(until - timedelta(hours=1), until - timedelta(minutes=30))]}


async def test_a_failed_read_is_retried_with_backoff_then_every_period() -> None:
    clock = FakeClock(T0)
    spans = FlakySpans(clock, failures=4)
    board = UptimeBoard(store=spans, clock=clock, period=timedelta(seconds=60))
    assert board.uptime(API) is None
    await board.run(stop=ClockStop(clock, T0 + timedelta(seconds=200)))
    gaps = [(b - a).total_seconds() for a, b in zip(spans.reads, spans.reads[1:], strict=False)]
    assert gaps[:4] == [1, 2, 4, 8]  # backing off after each failure
    assert set(gaps[4:]) == {60}  # then one read a period
    uptime = board.uptime(API)
    assert uptime is not None and uptime["h24"] == pytest.approx(100 * (1 - 1800 / 86400), 1e-3)
    assert board.uptime(MonitorRef(namespace="default", name="quiet")) == {
        "h24": 100.0,
        "d7": 100.0,
        "d30": 100.0,
    }


async def test_checks_never_read_the_store_for_uptime() -> None:
    """Many checks, many monitors: the store is read only by the board, once a period."""
    world = World(lambda now: False, spec={**SPEC, "interval": "1s", "timeout": "500ms"})
    spans = FlakySpans(world.clock, failures=0)
    world.deps.uptime = board = UptimeBoard(
        store=spans, clock=world.clock, period=timedelta(seconds=60)
    )
    await board.refresh()
    runners = [
        MonitorRunner(ref=MonitorRef(namespace="default", name=f"m-{i}"), deps=world.deps)
        for i in range(20)
    ]
    world.kit.start()
    stop = ClockStop(world.clock, T0 + timedelta(seconds=120))
    for runner in runners:
        await runner.run(read_spec=lambda: SpecSnapshot(spec=world.spec), stop=stop)
        stop.until += timedelta(seconds=120)
    await world.settle()
    assert len(world.prober.checks) >= 20 * 100
    assert len(spans.reads) == 1
    written = [p["uptime"] for p in world.resources.status_patches if "uptime" in p]
    assert len(written) >= 20  # each monitor's status carries it
    assert all(u["d30"] == 100.0 for u in written)  # these monitors had no incident


async def test_a_burst_of_failures_logs_a_bounded_number_of_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(T0)
    spans = FlakySpans(clock, failures=10_000)
    board = UptimeBoard(
        store=spans, clock=clock, period=timedelta(seconds=60), retry_max=1.0, retry_base=0.5
    )
    caplog.set_level(logging.WARNING, logger="downtime_operator.services.uptime_board")
    await board.run(stop=ClockStop(clock, T0 + timedelta(hours=1)))
    assert len(spans.reads) > 3000  # a read a second for an hour, all failing
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) <= 1 + 60 // 5  # the first, then one summary every 5 minutes
    assert lines[0].startswith("uptime not read: TimeoutError;")  # the type, message empty
    assert "attempts (first error TimeoutError, last TimeoutError)" in lines[-1]


class YoungSpans:
    """A monitor down for its last 7 s, and the half-hour outage of ``FlakySpans``."""

    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> Mapping[MonitorRef, list[DowntimeSpan]]:
        return {
            YOUNG: [(until - timedelta(seconds=7), None)],
            API: [(until - timedelta(hours=1), until - timedelta(minutes=30))],
        }


YOUNG = MonitorRef(namespace="default", name="young")


async def test_time_before_the_monitor_existed_does_not_count() -> None:
    """A 9 s old monitor down for 7 s reads 22 %, not 100 % of a day (issue 15)."""
    board = UptimeBoard(store=YoungSpans(), clock=FakeClock(T0), period=timedelta(seconds=60))
    await board.refresh()
    assert board.uptime(YOUNG, created_at=T0 - timedelta(seconds=9)) == {
        key: round(100 * 2 / 9, 3) for key in ("h24", "d7", "d30")
    }
    # An hour-old monitor with a half-hour outage is judged on its one hour.
    assert board.uptime(API, created_at=T0 - timedelta(hours=1)) == {
        "h24": 50.0,
        "d7": 50.0,
        "d30": 50.0,
    }
    # Created this instant: nothing judged yet, nothing lost.
    assert board.uptime(YOUNG, created_at=T0) == {"h24": 100.0, "d7": 100.0, "d30": 100.0}
    # Creation unknown (standalone): the whole windows, as before.
    assert board.uptime(YOUNG) == {
        key: round(100 * (1 - 7 / w.total_seconds()), 3) for key, w in UPTIME_WINDOWS.items()
    }


class Periods:
    """API's maintenance: one closed period, and one still open (running to the read)."""

    async def maintenance_spans(
        self, *, since: datetime, until: datetime
    ) -> Mapping[MonitorRef, list[Span]]:
        return {
            API: [(until - timedelta(hours=3), until - timedelta(hours=2))],
            YOUNG: [(until - timedelta(minutes=10), until)],
        }


async def test_maintenance_is_read_with_the_incidents_and_left_out() -> None:
    board = UptimeBoard(
        store=YoungSpans(),
        maintenance=Periods(),
        clock=FakeClock(T0),
        period=timedelta(seconds=60),
    )
    assert board.in_maintenance_at_read(API) is None  # nothing read yet
    await board.refresh()
    assert board.in_maintenance_at_read(YOUNG) is True
    assert board.in_maintenance_at_read(API) is False
    assert board.in_maintenance_at_read(MonitorRef(namespace="default", name="quiet")) is False
    # YOUNG's 7 s outage fell inside its open maintenance: nothing lost.
    assert board.uptime(YOUNG) == {"h24": 100.0, "d7": 100.0, "d30": 100.0}
    timeline = board.timeline(API)
    assert timeline is not None
    assert timeline.figures(timedelta(hours=4)).maintenance_seconds == 3600
