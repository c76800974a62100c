"""The loop behind every capture whose schedule lives in the store (logs, Prometheus series).

The store says what is due and hands it out under a lease, so a capture due while the operator
was down still runs after a restart, and two replicas never run the same one. This loop only
claims, runs and, when stopped mid-run, gives the claim back instead of letting it wait out
its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from downtime_operator.services.ports import Clock, StopSignal

logger = logging.getLogger(__name__)

Claimed = TypeVar("Claimed")

_RELEASE_TIMEOUT = 2.0


@dataclass(frozen=True, kw_only=True)
class DueRuns(Generic[Claimed]):
    what: str
    """For the log: ``log capture``."""
    claim: Callable[[datetime, datetime], Awaitable[Claimed | None]]
    """``(now, lease_until)``: the most overdue run no one holds, now ours; None when none."""
    execute: Callable[[Claimed], Awaitable[None]]
    release: Callable[[Claimed], Awaitable[None]]
    incident_of: Callable[[Claimed], object]
    """The incident a run is for, named when it fails."""
    clock: Clock
    lease: timedelta = timedelta(minutes=5)
    """How long a claimed run is ours; longer than a fetch's deadline plus storing it."""
    batch: int = 20
    """Runs per poll at most, so one poll stays bounded."""
    poll_interval: float = 5.0

    async def run(self, *, stop: StopSignal) -> None:
        """Poll for due runs until stopped; a store outage only delays them."""
        while not stop.is_set():
            ran = 0
            try:
                ran = await self.run_due()
            except Exception as exc:
                logger.warning("%s: due runs not read: %s", self.what, exc)
            if ran < self.batch:
                await stop.sleep(self.poll_interval)

    async def run_due(self) -> int:
        """Claim and run due runs, at most ``batch``; return how many ran."""
        ran = 0
        while ran < self.batch:
            now = self.clock.now()
            claimed = await self.claim(now, now + self.lease)
            if claimed is None:
                break
            ran += 1
            try:
                await self.execute(claimed)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_RELEASE_TIMEOUT):
                        await self.release(claimed)
                raise
            except Exception:
                # The claim runs out and the run is retried then; one bad run must not stop
                # the others.
                logger.exception("%s of %s failed", self.what, self.incident_of(claimed))
        return ran
