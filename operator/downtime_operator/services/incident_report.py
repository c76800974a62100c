"""Gathers what an incident's report shows from the store: its record, the audit trail of what
people did about it, and the notifications sent. The admin API and ``downtime-operator report``
both ask here, so the two cannot tell a different story."""

from __future__ import annotations

from uuid import UUID

from downtime_operator.domain.report import (
    Delivery,
    IncidentFacts,
    IncidentReport,
    build_report,
)
from downtime_operator.services.admin_ports import AuditLog, IncidentQueries
from downtime_operator.services.outbox import NotificationOutbox


class IncidentReports:
    def __init__(
        self,
        *,
        queries: IncidentQueries,
        audit: AuditLog,
        notifications: NotificationOutbox | None,
    ) -> None:
        self._queries = queries
        self._audit = audit
        self._notifications = notifications

    async def report(self, incident_id: UUID) -> IncidentReport | None:
        """The incident's report; None when there is no such incident."""
        details = await self._queries.incident_details(incident_id)
        if details is None:
            return None
        calls = await self._audit.for_incident(incident_id)
        deliveries = []
        if self._notifications is not None:
            deliveries = [
                Delivery(
                    channel=row.channel,
                    event=row.event,
                    state=row.state,
                    at=row.sent_at or row.updated_at,
                )
                for row in await self._notifications.for_incident(incident_id)
            ]
        return build_report(
            facts=IncidentFacts.from_details(details), calls=calls, deliveries=deliveries
        )
