"""Log capture: when an incident's capture is due, fetch its window, store it, analyse it, show it.

The schedule lives in the store, not here: the runner plans a capture at detection (due at once)
and resolving makes it due again at ``ended_at + after`` (the final capture, which replaces the
first). This loop only claims what is due, so an operator restarted after a due time finishes
the capture, and two replicas never run the same one (see ``LogCaptureStore``).

The same service answers the admin API's questions about captured logs (``IncidentLogs``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from downtime_operator.domain.analysis import analyze_logs_for_errors
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.log_capture import (
    CapturePlan,
    CaptureResult,
    LogQuery,
    PendingCapture,
    StoredCapture,
    capture_view,
    disabled,
    failed,
)
from downtime_operator.domain.log_entries import LogBatch, choose_storage, filter_records
from downtime_operator.domain.models import Incident, LogCaptureState, LogStorage
from downtime_operator.domain.window import CaptureWindow, capture_window
from downtime_operator.services.due_runs import DueRuns
from downtime_operator.services.pipeline import IncidentPublisher
from downtime_operator.services.ports import (
    CaptureFiles,
    Clock,
    LogCaptureStore,
    LogSource,
    LogSourceError,
    StopSignal,
)

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class LogCaptureDeps:
    store: LogCaptureStore
    files: CaptureFiles
    events: IncidentPublisher
    """Where a capture's result is published (``logsCaptured``): in the same pipeline as the
    incident's other events, so its CR update follows the CR's creation."""
    clock: Clock
    source: LogSource | None = None
    """None when Loki is not configured: every capture is recorded as disabled."""
    poll_interval: float = 5.0
    lease: timedelta = timedelta(minutes=5)
    """How long a claimed capture is ours; longer than a fetch's deadline plus storing it."""
    batch: int = 20
    """Captures run per poll at most, so one poll stays bounded."""


