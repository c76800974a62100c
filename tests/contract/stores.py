"""The stores under contract, and incidents to feed them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity

Store = PostgresIncidentStore | SqliteIncidentStore
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Stores:
    """Opens instances of one store over the same data: a second instance is a restart."""

    def __init__(self, *, kind: str, opener: Callable[[], Awaitable[Store]]) -> None:
        self.kind = kind
        self._opener = opener
        self._opened: list[Store] = []

    async def open(self) -> Store:
        store = await self._opener()
        self._opened.append(store)
        return store

    async def close(self, store: Store) -> None:
        self._opened.remove(store)
        await store.close()

    async def close_all(self) -> None:
        while self._opened:
            await self._opened.pop().close()


def make_incident(
    name: str = "api",
    *,
    namespace: str = "default",
    started_at: datetime = T0,
    ended_at: datetime | None = None,
    severity: Severity = Severity.HIGH,
    status: IncidentStatus | None = None,
    environment: str = "production",
    **extra: Any,
) -> Incident:
    if status is None:
        status = IncidentStatus.ONGOING if ended_at is None else IncidentStatus.RESOLVED
    return Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace=namespace, name=name),
        k8s_name=f"{name}-{started_at:%Y%m%d-%H%M%S}",
        health_endpoint=f"https://{name}.example/health",
        environment=environment,
        started_at=started_at,
        detected_at=started_at + timedelta(seconds=20),
        severity=severity,
        status=status,
        ended_at=ended_at,
        **extra,
    )


def ids(incidents: list[Incident]) -> list[uuid.UUID]:
    return [i.incident_id for i in incidents]
