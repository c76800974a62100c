"""Prometheus series around each outage, run when due and kept in the incident's metrics snapshot.

The plan sink stores a monitor's ``spec.metrics`` with its new incident, due at detection;
resolving makes it due again ``after`` past the end (whoever resolves, see the stores). The
capture loop claims what is due (``DueRuns``), asks Prometheus for each query over the window
so far and records the answers as ``metrics_snapshot.prometheus``: the final run replaces the
first. A Prometheus that cannot answer makes that query's entry an error; the run is recorded
all the same, once, so an outage's evidence never waits on a monitoring system that is down.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.prometheus import (
    DueMetricsCapture,
    MetricQuery,
    MetricsPlan,
    QueryOutcome,
    Series,
    capture_json,
    capture_of,
    failed_query,
    query_step,
)
from downtime_operator.domain.window import CaptureWindow, capture_window
from downtime_operator.services.due_runs import DueRuns
from downtime_operator.services.pipeline import monitor_lane
from downtime_operator.services.ports import Clock, StopSignal

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "Prometheus is not configured (PROMETHEUS_URL)"


class MetricsSourceError(Exception):
    """A query could not be answered; the message (Prometheus' own error) is kept with it."""


class MetricsSource(Protocol):
    async def query_range(
        self, query: str, *, window: CaptureWindow, step_seconds: int
    ) -> tuple[tuple[Series, ...], bool]:
        """The series of ``query`` over ``window`` and whether some were left out; raises
        MetricsSourceError when Prometheus cannot answer (after its retries)."""
        ...


class MetricsCaptureStore(Protocol):
    async def schedule_metrics_capture(
        self, incident_id: UUID, *, plan: MetricsPlan, due_at: datetime
    ) -> None:
        """Store the plan, due at ``due_at``; an incident with a plan keeps it (retries)."""
        ...

    async def claim_due_metrics_capture(
        self, *, now: datetime, lease_until: datetime
    ) -> DueMetricsCapture | None:
        """The most overdue run no one holds, ours until ``lease_until``."""
        ...

    async def record_metrics_capture(
        self, incident_id: UUID, *, capture: dict[str, Any], due_at: datetime
    ) -> bool:
        """Keep ``capture`` as ``metrics_snapshot.prometheus`` if the run is still due at
        ``due_at`` (False: overtaken by the resolution, or already recorded)."""
        ...

    async def release_metrics_capture(self, incident_id: UUID, *, due_at: datetime) -> None:
        """Give a claimed run back (shutdown mid-run)."""
        ...


class MetricsPlanSink:
    """Stores the queries with a new incident. Chained to the store sink, like the log
    capture's plan: written after the row exists and before it can be resolved."""

    name = "metrics plans"
    permanent: tuple[type[BaseException], ...] = (ValueError,)
    lane = staticmethod(monitor_lane)

    def __init__(self, store: MetricsCaptureStore) -> None:
        self._store = store

    async def apply(self, event: IncidentEvent) -> None:
        kinds = (IncidentEventKind.OPENED, IncidentEventKind.RESTORED)
        if event.metrics_plan is None or event.kind not in kinds:
            return
        incident = event.incident
        await self._store.schedule_metrics_capture(
            incident.incident_id, plan=event.metrics_plan, due_at=incident.detected_at
        )


@dataclass(kw_only=True)
class MetricsCaptureDeps:
    store: MetricsCaptureStore
    clock: Clock
    source: MetricsSource | None = None
    """None when Prometheus is not configured: each run records why there are no series."""
    poll_interval: float = 5.0
    lease: timedelta = timedelta(minutes=5)


class MetricsCaptureService:
    def __init__(self, deps: MetricsCaptureDeps) -> None:
        self._deps = deps
        self._due = DueRuns(
            what="metrics capture",
            claim=self._claim,
            execute=self._execute,
            release=self._release,
            incident_of=lambda due: due.incident_id,
            clock=deps.clock,
            lease=deps.lease,
            poll_interval=deps.poll_interval,
        )

    async def run(self, *, stop: StopSignal) -> None:
        await self._due.run(stop=stop)

    async def run_due(self) -> int:
        return await self._due.run_due()

    async def _claim(self, now: datetime, lease_until: datetime) -> DueMetricsCapture | None:
        return await self._deps.store.claim_due_metrics_capture(now=now, lease_until=lease_until)

    async def _release(self, due: DueMetricsCapture) -> None:
        await self._deps.store.release_metrics_capture(due.incident_id, due_at=due.due_at)

    async def _execute(self, due: DueMetricsCapture) -> None:
        now = self._deps.clock.now()
        plan = due.plan
        window = capture_window(
            started_at=due.started_at,
            ended_at=due.ended_at,
            now=now,
            before=plan.before,
            after=plan.after,
        )
        final = due.ended_at is not None and now >= due.ended_at + plan.after
        source = self._deps.source
        if source is None:
            capture = capture_of(window=window, at=now, error=NOT_CONFIGURED, final=final)
        else:
            step = query_step(window)
            outcomes = await asyncio.gather(
                *(_ask(source, query, window, step) for query in plan.queries)
            )
            capture = capture_of(window=window, at=now, outcomes=outcomes, final=final)
        recorded = await self._deps.store.record_metrics_capture(
            due.incident_id, capture=capture_json(capture), due_at=due.due_at
        )
        logger.info(
            "metrics capture of %s: %s",
            due.incident_id,
            _summary(capture.queries) if recorded else "overtaken by a newer schedule",
        )


async def _ask(
    source: MetricsSource, query: MetricQuery, window: CaptureWindow, step: int
) -> QueryOutcome:
    try:
        series, truncated = await source.query_range(query.query, window=window, step_seconds=step)
    except MetricsSourceError as exc:
        logger.warning("Prometheus query %r failed: %s", query.name, exc)
        return failed_query(query, str(exc))
    return QueryOutcome(name=query.name, query=query.query, series=series, truncated=truncated)


def _summary(outcomes: tuple[QueryOutcome, ...]) -> str:
    failed = sum(1 for o in outcomes if o.error is not None)
    series = sum(len(o.series) for o in outcomes)
    return f"{len(outcomes)} queries, {series} series, {failed} failed"
