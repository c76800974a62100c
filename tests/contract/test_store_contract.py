"""One scenario set for every IncidentStore: PostgreSQL, the embedded SQLite file, and the
in-memory fake the services' unit tests use.

What a user sees must not depend on the store: the same incidents, filters, statistics and
retention, the same refusal of a second open incident, and the same outage carried across a
restart. Store-specific behaviour (SQL injection, NUL bytes, migrations) is tested beside each
adapter. The seed's reporting functions exist on the SQL stores only (``SEED``).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.postgres import rows
from downtime_operator.adapters.sqlite import columns
from downtime_operator.domain.evidence import (
    Certificate,
    CheckSample,
    ChecksDuring,
    MetricsSnapshot,
    ServerInfo,
    SnapshotStage,
    latency_summary,
    resolution_snapshot,
    server_info_json,
    snapshot_json,
)
from downtime_operator.domain.log_capture import CapturePlan
from downtime_operator.domain.models import (
    Incident,
    IncidentStatus,
    LogCaptureState,
    MonitorRef,
    Severity,
)
from downtime_operator.domain.statistics import clipped_seconds
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.ports import (
    IncidentStore,
    OpenIncidentExistsError,
    RetentionStore,
)
from downtime_operator.services.retention import RetentionService
from tests.contract.stores import (
    T0,
    AnyStore,
    Store,
    Stores,
    captures_for,
    ids,
    make_incident,
    ports_for,
)
from tests.unit.engine_kit import EngineKit
from tests.unit.fakes import ClockStop, FakeClock, RecordingResources, ScriptedProber

SEED = pytest.mark.sql_only("the seed's reporting functions are beyond the ports (no fake)")


def test_every_store_implements_the_ports(store: AnyStore) -> None:
    ports: tuple[IncidentStore, RetentionStore] = (store, store)  # checked by mypy
    assert all(port is store for port in ports)


def test_both_stores_accept_the_same_fields() -> None:
    """A column added to one store's whitelist or detail view must be added to the other."""

    def names(column_list: str) -> set[str]:
        return {part.strip().split(" AS ")[-1] for part in column_list.split(",")}

    assert set(columns.UPDATABLE) == set(rows.UPDATABLE)
    assert names(columns.INCIDENT_COLUMNS) == names(rows.INCIDENT_COLUMNS)
    assert names(columns.DETAIL_COLUMNS) == names(rows.DETAIL_COLUMNS)


# -- create ------------------------------------------------------------------------------------


async def test_create_round_trips_every_field(store: AnyStore) -> None:
    incident = make_incident(
        error_message="HTTP 503",
        http_status_code=503,
        response_body="<h1>down</h1>",
        failed_checks=3,
        notes="first",
        root_cause="restored from its DowntimeIncident",
    )
    assert await store.create_incident(incident) == incident
    assert await store.get_incident(incident.incident_id) == incident
    assert await store.get_incident(uuid.uuid4()) is None


async def test_create_is_idempotent_on_incident_id(store: AnyStore) -> None:
    incident = make_incident()
    await store.create_incident(incident)
    retry = make_incident(severity=Severity.LOW)
    retry.incident_id = incident.incident_id
    assert await store.create_incident(retry) == incident  # the stored one, untouched
    assert len(await store.get_recent_incidents()) == 1


async def test_what_a_store_returns_is_a_copy(store: AnyStore) -> None:
    created = await store.create_incident(make_incident())
    got = await store.get_incident(created.incident_id)
    resolved = await store.resolve_incident(created.incident_id, ended_at=T0 + timedelta(minutes=1))
    assert got is not None and resolved is not None
    for returned in (created, got, resolved):
        returned.notes = "changed by the caller"
    stored = await store.get_incident(created.incident_id)
    assert stored is not None and stored.notes is None


async def test_create_leaves_the_capture_state_to_the_plan(store: AnyStore) -> None:
    """The runner's copy already shows the planned state; the row takes it from the plan."""
    incident = make_incident(logs_state=LogCaptureState.PENDING)
    assert (await store.create_incident(incident)).logs_state is None
    plan = CapturePlan(enabled=True, query='{app="api"}')
    await captures_for(store).schedule_log_capture(incident.incident_id, plan=plan, due_at=T0)
    stored = await store.get_incident(incident.incident_id)
    assert stored is not None and stored.logs_state is LogCaptureState.PENDING


