"""The incident pipeline: events from the runner (and the admin API) to every sink.

README, "How it is built", draws it.

Each sink has an ordered retry queue of its own, with one lane per monitor (or what the sink
chooses), so a sink that fails or is slow (PostgreSQL down, the API server refusing one
namespace) delays only itself: the checks and the other sinks go on, and it catches up in order
when its dependency is back. ``publish`` never waits.

A sink whose writes must keep their order with another's (a capture plan is a column of the
incident row, and must be written after the row's creation and before its resolution) is
chained to it: it applies each event right after that sink, in the same lane, and not at all
when that sink refused the event for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from downtime_operator.domain.incident_events import IncidentEvent
from downtime_operator.services.retry_queue import OrderedRetryQueue
from downtime_operator.services.stop import cancelled

logger = logging.getLogger(__name__)

Gate = Callable[[], Awaitable[None]]


class IncidentSink(Protocol):
    """One consequence of incident events.

    ``apply`` is retried with backoff until it returns, unless it raises one of ``permanent``
    (retrying the same write cannot succeed): so it must be idempotent, and it ignores the
    kinds of event it has nothing to do for. Events of one lane reach it in order.
    """

    @property
    def name(self) -> str:
        """The queue's name, as the pending-writes metric shows it."""
        ...

    @property
    def permanent(self) -> tuple[type[BaseException], ...]: ...

    def lane(self, event: IncidentEvent) -> str:
        """Events of one lane are applied in order, one at a time; lanes run side by side."""
        ...

    async def apply(self, event: IncidentEvent) -> None: ...


class IncidentPublisher(Protocol):
    def publish(self, event: IncidentEvent) -> None:
        """Hand the event to every sink; returns at once."""
        ...


def monitor_lane(event: IncidentEvent) -> str:
    """``namespace/name``: one monitor's events in order, monitors side by side."""
    return str(event.incident.monitor)


@dataclass(frozen=True, kw_only=True)
class SinkRoute:
    sink: IncidentSink
    then: tuple[IncidentSink, ...] = ()
    """Sinks chained to this one: each event is applied by ``sink`` and then by each of them,
    in its lanes, before the lane's next event. A retry resumes at the step that failed."""
    gate: Gate | None = None
    """Awaited before the first write (the schema must be in place); events wait meanwhile."""

    @property
    def steps(self) -> tuple[IncidentSink, ...]:
        return (self.sink, *self.then)


@dataclass(frozen=True)
class _Lane:
    route: SinkRoute
    queue: OrderedRetryQueue


class IncidentPipeline:
    def __init__(
        self, routes: Sequence[SinkRoute], *, base_delay: float = 0.2, max_delay: float = 10.0
    ) -> None:
        self._lanes = [
            _Lane(
                route,
                OrderedRetryQueue(
                    name=route.sink.name,
                    permanent=tuple(e for step in route.steps for e in step.permanent),
                    base_delay=base_delay,
                    max_delay=max_delay,
                ),
            )
            for route in routes
        ]
        self._running: asyncio.Task[None] | None = None

    @property
    def queues(self) -> tuple[OrderedRetryQueue, ...]:
        return tuple(lane.queue for lane in self._lanes)

    def publish(self, event: IncidentEvent) -> None:
        for lane in self._lanes:
            self._submit(lane, event)

    @staticmethod
    def _submit(lane: _Lane, event: IncidentEvent) -> None:
        steps = lane.route.steps
        done = 0

        async def apply() -> None:
            nonlocal done
            while done < len(steps):
                await steps[done].apply(event)
                done += 1

        incident = event.incident
        lane.queue.submit(
            f"{event.kind} of incident {incident.incident_id} ({incident.monitor})",
            apply,
            lane=lane.route.sink.lane(event),
        )

    def start(self) -> None:
        """Apply events in the background until ``close``."""
        if self._running is None:
            self._running = asyncio.create_task(self.run(), name="incident pipeline")

    async def close(self, *, drain_timeout: float) -> bool:
        """Apply what is queued (bounded), then stop; a later ``start`` serves what is left."""
        complete = await self.drained(drain_timeout)
        task, self._running = self._running, None
        await cancelled(task)
        return complete

    async def run(self) -> None:
        """Apply events until cancelled; each sink starts once its gate is open."""
        async with asyncio.TaskGroup() as workers:
            for lane in self._lanes:
                workers.create_task(self._work(lane), name=f"sink {lane.queue.name}")

    @staticmethod
    async def _work(lane: _Lane) -> None:
        if lane.route.gate is not None:
            await lane.route.gate()
        await lane.queue.run()

    async def drained(self, within: float) -> bool:
        """Wait (bounded) until every sink applied what it was given; log what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        complete = True
        for lane in self._lanes:
            if not await lane.queue.drained(max(0.0, deadline - loop.time())):
                logger.error(
                    "shutdown: %d %s writes still pending and lost",
                    lane.queue.pending,
                    lane.queue.name,
                )
                complete = False
        return complete
