"""Writes that must not be lost or reordered, retried with backoff until they succeed.

While PostgreSQL (or the API server) is unreachable, checks go on and their consequences queue
up here; when the dependency is back they are applied in the order they happened. A write that
can never succeed (``permanent`` errors) is reported and dropped so it cannot block the rest.

Order matters only among writes that touch the same things, so writes are submitted to a
*lane* (the incident pipeline uses one per monitor): each lane keeps its order, and a write
retried forever in one lane (a RoleBinding removed from one team's namespace answers 403 until
someone fixes it) does not hold up the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from downtime_operator.services.stop import set_within

Operation = Callable[[], Awaitable[None]]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Item:
    description: str
    operation: Operation


class OrderedRetryQueue:
    def __init__(
        self,
        *,
        name: str,
        permanent: tuple[type[BaseException], ...] = (),
        base_delay: float = 0.2,
        max_delay: float = 10.0,
    ) -> None:
        self._name = name
        self._permanent = permanent
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._lanes: dict[str, deque[_Item]] = {}
        self._draining: set[str] = set()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def pending(self) -> int:
        return sum(len(items) for items in self._lanes.values())

    def pending_by_lane(self) -> dict[str, int]:
        """Writes waiting in each lane: a lane that stays non-empty is stuck (metrics)."""
        return {lane: len(items) for lane, items in self._lanes.items()}

    def submit(
        self,
        description: str,
        operation: Operation,
        *,
        lane: str = "",
    ) -> None:
        """Queue one write after every earlier write of the same lane."""
        self._lanes.setdefault(lane, deque()).append(_Item(description, operation))
        self._idle.clear()
        self._wakeup.set()

    async def drained(self, within: float) -> bool:
        """Wait until every submitted write is applied (graceful shutdown)."""
        return await set_within(self._idle, within)

    async def run(self) -> None:
        """Start one worker per lane with writes waiting, forever; cancelling stops them all.

        Writes cut short by a cancel stay queued, and a later ``run`` starts with them.
        """
        try:
            async with asyncio.TaskGroup() as workers:
                while True:
                    self._wakeup.clear()
                    for lane in self._lanes.keys() - self._draining:
                        self._draining.add(lane)
                        workers.create_task(self._drain(lane), name=f"{self._name} lane {lane!r}")
                    await self._wakeup.wait()
        finally:
            self._draining.clear()

    async def _drain(self, lane: str) -> None:
        items = self._lanes[lane]
        while items:
            await self._apply(items[0])
            items.popleft()
        # No await since the last check: nothing can have joined this lane in between.
        del self._lanes[lane]
        self._draining.discard(lane)
        if not self._lanes:
            self._idle.set()

    async def _apply(self, item: _Item) -> None:
        attempt = 0
        while True:
            try:
                await item.operation()
                if attempt:
                    logger.info(
                        "%s: %s succeeded after %d retries", self._name, item.description, attempt
                    )
                return
            except asyncio.CancelledError:
                raise
            except self._permanent as exc:
                logger.error("%s: %s failed permanently: %s", self._name, item.description, exc)
                return
            except Exception as exc:
                self.failures += 1
                delay = min(self._max_delay, self._base_delay * 2**attempt)
                delay *= random.uniform(0.5, 1.0)
                attempt += 1
                logger.warning(
                    "%s: %s failed (%s: %s); retry %d in %.1fs",
                    self._name,
                    item.description,
                    type(exc).__name__,
                    exc,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