async def test_a_long_body_is_truncated_alike(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident(response_body="x" * 10_000))
    assert incident.response_body == "x" * rows.RESPONSE_BODY_MAX_CHARS


async def test_naive_datetimes_are_refused(store: AnyStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create_incident(make_incident(started_at=datetime(2026, 1, 1)))


# -- the one-open-incident rule ----------------------------------------------------------------


async def test_second_open_incident_for_a_monitor_is_refused(store: AnyStore) -> None:
    first = await store.create_incident(make_incident())
    with pytest.raises(OpenIncidentExistsError) as caught:
        await store.create_incident(make_incident(started_at=T0 + timedelta(minutes=5)))
    assert caught.value.existing == first
    other_monitor = await store.create_incident(make_incident("other"))
    assert other_monitor.is_open


async def test_a_resolved_incident_may_be_created_beside_the_open_one(store: AnyStore) -> None:
    """Only open incidents are one per monitor; an ended one is stored with its duration."""
    opened = await store.create_incident(make_incident())
    ended = T0 - timedelta(minutes=30)
    past = await store.create_incident(
        make_incident(started_at=ended - timedelta(seconds=90), ended_at=ended)
    )
    assert past.duration_seconds == 90.0
    assert await store.get_open_incident(opened.monitor) == opened
    assert ids(await store.get_recent_incidents()) == ids([opened, past])


async def test_investigating_still_counts_as_open(store: AnyStore) -> None:
    first = await store.create_incident(make_incident())
    await store.update_incident(first.incident_id, {"status": IncidentStatus.INVESTIGATING})
    with pytest.raises(OpenIncidentExistsError):
        await store.create_incident(make_incident())


async def test_racing_opens_for_one_monitor_leave_exactly_one(store: AnyStore) -> None:
    attempts = [make_incident(started_at=T0 + timedelta(seconds=i)) for i in range(4)]
    results = await asyncio.gather(
        *(store.create_incident(i) for i in attempts), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, Incident)]
    refused = [r for r in results if isinstance(r, OpenIncidentExistsError)]
    assert len(created) == 1
    assert len(refused) == 3
    assert all(r.existing == created[0] for r in refused)


async def test_two_store_instances_cannot_both_open(stores: Stores) -> None:
    """Two processes on one database (two replicas, a restart that overlaps the old one)."""
    one, two = await stores.open(), await stores.open()
    first = await one.create_incident(make_incident())
    with pytest.raises(OpenIncidentExistsError) as caught:
        await two.create_incident(make_incident(started_at=T0 + timedelta(seconds=1)))
    assert caught.value.existing == first


async def test_after_resolve_a_new_incident_may_open(store: AnyStore) -> None:
    first = await store.create_incident(make_incident())
    await store.resolve_incident(first.incident_id, ended_at=T0 + timedelta(minutes=2))
    second = await store.create_incident(make_incident(started_at=T0 + timedelta(minutes=5)))
    assert await store.get_open_incident(second.monitor) == second


# -- update ------------------------------------------------------------------------------------


DUE = T0 + timedelta(minutes=10)
LOGS = [{"timestamp": T0, "level": "ERROR", "logger": "db", "message": "boom", "labels": {}}]
UPDATE = {
    "severity": Severity.CRITICAL,
    "failed_checks": 7,
    "http_status_code": 502,
    "logs_capture_status": "pending",
    "logs_capture_due_at": DUE,
    "logs_captured": LOGS,
    "logs_count": 1,
    "logs_truncated": False,
    "logs_file_path": "/var/lib/downtime/logs/x.json",
    "log_analysis": {"error_count": 1, "top_errors": [["boom", 1]]},
    "metrics_snapshot": {"latency_ms": 12.5},
}


