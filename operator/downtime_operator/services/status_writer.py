"""HealthMonitor status writes, off the check path: coalesced, budgeted, state changes first.

A status is a view, not a record: only its latest version matters. So a monitor has at most one
write waiting here, and a newer status replaces the waiting one (coalescing is the shedding: at
10,000 monitors a refresh that waits long enough is overtaken by the next). Writes that change
what ``kubectl get`` shows (state, incident, conditions) go before the periodic ``lastCheck`` and
uptime refreshes, and are sent at once; refreshes go out within a budget (``rate`` per second
per replica) that urgent writes also draw from while they last, so a mass outage's state
changes take the refreshes' place instead of adding to them. The runner hands its status over
and checks on; it never waits for the API server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.stop import cancelled, set_within

logger = logging.getLogger(__name__)

StatusWrite = Callable[[MonitorRef, Mapping[str, Any]], Awaitable[None]]
FailureHandler = Callable[[], None]


@dataclass
class _Waiting:
    body: dict[str, Any]
    on_failure: FailureHandler


class StatusWriter:
    name = "status"
    """As the pending-writes metric shows it, beside the incident sinks' queues."""

    def __init__(
        self,
        *,
        write: StatusWrite,
        rate: float = 20.0,
        concurrency: int = 8,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._write = write
        self._rate = rate
        self._concurrency = concurrency
        self._monotonic = monotonic
        self._urgent: collections.OrderedDict[MonitorRef, _Waiting] = collections.OrderedDict()
        self._refresh: collections.OrderedDict[MonitorRef, _Waiting] = collections.OrderedDict()
        self._in_flight: set[MonitorRef] = set()
        self._tokens = rate
        self._refilled_at = monotonic()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        """Nothing waiting and nothing in flight."""
        self._idle.set()
        self._urgent_sent = asyncio.Event()
        """No urgent write waiting and nothing in flight: what a shutdown waits for."""
        self._urgent_sent.set()
        self._running: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._urgent) + len(self._refresh)

    def pending_by_lane(self) -> dict[str, int]:
        """Statuses waiting, by namespace (the pending-writes metric)."""
        lanes: collections.Counter[str] = collections.Counter()
        for queue in (self._urgent, self._refresh):
            lanes.update(monitor.namespace for monitor in queue)
        return dict(lanes)

    def offer(
        self,
        monitor: MonitorRef,
        body: Mapping[str, Any],
        *,
        urgent: bool,
        on_failure: FailureHandler,
    ) -> None:
        """Queue the monitor's status; it replaces (and merges into) one still waiting.

        ``on_failure`` is called when the write fails, so the caller sends its whole status
        again next time rather than assuming the API server has it.
        """
        merged: dict[str, Any] = {}
        for queue in (self._urgent, self._refresh):
            waiting = queue.pop(monitor, None)
            if waiting is not None:
                urgent = urgent or queue is self._urgent
                merged = waiting.body
        merged.update(body)
        target = self._urgent if urgent else self._refresh
        target[monitor] = _Waiting(merged, on_failure)
        self._note_progress()
        self._wakeup.set()

    def _note_progress(self) -> None:
        busy = bool(self._in_flight)
        for event, waiting in ((self._idle, self.pending), (self._urgent_sent, self._urgent)):
            if busy or waiting:
                event.clear()
            else:
                event.set()

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now

    def _next(self) -> tuple[MonitorRef, _Waiting] | None:
        """The next write to send now, or None (nothing waiting, or no budget for refreshes).

        A monitor with a write in flight waits for it: two writes of one status must not race.
        """
        self._refill()
        for queue, needs_budget in ((self._urgent, False), (self._refresh, True)):
            if needs_budget and self._tokens < 1:
                continue
            for monitor in queue:
                if monitor not in self._in_flight:
                    # Urgent writes take the budget that is there but run no debt: after a
                    # burst of state changes (a start-up, a mass outage) the refreshes resume
                    # at the budget's pace at once rather than minutes later.
                    self._tokens = max(0.0, self._tokens - 1)
                    return monitor, queue.pop(monitor)
        return None

    def _seconds_to_next_token(self) -> float:
        return max(0.001, (1 - self._tokens) / self._rate)

    def start(self) -> None:
        """Send statuses in the background until ``close``."""
        if self._running is None:
            self._running = asyncio.create_task(self.run(), name="status writer")

    async def close(self, *, drain_timeout: float) -> bool:
        """Send the urgent writes still waiting (bounded), drop the refreshes, stop.

        A refresh is a view the next start rewrites; waiting for the budget to let the
        refreshes through would only hold up the shutdown.
        """
        complete = await set_within(self._urgent_sent, drain_timeout)
        if self.pending:
            logger.info("shutdown: %d status writes not sent", self.pending)
        task, self._running = self._running, None
        await cancelled(task)
        return complete

    async def drained(self, within: float) -> bool:
        """Wait (bounded) until every status handed over is written (shutdown)."""
        return await set_within(self._idle, within)

    async def run(self) -> None:
        """Send statuses until cancelled, ``concurrency`` at a time.

        One loop picks the writes and each is sent in a task of its own: a single waiter for
        new work, rather than a pool of workers all woken by every status handed over.
        """
        slots = asyncio.Semaphore(self._concurrency)
        async with asyncio.TaskGroup() as sending:
            while True:
                await slots.acquire()
                picked = self._next()
                while picked is None:
                    await self._work_or_token()
                    picked = self._next()
                monitor, waiting = picked
                self._in_flight.add(monitor)
                sending.create_task(self._send(monitor, waiting, slots))

    async def _work_or_token(self) -> None:
        """Wait for a status handed over, a write finished, or the budget's next token."""
        self._wakeup.clear()
        out_of_budget = bool(self._refresh) and self._tokens < 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._seconds_to_next_token() if out_of_budget else None):
                await self._wakeup.wait()

    async def _send(self, monitor: MonitorRef, waiting: _Waiting, slots: asyncio.Semaphore) -> None:
        try:
            await self._write(monitor, waiting.body)
        except Exception as exc:
            self.failures += 1
            logger.warning("%s: status write failed: %s", monitor, exc)
            waiting.on_failure()
        finally:
            self._in_flight.discard(monitor)
            slots.release()
            self._note_progress()
            self._wakeup.set()
