"""Monitors checked from one start-up listing until kopf's daemons take them over.

kopf starts one daemon per HealthMonitor from its initial listing, a few hundred per second on
two cores: with 10,000 monitors the last daemon started about 40 s after the process, four
intervals late, and so did its first check. One listing of every monitor at start-up takes a
second or two; each runner starts from it at once (still at its start phase, so the checks are
spread over the first interval). When kopf gets to a monitor, its daemon takes the runner over
between two checks and keeps its schedule: no check is repeated or skipped, and from then on
the daemon's live spec and stop signal rule, as for a monitor created later.

Only a replica that is sure to run its monitors starts them early: with peering, kopf decides
whether this replica is active, so the wiring does not list (see ``run_operator``).
"""

from __future__ import annotations

import asyncio
import logging

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.stop import EventStopSignal, cancelled

logger = logging.getLogger(__name__)

TAKE_OVER_WITHIN = 300.0
"""How long an early run waits for its daemon. kopf starts 10,000 daemons in under a minute
here; a monitor it never starts was deleted (without our finalizer) after the listing, and its
early run stops at this deadline rather than checking a deleted monitor for ever."""


class EarlyRuns:
    def __init__(self, *, take_over_within: float = TAKE_OVER_WITHIN) -> None:
        self._runs: dict[MonitorRef, tuple[asyncio.Task[None], EventStopSignal]] = {}
        self._take_over_within = take_over_within
        self._deadline: asyncio.Task[None] | None = None

    def start(self, runner: MonitorRunner, snapshot: SpecSnapshot) -> None:
        """Run ``runner`` on the listed spec until its daemon takes over (or the deadline)."""
        if runner.ref in self._runs:
            return
        stop = EventStopSignal()
        task = asyncio.create_task(
            runner.run(read_spec=lambda: snapshot, stop=stop), name=f"early:{runner.ref}"
        )
        self._runs[runner.ref] = (task, stop)
        if self._deadline is None:
            self._deadline = asyncio.create_task(self._expire(), name="early-runs-deadline")

    async def take_over(self, ref: MonitorRef) -> bool:
        """Stop the monitor's early run between two checks; whether there was one.

        Waits for a check in flight (bounded by the check's timeout) so that the two loops
        never check at the same time.
        """
        run = self._runs.pop(ref, None)
        if run is None:
            return False
        task, stop = run
        stop.set()
        try:
            await asyncio.shield(task)
        except Exception:
            # The daemon starts afresh: it reloads what the failed loop may have half-loaded.
            logger.exception("%s: the early run failed", ref)
            return False
        return True

    @property
    def running(self) -> int:
        return len(self._runs)

    async def _expire(self) -> None:
        await asyncio.sleep(self._take_over_within)
        if self._runs:
            logger.warning(
                "%d monitors of the start-up listing were never taken over by a daemon"
                " (deleted since?); their early checks stop",
                len(self._runs),
            )
        await self._stop_all()

    async def _stop_all(self) -> None:
        runs, self._runs = self._runs, {}
        for _, stop in runs.values():
            stop.set()
        await asyncio.gather(*(task for task, _ in runs.values()), return_exceptions=True)

    async def close(self) -> None:
        await self._stop_all()
        await cancelled(self._deadline)
