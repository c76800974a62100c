"""Which monitors are in maintenance now, and the record of it in the store.

Every replica keeps every MaintenanceWindow (the kopf handlers put and remove them, as they do
the notification channels), and each runner asks at each check whether its monitor is in one:
a dictionary lookup by namespace and a few date computations, no I/O. Entering and leaving
maintenance is written to the store's ledger by a background task, so that a slow store never
holds up a check; a failed write is retried at the monitor's next check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from downtime_operator.domain.maintenance import WindowSpec, active_period, window_status
from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.ports import Clock, StopSignal
from downtime_operator.services.slo.ports import MaintenanceLedger, WindowStatusWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ActiveMaintenance:
    """The window a monitor is in: which one, why, and the period it is in now."""

    window: str
    reason: str
    start: datetime
    end: datetime


class OpenPeriods(Protocol):
    """Whether the store showed an open period for the monitor at its last read (the status
    board); None: not read yet."""

    def in_maintenance_at_read(self, monitor: MonitorRef) -> bool | None: ...


class MaintenanceCalendar:
    """The windows of every watched namespace, by namespace and name, and the labels of every
    monitor (for the windows' status: how many monitors each applies to)."""

    def __init__(self) -> None:
        self._windows: dict[str, dict[str, WindowSpec]] = {}
        self._monitors: dict[MonitorRef, Mapping[str, str]] = {}

    def note_monitor(self, monitor: MonitorRef, *, labels: Mapping[str, str]) -> None:
        self._monitors[monitor] = dict(labels)

    def forget_monitor(self, monitor: MonitorRef) -> None:
        self._monitors.pop(monitor, None)

    def statuses(self, *, now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
        """Each window's ``status`` now: namespace, name, status."""
        found = []
        for namespace, windows in sorted(self._windows.items()):
            for name, spec in sorted(windows.items()):
                matched = sum(
                    1
                    for ref, labels in self._monitors.items()
                    if ref.namespace == namespace and spec.applies_to(name=ref.name, labels=labels)
                )
                found.append(
                    (namespace, name, window_status(spec.schedule, now=now, monitors=matched))
                )
        return found

    def put(self, *, namespace: str, name: str, spec: WindowSpec) -> None:
        self._windows.setdefault(namespace, {})[name] = spec

    def remove(self, *, namespace: str, name: str) -> None:
        self._windows.get(namespace, {}).pop(name, None)

    def active(
        self, monitor: MonitorRef, *, labels: Mapping[str, str], at: datetime
    ) -> ActiveMaintenance | None:
        """The window the monitor is in at ``at`` (the one ending last if several are open)."""
        found: ActiveMaintenance | None = None
        for name, spec in sorted(self._windows.get(monitor.namespace, {}).items()):
            if not spec.applies_to(name=monitor.name, labels=labels):
                continue
            period = active_period(spec.schedule, at=at)
            if period is not None and (found is None or period[1] > found.end):
                found = ActiveMaintenance(
                    window=f"{monitor.namespace}/{name}",
                    reason=spec.reason,
                    start=period[0],
                    end=period[1],
                )
        return found


class MaintenanceRecorder:
    """Keeps the ledger in step with each monitor's maintenance, one write at a time each.

    After a restart the runner does not know what the ledger holds: a monitor found in a
    window opens its period (idempotent), and one found outside closes the period the store
    still shows open (the process stopped during a window) once the board has read it.
    """

    def __init__(self, *, ledger: MaintenanceLedger, open_periods: OpenPeriods) -> None:
        self._ledger = ledger
        self._open_periods = open_periods
        self._recorded: dict[MonitorRef, bool] = {}
        self._ends: dict[MonitorRef, datetime] = {}
        self._writing: dict[MonitorRef, asyncio.Task[None]] = {}

    def note(self, monitor: MonitorRef, *, active: ActiveMaintenance | None, at: datetime) -> None:
        """The monitor was checked at ``at``, in ``active`` (None: in no window)."""
        if active is not None:
            self._ends[monitor] = active.end
        known = self._recorded.get(monitor)
        if known is None and active is None:
            known = self._open_periods.in_maintenance_at_read(monitor)
            if known is None:
                return  # the board has not read the store yet: asked again next check
            self._recorded[monitor] = known
        if known == (active is not None) or monitor in self._writing:
            return
        self._writing[monitor] = asyncio.create_task(
            self._write(monitor, active=active, at=at), name=f"maintenance of {monitor}"
        )

    async def _write(
        self, monitor: MonitorRef, *, active: ActiveMaintenance | None, at: datetime
    ) -> None:
        try:
            if active is not None:
                await self._ledger.open_maintenance(
                    monitor=monitor, at=active.start, reason=active.reason
                )
            else:
                # The period ended with its window, or earlier if the window was removed.
                end = min(at, self._ends.pop(monitor, at))
                await self._ledger.close_maintenance(monitor=monitor, at=end)
        except Exception as exc:
            logger.warning(
                "%s: maintenance not recorded (%s); retried at the next check", monitor, exc
            )
        else:
            self._recorded[monitor] = active is not None
        finally:
            self._writing.pop(monitor, None)

    async def drain(self) -> None:
        """Wait for the writes under way (tests)."""
        while self._writing:
            await asyncio.gather(*self._writing.values(), return_exceptions=True)


class WindowStatusPublisher:
    """Keeps every MaintenanceWindow's ``status`` current (``kubectl get mw``): a status is
    written when it changed, checked every ``period``; a failed write is tried again next
    time (a status is a view, not a record)."""

    def __init__(
        self,
        *,
        calendar: MaintenanceCalendar,
        writer: WindowStatusWriter,
        clock: Clock,
        period: timedelta = timedelta(seconds=15),
    ) -> None:
        self._calendar = calendar
        self._writer = writer
        self._clock = clock
        self._period = period
        self._written: dict[tuple[str, str], dict[str, Any]] = {}

    async def publish(self) -> None:
        for namespace, name, status in self._calendar.statuses(now=self._clock.now()):
            if self._written.get((namespace, name)) == status:
                continue
            try:
                await self._writer.patch_window_status(
                    namespace=namespace, name=name, status=status
                )
            except Exception as exc:
                logger.debug("MaintenanceWindow %s/%s status not written: %s", namespace, name, exc)
                continue
            self._written[(namespace, name)] = status

    async def run(self, *, stop: StopSignal) -> None:
        while not stop.is_set():
            await self.publish()
            await stop.sleep(self._period.total_seconds())


class MaintenanceKeeper:
    """What a runner asks at each check: the window its monitor is in, recorded as it goes."""

    def __init__(self, *, calendar: MaintenanceCalendar, recorder: MaintenanceRecorder) -> None:
        self.calendar = calendar
        self.recorder = recorder

    def check(
        self, monitor: MonitorRef, *, labels: Mapping[str, str], at: datetime
    ) -> ActiveMaintenance | None:
        active = self.calendar.active(monitor, labels=labels, at=at)
        self.recorder.note(monitor, active=active, at=at)
        return active