async def test_update_writes_whitelisted_fields(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident())
    await store.update_incident(incident.incident_id, UPDATE)
    stored = await store.get_incident(incident.incident_id)
    assert stored is not None
    assert (stored.severity, stored.failed_checks, stored.http_status_code) == (
        Severity.CRITICAL,
        7,
        502,
    )
    assert stored.logs_state is LogCaptureState.PENDING
    captures = captures_for(store)
    capture = await captures.get_log_capture(incident.incident_id)
    assert capture is not None
    assert capture.records == [{**LOGS[0], "timestamp": T0.isoformat()}]
    assert capture.analysis == {"error_count": 1, "top_errors": [["boom", 1]]}
    assert (capture.state, capture.due_at) == (LogCaptureState.PENDING, DUE)
    assert capture.file_path == "/var/lib/downtime/logs/x.json"
    assert (
        await captures.claim_due_log_capture(now=DUE - timedelta(seconds=1), lease_until=DUE)
        is None
    )
    claimed = await captures.claim_due_log_capture(now=DUE, lease_until=DUE + timedelta(minutes=1))
    assert claimed is not None and claimed.incident == stored
    assert (claimed.due_at, claimed.file_path) == (DUE, "/var/lib/downtime/logs/x.json")


async def test_update_of_an_unknown_incident_writes_nothing(store: AnyStore) -> None:
    await store.update_incident(uuid.uuid4(), {"notes": "x"})
    assert await store.get_recent_incidents() == []


@SEED
async def test_details_show_every_written_column(store: Store) -> None:
    incident = await store.create_incident(make_incident())
    await store.update_incident(incident.incident_id, UPDATE)
    details = await store.get_incident_details(incident.incident_id)
    assert details is not None
    assert details["incident_id"] == incident.incident_id
    assert details["started_at"] == T0
    assert details["logs_captured"] == [{**LOGS[0], "timestamp": T0.isoformat()}]
    assert details["log_analysis"] == {"error_count": 1, "top_errors": [["boom", 1]]}
    assert details["metrics_snapshot"] == {"latency_ms": 12.5}
    assert (details["logs_capture_status"], details["logs_capture_due_at"]) == ("pending", DUE)
    assert (details["logs_count"], details["logs_truncated"]) == (1, False)
    assert details["logs_file_path"] == "/var/lib/downtime/logs/x.json"
    assert details["updated_at"] >= details["created_at"]
    assert details["server_info"] is None
    assert await store.get_incident_details(uuid.uuid4()) is None
    assert await store.get_due_log_captures(now=DUE - timedelta(seconds=1)) == []
    assert ids(await store.get_due_log_captures(now=DUE)) == [incident.incident_id]


@pytest.mark.parametrize("field", ["monitor_name", "incident_id", "started_at", "bogus"])
async def test_update_refuses_fields_outside_the_whitelist(store: AnyStore, field: str) -> None:
    incident = await store.create_incident(make_incident())
    with pytest.raises(ValueError, match="not an updatable incident field"):
        await store.update_incident(incident.incident_id, {"notes": "x", field: "y"})
    assert await store.get_incident(incident.incident_id) == incident  # nothing written


@pytest.mark.parametrize(
    "fields", [{"status": "down"}, {"severity": "urgent"}, {"logs_capture_status": "lost"}]
)
async def test_update_validates_enum_values(store: AnyStore, fields: dict[str, Any]) -> None:
    incident = await store.create_incident(make_incident())
    with pytest.raises(ValueError):
        await store.update_incident(incident.incident_id, fields)


async def test_update_of_ended_at_recomputes_duration(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident())
    await store.update_incident(
        incident.incident_id,
        {"status": IncidentStatus.RESOLVED, "ended_at": T0 + timedelta(seconds=90)},
    )
    stored = await store.get_incident(incident.incident_id)
    assert stored is not None
    assert stored.duration_seconds == 90.0


# -- resolve -----------------------------------------------------------------------------------


async def test_resolve_sets_duration_and_appends_notes(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident(notes="auto-detected"))
    ended = T0 + timedelta(minutes=4, seconds=30, microseconds=250_000)
    resolved = await store.resolve_incident(incident.incident_id, ended_at=ended, notes="fixed")
    assert resolved is not None
    assert resolved.status is IncidentStatus.RESOLVED
    assert resolved.ended_at == ended
    assert resolved.duration_seconds == 270.25
    assert resolved.notes == "auto-detected\nfixed"
    assert await store.get_incident(incident.incident_id) == resolved
    assert await store.get_open_incident(incident.monitor) is None


async def test_resolving_twice_changes_nothing(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident())
    first = await store.resolve_incident(incident.incident_id, ended_at=T0 + timedelta(minutes=1))
    again = await store.resolve_incident(
        incident.incident_id, ended_at=T0 + timedelta(hours=1), notes="late"
    )
    assert again == first
    assert first is not None
    assert first.notes is None


