"""Retention: old resolved incidents leave the store, the cluster and the disk together.

For each expired incident the log file and the DowntimeIncident go first and the row last. The
row is the to-do list: if a file or a CR cannot be removed (API server down, permissions), the
row stays and the next run tries again, so a half-finished run never leaves a CR or a file that
nothing points at any more. Open incidents are never candidates, however old.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from downtime_operator.services.ports import (
    Clock,
    ExpiredIncident,
    IncidentResources,
    LogFiles,
    RetentionStore,
    StopSignal,
)

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 90


@dataclass(kw_only=True)
class RetentionReport:
    removed: list[UUID] = field(default_factory=list)
    """Incidents whose row, CR and log file are gone."""
    deferred: list[UUID] = field(default_factory=list)
    """Expired incidents kept for the next run because their CR or file could not be removed."""
    files_removed: int = 0

    def summary(self, *, days: int, keep_critical: bool) -> str:
        kept = " (critical ones kept)" if keep_critical else ""
        text = (
            f"removed {len(self.removed)} resolved incident(s) older than {days} days{kept}"
            f" and {self.files_removed} log file(s)"
        )
        if self.deferred:
            text += f"; {len(self.deferred)} deferred to the next run"
        return text


class RetentionService:
    def __init__(
        self,
        *,
        store: RetentionStore,
        resources: IncidentResources,
        log_files: LogFiles,
        clock: Clock,
    ) -> None:
        self._store = store
        self._resources = resources
        self._log_files = log_files
        self._clock = clock

    async def cleanup(
        self, *, days: int, keep_critical: bool, stop: StopSignal | None = None
    ) -> RetentionReport:
        """One retention run; ``stop`` ends it between incidents (shutdown)."""
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        report = RetentionReport()
        expired = await self._store.find_expired_incidents(
            days=days, keep_critical=keep_critical, now=self._clock.now()
        )
        for item in expired:
            if stop is not None and stop.is_set():
                break
            await self._retire(item, report)
        return report

    async def _retire(self, item: ExpiredIncident, report: RetentionReport) -> None:
        incident = item.incident
        try:
            if item.logs_file_path and await self._log_files.remove(item.logs_file_path):
                report.files_removed += 1
            if incident.k8s_name:  # rows written by the seed have no CR
                await self._resources.delete_incident(incident)
        except Exception as exc:
            logger.warning(
                "retention: incident %s kept for the next run: %s: %s",
                incident.incident_id,
                type(exc).__name__,
                exc,
            )
            report.deferred.append(incident.incident_id)
            return
        if await self._store.delete_resolved_incident(incident.incident_id):
            report.removed.append(incident.incident_id)

    async def run_daily(
        self,
        *,
        stop: StopSignal,
        days: int,
        keep_critical: bool,
        first_run_after: timedelta = timedelta(minutes=1),
        period: timedelta = timedelta(days=1),
        retry_after: timedelta = timedelta(hours=1),
    ) -> None:
        """Run until ``stop``: first shortly after start-up, then every ``period``.

        A failed run (store unreachable) is retried after ``retry_after`` rather than a day.
        """
        await stop.sleep(first_run_after.total_seconds())
        while not stop.is_set():
            delay = period
            try:
                report = await self.cleanup(days=days, keep_critical=keep_critical, stop=stop)
            except Exception as exc:
                logger.warning("retention run failed (%s: %s)", type(exc).__name__, exc)
                delay = retry_after
            else:
                logger.info("retention: %s", report.summary(days=days, keep_critical=keep_critical))
            await stop.sleep(delay.total_seconds())
