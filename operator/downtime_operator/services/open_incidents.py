"""The open incidents of every monitor of a start, read together.

A replica that starts with 10,000 monitors used to ask the store and the API server once per
monitor which incident was open (10,000 queries and 10,000 DowntimeIncident lists), and every
first check waited for its monitor's answers: the last monitors were first checked most of a
minute after the start. Here one store query serves every monitor, and one list serves each
namespace; a runner started later (a new monitor, a daemon restarted in the same process) asks
for itself, as its incidents may have changed since the snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from downtime_operator.domain.models import Incident, MonitorRef
from downtime_operator.services.ports import Clock, IncidentResources, IncidentStore

T = TypeVar("T")

FRESH_FOR = timedelta(seconds=120)
"""How long a snapshot serves monitors starting: kopf starts 10,000 daemons in well under this;
a runner starting later asks for itself."""


class _Snapshot(Generic[T]):
    """One read shared by every caller while it is fresh; a failed read fails its callers
    (each then falls back as it would have alone) and is not retried by the snapshot."""

    def __init__(self, read: Callable[[], Awaitable[T]], *, clock: Clock) -> None:
        self._read = read
        self._clock = clock
        self._task: asyncio.Task[T] | None = None
        self._taken_at: datetime | None = None

    def fresh(self) -> bool:
        return self._taken_at is None or self._clock.now() - self._taken_at < FRESH_FOR

    async def get(self) -> T:
        if self._task is None:
            self._taken_at = self._clock.now()
            self._task = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._task)


class OpenIncidents:
    """Which incident each starting monitor has open, in the store and in the CRs."""

    def __init__(self, *, store: IncidentStore, resources: IncidentResources, clock: Clock) -> None:
        self._store = store
        self._resources = resources
        self._in_store = _Snapshot(self._read_store, clock=clock)
        self._in_resources: dict[str, _Snapshot[dict[MonitorRef, Incident]]] = {}
        self._clock = clock
        self._served_store: set[MonitorRef] = set()
        self._served_resources: set[MonitorRef] = set()

    async def _read_store(self) -> dict[MonitorRef, Incident]:
        return _latest(await self._store.get_ongoing_incidents())

    async def in_store(self, ref: MonitorRef) -> Incident | None:
        """Raises as the store does: the caller then falls back to the CRs."""
        if ref in self._served_store or not self._in_store.fresh():
            return await self._store.get_open_incident(ref)
        self._served_store.add(ref)
        return (await self._in_store.get()).get(ref)

    async def in_resources(self, ref: MonitorRef) -> Incident | None:
        snapshot = self._in_resources.get(ref.namespace)
        if snapshot is None:
            namespace = ref.namespace

            async def read() -> dict[MonitorRef, Incident]:
                return _latest(await self._resources.find_open_incidents(namespace))

            snapshot = self._in_resources[namespace] = _Snapshot(read, clock=self._clock)
        if ref in self._served_resources or not snapshot.fresh():
            return await self._resources.find_open_incident(ref)
        self._served_resources.add(ref)
        return (await snapshot.get()).get(ref)


def _latest(incidents: list[Incident]) -> dict[MonitorRef, Incident]:
    """Each monitor's latest open incident (the per-monitor reads' answer)."""
    latest: dict[MonitorRef, Incident] = {}
    for incident in sorted(incidents, key=lambda i: i.started_at):
        latest[incident.monitor] = incident
    return latest