async def test_resolve_clamps_an_end_before_the_start(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident())
    resolved = await store.resolve_incident(
        incident.incident_id, ended_at=T0 - timedelta(seconds=5), notes=""
    )
    assert resolved is not None
    assert (resolved.ended_at, resolved.duration_seconds, resolved.notes) == (T0, 0.0, None)


async def test_resolve_unknown_incident_returns_none(store: AnyStore) -> None:
    assert await store.resolve_incident(uuid.uuid4(), ended_at=T0) is None


# -- filters, date range, statistics -----------------------------------------------------------


async def test_ongoing_includes_investigating_not_resolved(store: AnyStore) -> None:
    ongoing = await store.create_incident(make_incident("a"))
    investigating = await store.create_incident(
        make_incident("b", started_at=T0 + timedelta(minutes=1))
    )
    await store.update_incident(investigating.incident_id, {"status": "investigating"})
    await store.create_incident(make_incident("c", ended_at=T0 + timedelta(minutes=1)))
    assert ids(await store.get_ongoing_incidents()) == [
        investigating.incident_id,
        ongoing.incident_id,
    ]


async def test_recent_is_newest_first_and_filters(store: AnyStore) -> None:
    made = [
        make_incident("a", started_at=T0, ended_at=T0 + timedelta(minutes=1)),
        make_incident("b", started_at=T0 + timedelta(hours=1), severity=Severity.CRITICAL),
        make_incident(
            "c", started_at=T0 + timedelta(hours=2), environment="staging", severity=Severity.LOW
        ),
        make_incident(
            "d",
            started_at=T0 + timedelta(hours=3),
            ended_at=T0 + timedelta(hours=4),
            severity=Severity.CRITICAL,
        ),
    ]
    for incident in made:
        await store.create_incident(incident)
    a, b, c, d = (i.incident_id for i in made)

    assert ids(await store.get_recent_incidents()) == [d, c, b, a]
    assert ids(await store.get_recent_incidents(limit=2)) == [d, c]
    assert ids(await store.get_recent_incidents(status=IncidentStatus.RESOLVED)) == [d, a]
    assert ids(await store.get_recent_incidents(severity=Severity.CRITICAL)) == [d, b]
    assert ids(await store.get_recent_incidents(environment="staging")) == [c]
    combined = await store.get_recent_incidents(
        status=IncidentStatus.ONGOING, severity=Severity.CRITICAL, environment="production"
    )
    assert ids(combined) == [b]
    assert await store.get_recent_incidents(environment="x' OR '1'='1") == []
    with pytest.raises(ValueError):
        await store.get_recent_incidents(limit=0)


@SEED
async def test_date_range_returns_overlapping_incidents(store: Store) -> None:
    def at(hour: int, minute: int = 0) -> datetime:
        return T0.replace(hour=hour, minute=minute)

    early = make_incident("early", started_at=at(0), ended_at=at(0, 30))
    one = make_incident("one", started_at=at(1), ended_at=at(2))
    three = make_incident("three", started_at=at(3), ended_at=at(4))
    ongoing = make_incident("ongoing", started_at=at(5))
    for incident in (early, one, three, ongoing):
        await store.create_incident(incident)

    in_range = await store.get_incidents_by_date_range(at(1, 30), at(3, 30))
    assert ids(in_range) == [three.incident_id, one.incident_id]
    assert ids(await store.get_incidents_by_date_range(at(6), at(7))) == [ongoing.incident_id]
    assert ids(await store.get_incidents_by_date_range(at(0, 10), at(0, 20))) == [early.incident_id]
    assert ids(await store.get_incidents_by_date_range(at(2), at(2, 45))) == [one.incident_id]
    assert await store.get_incidents_by_date_range(at(2, 30), at(2, 45)) == []
    everything = await store.get_incidents_by_date_range(at(0), at(23), limit=2)
    assert ids(everything) == [ongoing.incident_id, three.incident_id]
    with pytest.raises(ValueError):
        await store.get_incidents_by_date_range(at(3), at(2))


