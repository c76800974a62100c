"""A store backend: every port of one store, its schema and its close, handed out together.

The choice of store (PostgreSQL or SQLite) is made once, from the DSN (``adapters.stores``);
everything after it works over this interface, so no caller asks which store it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from downtime_operator.services.admin_ports import AuditLog, IncidentQueries, IncidentTransitions
from downtime_operator.services.kube_context import KubeContextStore
from downtime_operator.services.metrics_capture import MetricsCaptureStore
from downtime_operator.services.outbox import NotificationOutbox
from downtime_operator.services.ports import (
    CaptureFiles,
    IncidentStore,
    LogCaptureStore,
    RetentionStore,
)
from downtime_operator.services.slo.ports import MaintenanceLedger


class AdminQueries(IncidentQueries, IncidentTransitions, Protocol):
    """Both stores answer the admin API's reads and guarded transitions with one object."""


class IncidentRecords(IncidentStore, RetentionStore, Protocol):
    """The incident rows: written by the pipeline, read by the runners, aged out by retention."""


class StoreBackend(Protocol):
    @property
    def incidents(self) -> IncidentRecords: ...

    @property
    def captures(self) -> LogCaptureStore: ...

    @property
    def metric_captures(self) -> MetricsCaptureStore: ...

    @property
    def queries(self) -> AdminQueries: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def notifications(self) -> NotificationOutbox: ...

    @property
    def kube_contexts(self) -> KubeContextStore: ...

    @property
    def maintenance(self) -> MaintenanceLedger: ...

    @property
    def description(self) -> str:
        """Where incidents are, for the log (never a password)."""
        ...

    @property
    def shared_with_clusters(self) -> bool:
        """Whether an operator may write here too, so its rows can have DowntimeIncidents
        (PostgreSQL); an embedded file belongs to one standalone monitor."""
        ...

    def capture_files(self, directory: Path) -> CaptureFiles:
        """Captured-log files in ``directory``, sealed at rest as the store's rows are."""
        ...

    async def migrate(self) -> list[str]:
        """Bring the schema up to date; the names of what was applied (idempotent)."""
        ...

    async def close(self) -> None: ...
