"""The retention service's order of removal and its daily schedule, with fakes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity
from downtime_operator.services.ports import ExpiredIncident
from downtime_operator.services.retention import RetentionService
from tests.unit.fakes import ClockStop, FakeClock, RecordingResources

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def resolved(name: str, *, k8s_name: str | None = None) -> Incident:
    started = NOW - timedelta(days=200)
    return Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace="default", name=name),
        k8s_name=f"{name}-x" if k8s_name is None else k8s_name,
        health_endpoint="http://x/health",
        environment="production",
        started_at=started,
        detected_at=started,
        severity=Severity.HIGH,
        status=IncidentStatus.RESOLVED,
        ended_at=started + timedelta(minutes=1),
    )


class Journal:
    """Every removal, in order, across the store, the cluster and the disk."""

    def __init__(self) -> None:
        self.steps: list[str] = []


class FakeStore:
    def __init__(
        self, journal: Journal, expired: list[ExpiredIncident], *, available: bool = True
    ) -> None:
        self.journal = journal
        self.expired = expired
        self.runs: list[datetime] = []
        self.available = available

    async def find_expired_incidents(
        self, *, days: int, keep_critical: bool, now: datetime
    ) -> list[ExpiredIncident]:
        self.runs.append(now)
        if not self.available:
            raise ConnectionRefusedError("store down")
        return list(self.expired)

    async def delete_resolved_incident(self, incident_id: UUID) -> bool:
        self.journal.steps.append(f"row {incident_id}")
        self.expired = [e for e in self.expired if e.incident.incident_id != incident_id]
        return True


class FakeFiles:
    def __init__(self, journal: Journal, *, broken: bool = False) -> None:
        self.journal = journal
        self.broken = broken

    async def remove(self, path: str) -> bool:
        if self.broken:
            raise PermissionError(path)
        self.journal.steps.append(f"file {path}")
        return True


class JournaledResources(RecordingResources):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    async def delete_incident(self, incident: Incident) -> None:
        self.journal.steps.append(f"cr {incident.k8s_name}")


async def test_file_and_cr_go_before_the_row() -> None:
    journal = Journal()
    with_file = resolved("a")
    seed_row = resolved("b", k8s_name="")  # written by the seed: no CR to delete
    store = FakeStore(
        journal,
        [
            ExpiredIncident(incident=with_file, logs_file_path="/logs/a.json"),
            ExpiredIncident(incident=seed_row),
        ],
    )
    service = RetentionService(
        store=store,
        resources=JournaledResources(journal),
        log_files=FakeFiles(journal),
        clock=FakeClock(NOW),
    )
    report = await service.cleanup(days=90, keep_critical=True)
    assert journal.steps == [
        "file /logs/a.json",
        "cr a-x",
        f"row {with_file.incident_id}",
        f"row {seed_row.incident_id}",
    ]
    assert (report.removed, report.files_removed) == (
        [with_file.incident_id, seed_row.incident_id],
        1,
    )


async def test_a_file_that_cannot_be_removed_keeps_the_row() -> None:
    journal = Journal()
    incident = resolved("a")
    store = FakeStore(journal, [ExpiredIncident(incident=incident, logs_file_path="/logs/a")])
    service = RetentionService(
        store=store,
        resources=JournaledResources(journal),
        log_files=FakeFiles(journal, broken=True),
        clock=FakeClock(NOW),
    )
    report = await service.cleanup(days=90, keep_critical=False)
    assert (report.removed, report.deferred, journal.steps) == ([], [incident.incident_id], [])
    assert "1 deferred to the next run" in report.summary(days=90, keep_critical=False)


class AdvancingStop:
    """Sleeping advances the fake clock; the store is back once a run has failed."""

    def __init__(self, clock: FakeClock, store: FakeStore, *, until: datetime) -> None:
        self.clock = clock
        self.store = store
        self.until = until

    def is_set(self) -> bool:
        return self.clock.now() >= self.until

    async def sleep(self, seconds: float) -> None:
        self.store.available = bool(self.store.runs)
        self.clock.current += timedelta(seconds=seconds)


async def test_runs_daily_and_retries_a_failed_run_sooner() -> None:
    journal = Journal()
    clock = FakeClock(NOW)
    store = FakeStore(journal, [], available=False)
    service = RetentionService(
        store=store,
        resources=JournaledResources(journal),
        log_files=FakeFiles(journal),
        clock=clock,
    )
    stop = AdvancingStop(clock, store, until=NOW + timedelta(days=2, hours=12))
    await service.run_daily(stop=stop, days=90, keep_critical=True)
    minute, hour, day = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
    assert store.runs == [
        NOW + minute,  # first run shortly after start: the store is down
        NOW + minute + hour,  # retried an hour later, not a day
        NOW + minute + hour + day,
        NOW + minute + hour + 2 * day,
    ]


async def test_a_stop_ends_a_run_between_incidents() -> None:
    journal = Journal()
    clock = FakeClock(NOW)
    store = FakeStore(journal, [ExpiredIncident(incident=resolved(n)) for n in "abc"])
    service = RetentionService(
        store=store,
        resources=JournaledResources(journal),
        log_files=FakeFiles(journal),
        clock=clock,
    )
    report = await service.cleanup(days=90, keep_critical=True, stop=ClockStop(clock, NOW))
    assert report.removed == []
    assert len(store.expired) == 3