@SEED
async def test_statistics_clip_to_the_period(store: Store) -> None:
    now = datetime(2026, 3, 31, tzinfo=UTC)  # 30-day period starts 2026-03-01T00:00Z
    fixture = [
        # Crosses the period start: only the hour inside the period counts.
        make_incident(
            "crossing",
            started_at=datetime(2026, 2, 28, 23, tzinfo=UTC),
            ended_at=datetime(2026, 3, 1, 1, tzinfo=UTC),
            severity=Severity.CRITICAL,
        ),
        # Still ongoing: counts up to now.
        make_incident(
            "ongoing", started_at=datetime(2026, 3, 30, 23, tzinfo=UTC), severity=Severity.HIGH
        ),
        # Two overlapping outages of different monitors: 600 s and 1200 s, summed.
        make_incident(
            "c",
            started_at=datetime(2026, 3, 10, 10, 0, tzinfo=UTC),
            ended_at=datetime(2026, 3, 10, 10, 10, tzinfo=UTC),
            severity=Severity.HIGH,
        ),
        make_incident(
            "d",
            started_at=datetime(2026, 3, 10, 10, 5, tzinfo=UTC),
            ended_at=datetime(2026, 3, 10, 10, 25, tzinfo=UTC),
            severity=Severity.MEDIUM,
        ),
        # Entirely before the period: not counted.
        make_incident(
            "old",
            started_at=datetime(2026, 2, 1, tzinfo=UTC),
            ended_at=datetime(2026, 2, 2, tzinfo=UTC),
            severity=Severity.LOW,
        ),
    ]
    for incident in fixture:
        await store.create_incident(incident)

    assert await store.get_incident_statistics(30, now=now) == {
        "total_incidents": 4,
        "total_downtime_seconds": 3600.0 + 3600.0 + 600.0 + 1200.0,
        "average_duration_seconds": 9000.0 / 4,
        "by_severity": {"critical": 1, "high": 2, "medium": 1},
        "by_status": {"resolved": 3, "ongoing": 1},
    }
    one_day = await store.get_incident_statistics(1, now=now)
    assert one_day["total_incidents"] == 1
    assert one_day["total_downtime_seconds"] == 3600.0
    with pytest.raises(ValueError):
        await store.get_incident_statistics(0)


@SEED
async def test_statistics_of_an_empty_period(store: Store) -> None:
    assert await store.get_incident_statistics(7) == {
        "total_incidents": 0,
        "total_downtime_seconds": 0.0,
        "average_duration_seconds": 0.0,
        "by_severity": {},
        "by_status": {},
    }


async def test_every_monitors_downtime_in_one_read_clipped_to_the_window(
    store: AnyStore,
) -> None:
    hour = timedelta(hours=1)
    await store.create_incident(make_incident(started_at=T0 - 2 * hour, ended_at=T0 - hour))
    await store.create_incident(make_incident(started_at=T0 + hour, ended_at=T0 + 2 * hour))
    await store.create_incident(make_incident(started_at=T0 + 3 * hour))
    await store.create_incident(make_incident("other", started_at=T0, ended_at=T0 + hour))
    await store.create_incident(
        make_incident("old", started_at=T0 - 5 * hour, ended_at=T0 - 4 * hour)
    )
    await store.create_incident(
        make_incident("api", namespace="team-b", started_at=T0 + 4 * hour)  # after the window
    )
    since = T0 - 90 * timedelta(minutes=1)
    until = T0 + 3 * hour + 10 * timedelta(minutes=1)
    by_monitor = await store.incident_spans(since=since, until=until)
    assert set(by_monitor) == {
        MonitorRef(namespace="default", name="api"),
        MonitorRef(namespace="default", name="other"),
    }
    assert by_monitor[MonitorRef(namespace="default", name="other")] == [(T0, T0 + hour)]
    spans = by_monitor[MonitorRef(namespace="default", name="api")]
    assert sorted(spans, key=lambda s: s[0]) == [
        (T0 - 2 * hour, T0 - hour),
        (T0 + hour, T0 + 2 * hour),
        (T0 + 3 * hour, None),
    ]
    seconds = sum(clipped_seconds(s, since=since, until=until) for s in spans)
    assert seconds == (30 + 60 + 10) * 60


