"""Every monitor's uptime and SLO from one store read per period, not one read per monitor.

At 10,000 monitors, one uptime query per monitor per sync period is 170 queries a second, and
at start-up 10,000 of them at once against a pool of ten: they time out, each runner retried at
its next check, and the storm fed itself. Here one read a period serves every runner of the
process; a failed read is retried with backoff (not by each check), and its warnings are
summarised (the first one, then a count every ``report_every``) instead of one line per
monitor per check.

The read covers the incidents and the maintenance periods of the widest window (an objective's
90 days): two queries a period for every monitor, whatever their number. Each monitor's figures
are computed when its runner asks (once per sync period), as they start no earlier than the
monitor's creation, which only the runner knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import LONGEST_WINDOW, Span, Timeline
from downtime_operator.domain.statistics import DowntimeSpan
from downtime_operator.domain.status import UPTIME_WINDOWS, uptime_windows
from downtime_operator.services.ports import Clock, StopSignal

logger = logging.getLogger(__name__)


class SpanReader(Protocol):
    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> Mapping[MonitorRef, list[DowntimeSpan]]: ...


class MaintenanceReader(Protocol):
    async def maintenance_spans(
        self, *, since: datetime, until: datetime
    ) -> Mapping[MonitorRef, list[Span]]: ...


def describe(exc: BaseException) -> str:
    """The error's type and message: a bare timeout has no message at all."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class UptimeBoard:
    def __init__(
        self,
        *,
        store: SpanReader,
        clock: Clock,
        period: timedelta,
        timeout: float = 10.0,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        report_every: timedelta = timedelta(minutes=5),
        maintenance: MaintenanceReader | None = None,
    ) -> None:
        self._store = store
        self._maintenance_reader = maintenance
        self._clock = clock
        self._period = period
        self._timeout = timeout
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._report_every = report_every
        self._spans: Mapping[MonitorRef, list[DowntimeSpan]] = {}
        self._maintenance: Mapping[MonitorRef, list[Span]] = {}
        self._read_at: datetime | None = None
        """When the last successful read was made; None until one has succeeded."""
        self._failures = 0
        self._first_failure: str = ""
        self._reported_at: datetime | None = None

    def uptime(
        self, monitor: MonitorRef, *, created_at: datetime | None = None
    ) -> dict[str, float] | None:
        """The monitor's uptime windows as of the last read; None before any read succeeded."""
        timeline = self.timeline(monitor, created_at=created_at)
        return None if timeline is None else uptime_windows(timeline)

    def in_maintenance_at_read(self, monitor: MonitorRef) -> bool | None:
        """Whether the monitor had an open maintenance period at the last read (an open one
        runs to the read's instant); None before any read succeeded."""
        if self._read_at is None:
            return None
        periods = self._maintenance.get(monitor)
        if not periods:
            return False
        return periods[-1][1] == self._read_at

    def timeline(
        self, monitor: MonitorRef, *, created_at: datetime | None = None
    ) -> Timeline | None:
        """The monitor's incidents and maintenance as of the last read, for its uptime, SLO
        and burn rates; None before any read succeeded."""
        if self._read_at is None:
            return None
        return Timeline(
            incidents=self._spans.get(monitor, ()),
            maintenance=self._maintenance.get(monitor, ()),
            created_at=created_at,
            now=self._read_at,
        )

    async def refresh(self) -> None:
        """One read for every monitor; raises what the store raised."""
        now = self._clock.now()
        since = now - max(*UPTIME_WINDOWS.values(), LONGEST_WINDOW)
        maintenance: Mapping[MonitorRef, list[Span]] = {}
        async with asyncio.timeout(self._timeout):
            spans = await self._store.incident_spans(since=since, until=now)
            if self._maintenance_reader is not None:
                maintenance = await self._maintenance_reader.maintenance_spans(
                    since=since, until=now
                )
        self._spans, self._maintenance, self._read_at = spans, maintenance, now

    async def run(self, *, stop: StopSignal) -> None:
        """Read every period until stopped; after a failure, retry sooner, backing off."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:
                delay = self._failed(exc)
            else:
                self._recovered()
                delay = self._period.total_seconds()
            await stop.sleep(delay)

    def _failed(self, exc: Exception) -> float:
        self._failures += 1
        # The exponent stops growing once the delay is at its cap (a day of failures would
        # otherwise overflow the float).
        doublings = min(self._failures - 1, 32)
        delay = min(self._retry_max, self._retry_base * 2.0**doublings)
        now = self._clock.now()
        if self._failures == 1:
            self._first_failure = describe(exc)
            self._reported_at = now
            logger.warning("uptime not read: %s; retrying in %.1fs", self._first_failure, delay)
        elif self._reported_at is not None and now - self._reported_at >= self._report_every:
            self._reported_at = now
            logger.warning(
                "uptime still not read after %d attempts (first error %s, last %s)",
                self._failures,
                self._first_failure,
                describe(exc),
            )
        return delay

    def _recovered(self) -> None:
        if self._failures:
            logger.info("uptime read again after %d failed attempts", self._failures)
        self._failures = 0
