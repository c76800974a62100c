"""``IncidentResources`` without Kubernetes, for the standalone monitor and its cleanup.

There are no DowntimeIncident CRs or HealthMonitor statuses to write outside a cluster, so the
events the operator would post become log lines: that is what a user running the monitor on a
VM (journalctl) or a laptop watches. Incidents themselves are in the store.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from downtime_operator.domain.log_capture import CaptureResult
from downtime_operator.domain.models import Incident, LogCaptureState, MonitorRef

logger = logging.getLogger("downtime_operator.monitor")


class LoggingResources:
    def __init__(self) -> None:
        self._states: dict[MonitorRef, str] = {}

    async def upsert_incident(self, incident: Incident) -> None:
        logger.debug("incident %s is %s", incident.incident_id, incident.status)

    async def find_open_incident(self, monitor: MonitorRef) -> Incident | None:
        # Only reached when the store is unreachable at start; there is no second copy here.
        return None

    async def find_open_incidents(self, namespace: str) -> list[Incident]:
        return []

    async def patch_monitor_status(self, monitor: MonitorRef, status: Mapping[str, Any]) -> None:
        # The runner sends the whole status when anything changed; say only what moved.
        state = status.get("state")
        if state is not None and self._states.get(monitor) != state:
            self._states[monitor] = state
            logger.info("%s is %s", monitor.name, state)
        if "uptime" in status:
            logger.debug("%s uptime (%%): %s", monitor.name, status["uptime"])

    async def post_event(
        self, monitor: MonitorRef, *, reason: str, message: str, warning: bool = False
    ) -> None:
        logger.log(logging.WARNING if warning else logging.INFO, "%s: %s", reason, message)

    async def delete_incident(self, incident: Incident) -> None:
        logger.debug("no DowntimeIncident to delete for %s outside Kubernetes", incident.k8s_name)

    async def publish_log_capture(self, incident: Incident, result: CaptureResult) -> None:
        if result.state is LogCaptureState.CAPTURED:
            logger.info(
                "logs of incident %s: %d lines captured%s",
                incident.incident_id,
                len(result.records),
                " (truncated)" if result.truncated else "",
            )
        else:
            logger.warning(
                "logs of incident %s: %s (%s)", incident.incident_id, result.state, result.error
            )