# -- cleanup and retention ---------------------------------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)  # 90 days before: 2026-03-03
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def retention_fixture() -> dict[str, Incident]:
    return {
        "old": make_incident("old", started_at=LONG_AGO, ended_at=LONG_AGO + timedelta(hours=1)),
        "old-critical": make_incident(
            "old-critical",
            started_at=LONG_AGO,
            ended_at=LONG_AGO + timedelta(hours=1),
            severity=Severity.CRITICAL,
        ),
        "old-ongoing": make_incident("old-ongoing", started_at=datetime(2025, 12, 1, tzinfo=UTC)),
        "old-investigating": make_incident(
            "old-investigating",
            started_at=datetime(2025, 11, 1, tzinfo=UTC),
            status=IncidentStatus.INVESTIGATING,
        ),
        "recent": make_incident(
            "recent",
            started_at=datetime(2026, 5, 1, tzinfo=UTC),
            ended_at=datetime(2026, 5, 1, 1, tzinfo=UTC),
        ),
        # Began long ago but ended inside the retention window: kept.
        "long": make_incident(
            "long", started_at=LONG_AGO, ended_at=datetime(2026, 3, 10, tzinfo=UTC)
        ),
    }


async def _create_all(store: AnyStore, incidents: dict[str, Incident]) -> None:
    for incident in incidents.values():
        await store.create_incident(incident)


@SEED
async def test_cleanup_deletes_only_old_resolved_incidents(store: Store) -> None:
    made = retention_fixture()
    await _create_all(store, made)

    deleted = await store.cleanup_old_incidents(90, keep_critical=True, now=NOW)
    assert ids(deleted) == [made["old"].incident_id]
    assert await store.get_incident(made["old"].incident_id) is None

    deleted = await store.cleanup_old_incidents(90, keep_critical=False, now=NOW)
    assert ids(deleted) == [made["old-critical"].incident_id]
    remaining = {i.incident_id for i in await store.get_recent_incidents()}
    assert remaining == {
        made[name].incident_id for name in ("old-ongoing", "old-investigating", "recent", "long")
    }
    with pytest.raises(ValueError):
        await store.cleanup_old_incidents(0)


async def _with_log_files(
    store: AnyStore, made: dict[str, Incident], folder: Path
) -> dict[str, Path]:
    """Give every incident a captured-log file, as file storage does for large captures."""
    files = {}
    for name, incident in made.items():
        path = folder / f"{incident.incident_id}.json"
        path.write_text("[]")
        await store.update_incident(incident.incident_id, {"logs_file_path": str(path)})
        files[name] = path
    return files


def retention_at_now(
    store: AnyStore, *, resources: RecordingResources, log_dir: Path
) -> RetentionService:
    """Retention as the operator runs it, at ``NOW``, over this store."""
    return RetentionService(
        store=store,
        resources=resources,
        log_files=LocalLogFiles(directory=log_dir),
        clock=FakeClock(NOW),
    )


@pytest.mark.parametrize("keep_critical", [True, False])
async def test_retention_removes_rows_crs_and_log_files_together(
    store: AnyStore, tmp_path: Path, keep_critical: bool
) -> None:
    made = retention_fixture()
    await _create_all(store, made)
    files = await _with_log_files(store, made, tmp_path)
    resources = RecordingResources()
    for incident in made.values():
        await resources.upsert_incident(incident)
    retention = retention_at_now(store, resources=resources, log_dir=tmp_path)

    report = await retention.cleanup(days=90, keep_critical=keep_critical)

    gone = {"old"} if keep_critical else {"old", "old-critical"}
    assert set(report.removed) == {made[name].incident_id for name in gone}
    assert (report.files_removed, report.deferred) == (len(gone), [])
    for name, incident in made.items():
        kept = name not in gone
        assert (await store.get_incident(incident.incident_id) is not None) is kept, name
        assert files[name].exists() is kept, name
        assert (incident.k8s_name in resources.incidents) is kept, name
    again = await retention.cleanup(days=90, keep_critical=keep_critical)
    assert (again.removed, again.files_removed) == ([], 0)


class _ApiServerDown(RecordingResources):
    async def delete_incident(self, incident: Incident) -> None:
        raise ConnectionRefusedError("API server down")