class LogCaptureService:
    """Runs due captures (``run``) and implements the ``IncidentLogs`` port."""

    def __init__(self, deps: LogCaptureDeps) -> None:
        self._deps = deps
        self._due = DueRuns(
            what="log capture",
            claim=self._claim,
            execute=self._run_claimed,
            release=self._release,
            incident_of=lambda pending: pending.incident.incident_id,
            clock=deps.clock,
            lease=deps.lease,
            batch=deps.batch,
            poll_interval=deps.poll_interval,
        )

    async def run(self, *, stop: StopSignal) -> None:
        """Poll for due captures until stopped; a store outage only delays them."""
        await self._due.run(stop=stop)

    async def run_due(self) -> int:
        """Claim and run due captures, at most ``batch``; return how many ran."""
        return await self._due.run_due()

    async def _claim(self, now: datetime, lease_until: datetime) -> PendingCapture | None:
        return await self._deps.store.claim_due_log_capture(now=now, lease_until=lease_until)

    async def _run_claimed(self, pending: PendingCapture) -> None:
        incident = pending.incident
        result, path = await self._execute(incident, pending.plan)
        applied = await self._deps.store.record_log_capture(
            incident.incident_id, result=result, due_at=pending.due_at, file_path=path
        )
        if not applied:
            logger.info(
                "log capture of %s overtaken by a newer schedule; not recorded",
                incident.incident_id,
            )
            if path is not None:
                await self._remove(path)
            return
        await self._after_record(incident, result, path, pending.file_path)

    async def _release(self, pending: PendingCapture) -> None:
        await self._deps.store.release_log_capture(
            pending.incident.incident_id, due_at=pending.due_at
        )

    async def _execute(
        self, incident: Incident, plan: CapturePlan
    ) -> tuple[CaptureResult, str | None]:
        """Fetch, analyse and (for a file) write one capture; every failure is a result."""
        deps = self._deps
        now = deps.clock.now()
        if not plan.enabled or plan.query is None:
            return disabled(reason=plan.disabled_reason, at=now), None
        if deps.source is None:
            return disabled(reason="Loki is not configured", at=now), None
        window = capture_window(
            started_at=incident.started_at,
            ended_at=incident.ended_at,
            now=now,
            before=plan.before,
            after=plan.after,
        )
        try:
            batch = await deps.source.fetch(
                LogQuery(query=plan.query, window=window, max_lines=plan.max_lines)
            )
        except LogSourceError as exc:
            logger.warning("log capture of %s failed: %s", incident.incident_id, exc)
            return failed(error=str(exc), at=now, window=window), None
        # Normalised records and their analysis are CPU work (tens of ms for 10,000 lines):
        # a worker thread keeps the event loop, and so the checks, responsive meanwhile.
        result = await asyncio.to_thread(_captured, batch, plan.storage, now, window)
        if result.storage is not LogStorage.FILE:
            return result, None
        try:
            path = await deps.files.write(incident.incident_id, result.records)
        except OSError as exc:
            return failed(error=f"cannot write the log file: {exc}", at=now, window=window), None
        return result, path

    async def _after_record(
        self,
        incident: Incident,
        result: CaptureResult,
        path: str | None,
        old_path: str | None,
    ) -> None:
        """Drop a file the new capture replaced, and publish the result."""
        if result.state is LogCaptureState.CAPTURED and old_path and old_path != path:
            await self._remove(old_path)
        logger.info(
            "log capture of %s: %s%s",
            incident.incident_id,
            result.state.value,
            f", {len(result.records)} lines" if result.state is LogCaptureState.CAPTURED else "",
        )
        self._deps.events.publish(
            IncidentEvent(kind=IncidentEventKind.LOGS_CAPTURED, incident=incident, capture=result)
        )

    async def _remove(self, path: str) -> None:
        try:
            await self._deps.files.remove(path)
        except OSError as exc:
            logger.warning("log file %s not removed: %s", path, exc)

    # -- IncidentLogs ----------------------------------------------------------------------------

    async def get_filtered_logs(
        self,
        incident_id: UUID,
        *,
        level: str | None = None,
        logger_name: str | None = None,
        search: str | None = None,
    ) -> list[dict[str, Any]] | None:
        stored = await self._deps.store.get_log_capture(incident_id)
        if stored is None:
            return None
        records = await self._records(stored)
        return filter_records(records, level=level, logger_name=logger_name, search=search)

    async def get_analysis(self, incident_id: UUID) -> dict[str, Any] | None:
        stored = await self._deps.store.get_log_capture(incident_id)
        if stored is None:
            return None
        if stored.analysis is not None:
            return stored.analysis
        # Logs stored without an analysis (by the seed's capture): analyse them now.
        return analyze_logs_for_errors(await self._records(stored)).to_dict()

    async def capture_now(self, incident_id: UUID) -> dict[str, Any] | None:
        """A capture of the window so far; a capture scheduled for later still runs then."""
        stored = await self._deps.store.get_log_capture(incident_id)
        if stored is None:
            return None
        result, path = await self._execute(stored.incident, stored.plan)
        if await self._deps.store.record_log_capture(
            incident_id, result=result, due_at=None, file_path=path
        ):
            await self._after_record(stored.incident, result, path, stored.file_path)
        elif path is not None:
            await self._remove(path)  # the incident was deleted meanwhile
        return {**capture_view(result), "available": result.available}

    async def _records(self, stored: StoredCapture) -> list[dict[str, Any]]:
        if stored.records is not None:
            return stored.records
        if stored.file_path is None:
            return []
        try:
            return await self._deps.files.read(
                stored.file_path, incident_id=stored.incident.incident_id
            )
        except FileNotFoundError:
            logger.warning(
                "log file %s of %s is missing", stored.file_path, stored.incident.incident_id
            )
            return []


def _captured(
    batch: LogBatch, storage: LogStorage, now: datetime, window: CaptureWindow
) -> CaptureResult:
    records = [entry.to_record() for entry in batch.entries]
    return CaptureResult(
        state=LogCaptureState.CAPTURED,
        captured_at=now,
        window=window,
        records=records,
        available=batch.available,
        truncated=batch.truncated,
        storage=choose_storage(storage, len(records)),
        analysis=analyze_logs_for_errors(records),
    )
