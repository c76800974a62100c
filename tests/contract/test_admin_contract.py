"""The admin API's ports on every store: what ``monitor --api-port`` answers over SQLite must be
what the operator's API answers over PostgreSQL (pages, statistics, transitions, audit trail).

The HTTP layer above these ports is tested once, over PostgreSQL (``tests/integration``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from downtime_operator.domain.models import IncidentStatus, Severity
from downtime_operator.domain.statistics import MonitorDowntime
from downtime_operator.services.admin_ports import (
    AuditEntry,
    IncidentAlreadyResolvedError,
    IncidentFilter,
    PageCursor,
)
from tests.contract.stores import T0, Store, ids, make_incident, ports_for, raw_row

pytestmark = pytest.mark.sql_only("the admin API's ports (queries, audit log) are not faked")

H = timedelta(hours=1)
D = timedelta(days=1)


async def test_list_is_newest_first_and_filters(store: Store) -> None:
    queries = ports_for(store).queries
    old = await store.create_incident(make_incident("a", started_at=T0, ended_at=T0 + H))
    mid = await store.create_incident(
        make_incident("b", namespace="team", started_at=T0 + H, severity=Severity.CRITICAL)
    )
    new = await store.create_incident(
        make_incident("c", started_at=T0 + 2 * H, environment="staging")
    )
    page = await queries.list_incidents(filters=IncidentFilter(), limit=10, after=None)
    assert [r["incident_id"] for r in page.incidents] == ids([new, mid, old])
    assert page.next_cursor is None
    first = page.incidents[0]
    assert first["started_at"] == T0 + 2 * H and first["started_at"].tzinfo is not None
    assert (first["monitor_name"], first["environment"], first["status"]) == (
        "c",
        "staging",
        "ongoing",
    )
    for filters, expected in (
        (IncidentFilter(status=IncidentStatus.RESOLVED), [old]),
        (IncidentFilter(severity=Severity.CRITICAL), [mid]),
        (IncidentFilter(environment="staging"), [new]),
        (IncidentFilter(monitor="a"), [old]),
        (IncidentFilter(namespace="team"), [mid]),
        (IncidentFilter(namespace="default", status=IncidentStatus.ONGOING), [new]),
        (IncidentFilter(environment="nowhere"), []),
    ):
        found = await queries.list_incidents(filters=filters, limit=10, after=None)
        assert [r["incident_id"] for r in found.incidents] == ids(expected), filters


async def test_cursor_pages_through_everything_once_with_ties(store: Store) -> None:
    queries = ports_for(store).queries
    created = []
    for i in range(7):  # pairs share a start: the id breaks the tie
        incident = make_incident(f"m{i}", started_at=T0 + (i // 2) * H, ended_at=T0 + 4 * H)
        created.append(await store.create_incident(incident))
    seen: list[uuid.UUID] = []
    cursor: PageCursor | None = None
    for _ in range(10):
        page = await queries.list_incidents(filters=IncidentFilter(), limit=3, after=cursor)
        seen += [r["incident_id"] for r in page.incidents]
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = sorted(created, key=lambda i: (i.started_at, str(i.incident_id)), reverse=True)
    assert seen == ids(expected)


async def test_ongoing_and_details(store: Store) -> None:
    queries = ports_for(store).queries
    await store.create_incident(make_incident("a", started_at=T0, ended_at=T0 + H))
    open_one = await store.create_incident(make_incident("b", started_at=T0 + H))
    looking = await store.create_incident(
        make_incident("c", started_at=T0 + 2 * H, status=IncidentStatus.INVESTIGATING)
    )
    ongoing = await queries.ongoing_incidents()
    assert [r["incident_id"] for r in ongoing] == ids([looking, open_one])
    details = await queries.incident_details(open_one.incident_id)
    assert details is not None
    assert details["incident_id"] == open_one.incident_id
    assert details["detected_at"] == open_one.detected_at
    assert details["logs_captured"] is None and details["log_analysis"] is None
    assert await queries.incident_details(uuid.uuid4()) is None
    await queries.ping()


async def _seed_statistics(store: Store, now: datetime) -> None:
    """The hand-computed fixture of ``tests/integration/test_api_statistics.py``."""
    for incident in (
        make_incident("api", started_at=now - D - H, ended_at=now - D + 2 * H),
        make_incident("api", started_at=now - D + H, ended_at=now - D + 3 * H),
        make_incident("api", started_at=now - H / 2),
        make_incident("web", namespace="team", started_at=now - 3 * D, ended_at=now - 2 * D),
        make_incident(
            "web",
            namespace="team",
            started_at=now - 10 * H,
            ended_at=now - 9 * H,
            severity=Severity.CRITICAL,
        ),
        make_incident("db", started_at=now - D - H, ended_at=now - D),
        make_incident(
            "cache",
            started_at=now - 2 * D,
            status=IncidentStatus.INVESTIGATING,
            severity=Severity.MEDIUM,
        ),
    ):
        # Overlapping incidents of one monitor: written as rows, past the one-open rule.
        await store.create_incident(incident)


async def test_statistics_clip_count_ongoing_and_union_overlaps(store: Store) -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    await _seed_statistics(store, now)
    stats = await ports_for(store).queries.statistics(since=now - D, until=now)
    assert stats.total_incidents == 5
    assert stats.total_downtime_seconds == 7200 + 7200 + 1800 + 3600 + 86400
    assert stats.by_severity == {"high": 3, "critical": 1, "medium": 1}
    assert stats.by_status == {"resolved": 3, "ongoing": 1, "investigating": 1}
    assert stats.resolved_in_period == 3
    assert stats.mttr_seconds == (10800 + 7200 + 3600) / 3
    assert stats.longest_incident_seconds == 86400.0
    assert stats.monitors == [
        MonitorDowntime("default", "api", 3, 10800.0 + 1800.0),
        MonitorDowntime("default", "cache", 1, 86400.0),
        MonitorDowntime("team", "web", 1, 3600.0),
    ]
    month = await ports_for(store).queries.statistics(since=now - 30 * D, until=now)
    assert month.total_incidents == 7
    assert month.mttr_seconds == (10800 + 7200 + 86400 + 3600 + 3600) / 5
    empty = await ports_for(store).queries.statistics(since=now - 40 * D, until=now - 33 * D)
    assert (empty.total_incidents, empty.mttr_seconds, empty.monitors) == (0, None, [])


async def test_resolve_is_guarded_and_appends_notes(store: Store) -> None:
    queries = ports_for(store).queries
    incident = await store.create_incident(make_incident(notes="first"))
    assert await queries.resolve_open_incident(uuid.uuid4(), ended_at=T0, notes=None) is None
    resolved = await queries.resolve_open_incident(
        incident.incident_id, ended_at=T0 - H, notes="by hand"
    )
    assert resolved is not None and resolved.status is IncidentStatus.RESOLVED
    assert resolved.ended_at == T0 and resolved.duration_seconds == 0.0  # clamped to the start
    assert resolved.notes == "first\nby hand"
    with pytest.raises(IncidentAlreadyResolvedError) as refused:
        await queries.resolve_open_incident(incident.incident_id, ended_at=T0 + H, notes="again")
    assert refused.value.incident == resolved
    assert await store.get_incident(incident.incident_id) == resolved


async def test_acknowledge_marks_investigating_and_keeps_it_open(store: Store) -> None:
    queries = ports_for(store).queries
    incident = await store.create_incident(make_incident())
    acknowledged = await queries.acknowledge_open_incident(incident.incident_id, notes="on it")
    assert acknowledged is not None
    assert (acknowledged.status, acknowledged.notes) == (IncidentStatus.INVESTIGATING, "on it")
    assert (await store.get_open_incident(incident.monitor)) == acknowledged
    assert await queries.acknowledge_open_incident(uuid.uuid4(), notes=None) is None
    await store.resolve_incident(incident.incident_id, ended_at=T0 + H)
    with pytest.raises(IncidentAlreadyResolvedError):
        await queries.acknowledge_open_incident(incident.incident_id, notes=None)


async def test_audit_records_the_attempt_then_its_outcome(store: Store) -> None:
    audit = ports_for(store).audit
    incident_id = uuid.uuid4()
    entry = AuditEntry(
        key_name="ops",
        action="resolve",
        incident_id=incident_id,
        parameters={"notes": "by hand"},
        remote_addr="127.0.0.1",
        at=T0,
    )
    first = await audit.record_attempt(entry)
    second = await audit.record_attempt(entry)
    assert second > first
    pending = await raw_row(store, "downtime_audit_log", "audit_id", first)
    assert (pending["outcome"], pending["status_code"], pending["at"]) == ("pending", None, T0)
    await audit.record_outcome(first, outcome="resolved", status_code=200)
    done = await raw_row(store, "downtime_audit_log", "audit_id", first)
    assert (done["key_name"], done["action"], done["outcome"], done["status_code"]) == (
        "ops",
        "resolve",
        "resolved",
        200,
    )
    assert str(done["incident_id"]) == str(incident_id) and done["finished_at"] is not None


async def test_an_incidents_calls_are_read_back_in_order(store: Store) -> None:
    audit = ports_for(store).audit
    incident_id, other_id = uuid.uuid4(), uuid.uuid4()

    def entry(action: str, at: datetime, incident: uuid.UUID | None) -> AuditEntry:
        return AuditEntry(
            key_name="ops",
            action=action,
            incident_id=incident,
            parameters={"notes": "looking"} if action == "acknowledgeIncident" else {},
            remote_addr=None,
            at=at,
        )

    acknowledged = await audit.record_attempt(entry("acknowledgeIncident", T0, incident_id))
    await audit.record_outcome(acknowledged, outcome="success", status_code=200)
    await audit.record_attempt(entry("resolveIncident", T0 + H, other_id))
    await audit.record_attempt(entry("testNotificationChannel", T0 + H, None))
    await audit.record_attempt(entry("resolveIncident", T0 + 2 * H, incident_id))
    calls = await audit.for_incident(incident_id)
    assert [(c.action, c.outcome, c.at, c.actor) for c in calls] == [
        ("acknowledgeIncident", "success", T0, "ops"),
        ("resolveIncident", "pending", T0 + 2 * H, "ops"),
    ]
    assert calls[0].parameters == {"notes": "looking"}
    assert await audit.for_incident(uuid.uuid4()) == []