async def test_retention_keeps_the_row_until_its_cr_is_gone(
    store: AnyStore, tmp_path: Path
) -> None:
    """The row is the to-do list: a CR that could not be deleted is retried by the next run."""
    made = retention_fixture()
    await _create_all(store, made)
    files = await _with_log_files(store, made, tmp_path)
    old = made["old"]
    down = retention_at_now(store, resources=_ApiServerDown(), log_dir=tmp_path)
    report = await down.cleanup(days=90, keep_critical=True)
    assert (report.removed, report.deferred) == ([], [old.incident_id])
    assert await store.get_incident(old.incident_id) is not None

    resources = RecordingResources()
    await resources.upsert_incident(old)
    up = retention_at_now(store, resources=resources, log_dir=tmp_path)
    report = await up.cleanup(days=90, keep_critical=True)
    assert report.removed == [old.incident_id]
    assert report.files_removed == 0  # the first run already removed it
    assert not files["old"].exists()
    assert resources.incidents == {}


async def test_only_resolved_rows_are_ever_deleted(store: AnyStore) -> None:
    ongoing = await store.create_incident(make_incident(started_at=LONG_AGO))
    assert not await store.delete_resolved_incident(ongoing.incident_id)
    assert not await store.delete_resolved_incident(uuid.uuid4())
    await store.resolve_incident(ongoing.incident_id, ended_at=LONG_AGO + timedelta(hours=1))
    assert await store.delete_resolved_incident(ongoing.incident_id)
    assert await store.get_incident(ongoing.incident_id) is None


# -- restart -----------------------------------------------------------------------------------

SPEC = {
    "url": "http://127.0.0.1:1/health",
    "interval": "60s",
    "timeout": "5s",
    "retryInterval": "10s",
    "failureThreshold": 3,
}


async def _run_monitor(
    store: AnyStore, *, clock: FakeClock, prober: ScriptedProber, until: datetime
) -> None:
    """One life of the monitor's runner on ``store``, from reload to a drained shutdown."""
    kit = EngineKit(
        prober=prober,
        store=store,
        captures=captures_for(store),
        resources=RecordingResources(),
        clock=clock,
    )
    kit.start()
    runner = MonitorRunner(ref=MonitorRef(namespace="default", name="api"), deps=kit.deps)
    await runner.run(read_spec=lambda: SpecSnapshot(spec=SPEC), stop=ClockStop(clock, until))
    await kit.settle()


async def test_an_outage_across_a_restart_stays_one_incident(stores: Stores) -> None:
    clock = FakeClock(T0)
    prober = ScriptedProber(clock, lambda now: now < T0 + timedelta(seconds=200))

    before = await stores.open()
    await _run_monitor(before, clock=clock, prober=prober, until=T0 + timedelta(seconds=100))
    [opened] = await before.get_ongoing_incidents()
    await stores.close(before)  # the process stops with the incident open

    after = await stores.open()
    assert await after.get_open_incident(opened.monitor) == opened  # reloaded from the store
    await _run_monitor(after, clock=clock, prober=prober, until=T0 + timedelta(seconds=300))

    [incident] = await after.get_recent_incidents()
    assert incident.incident_id == opened.incident_id
    assert incident.status is IncidentStatus.RESOLVED
    assert (incident.started_at, incident.ended_at) == (T0, T0 + timedelta(seconds=200))
    assert incident.duration_seconds == 200.0


async def test_retention_removes_only_capture_files_of_its_directory(
    store: AnyStore, tmp_path: Path
) -> None:
    """A row pointing outside LOG_FILES_DIR (restored dump, hand edit) deletes no foreign file."""
    made = retention_fixture()
    await _create_all(store, made)
    captures = tmp_path / "captures"
    captures.mkdir()
    foreign = tmp_path / "precious.json"
    foreign.write_text("[]")
    not_json = captures / "notes.txt"
    not_json.write_text("keep")
    await store.update_incident(made["old"].incident_id, {"logs_file_path": str(foreign)})
    await store.update_incident(made["old-critical"].incident_id, {"logs_file_path": str(not_json)})
    escape = captures / ".." / "precious.json"
    await store.update_incident(made["recent"].incident_id, {"logs_file_path": str(escape)})
    retention = retention_at_now(store, resources=RecordingResources(), log_dir=captures)
    report = await retention.cleanup(days=90, keep_critical=False)
    assert report.files_removed == 0 and report.deferred == []
    assert foreign.exists() and not_json.exists()
    assert await store.get_incident(made["old"].incident_id) is None  # the row still goes


# -- evidence: the metrics snapshot and server info ---------------------------------------------

BEFORE = tuple(
    CheckSample(at=T0 - timedelta(minutes=20 - i), ok=True, status_code=200, latency_ms=4.25 + i)
    for i in range(20)
)
STREAK = tuple(
    CheckSample(at=T0 + timedelta(seconds=10 * i), ok=False, error="connection refused")
    for i in range(3)
)
SNAPSHOT = MetricsSnapshot(
    stage=SnapshotStage.DETECTION,
    checks_before=BEFORE,
    latency_before=latency_summary(BEFORE, until=T0),
    during=ChecksDuring(checks=3, failures=3, first=STREAK),
)
SERVER = ServerInfo(
    addresses=("127.0.0.1", "::1"),
    http_version="HTTP/2.0",
    certificate=Certificate(
        subject="CN=api.example", issuer="CN=Test CA,O=Example", not_after=T0 + timedelta(days=30)
    ),
    headers={"Server": "envoy", "X-Request-Id": "abc-1", "Retry-After": "30"},
    operator_instance="downtime-operator-7d9f-x2",
    operator_version="0.1.0",
    problems=("address lookup failed: no answer within 2s",),
)


async def test_the_evidence_round_trips(store: AnyStore) -> None:
    incident = make_incident(metrics_snapshot=SNAPSHOT, server_info=SERVER)
    assert await store.create_incident(incident) == incident
    assert await store.get_incident(incident.incident_id) == incident
    assert await store.get_open_incident(incident.monitor) == incident
    assert await store.get_ongoing_incidents() == [incident]
    without = await store.create_incident(make_incident("other"))
    assert (without.metrics_snapshot, without.server_info) == (None, None)


async def test_the_snapshot_completed_at_resolution_is_written(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident(metrics_snapshot=SNAPSHOT))
    final = resolution_snapshot(
        SNAPSHOT,
        during=ChecksDuring(checks=31, failures=30, first=STREAK, last=(BEFORE[0],)),
        started_at=T0,
    )
    await store.update_incident(incident.incident_id, {"metrics_snapshot": snapshot_json(final)})
    resolved = await store.resolve_incident(incident.incident_id, ended_at=T0 + timedelta(hours=1))
    assert resolved is not None and resolved.metrics_snapshot == final
    assert (await store.get_recent_incidents())[0].metrics_snapshot == final


@SEED
async def test_details_show_the_evidence_as_json(store: Store) -> None:
    incident = await store.create_incident(
        make_incident(metrics_snapshot=SNAPSHOT, server_info=SERVER)
    )
    # The store's view and the admin API's (its incident detail) alike.
    for details in (
        await store.get_incident_details(incident.incident_id),
        await ports_for(store).queries.incident_details(incident.incident_id),
    ):
        assert details is not None
        assert details["metrics_snapshot"] == snapshot_json(SNAPSHOT)
        assert details["server_info"] == server_info_json(SERVER)
        assert details["server_info"]["certificate"]["not_after"] == "2026-04-09T12:00:00Z"


async def test_evidence_is_carried_across_a_restart(stores: Stores) -> None:
    """Detected by one process, resolved by the next: the snapshot is completed, not lost."""
    clock = FakeClock(T0)
    prober = ScriptedProber(
        clock, lambda now: T0 + timedelta(minutes=30) <= now < T0 + timedelta(minutes=35)
    )
    prober.server = SERVER
    before = await stores.open()
    await _run_monitor(before, clock=clock, prober=prober, until=T0 + timedelta(minutes=32))
    [opened] = await before.get_ongoing_incidents()
    await stores.close(before)

    after = await stores.open()
    await _run_monitor(after, clock=clock, prober=prober, until=T0 + timedelta(minutes=40))
    incident = await after.get_incident(opened.incident_id)
    assert incident is not None and incident.status is IncidentStatus.RESOLVED
    assert incident.server_info == opened.server_info == SERVER
    assert opened.metrics_snapshot is not None and incident.metrics_snapshot is not None
    assert len(opened.metrics_snapshot.checks_before) == 20
    assert incident.metrics_snapshot.checks_before == opened.metrics_snapshot.checks_before
    assert incident.metrics_snapshot.stage is SnapshotStage.RESOLUTION
    during = incident.metrics_snapshot.during
    assert during.failures == incident.failed_checks
    assert during.checks == during.failures + 1
