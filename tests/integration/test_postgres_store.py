"""PostgresIncidentStore against a real PostgreSQL (one migrated database per module).

What every store must do is in ``tests/contract`` (run on PostgreSQL too); here only what is
PostgreSQL's own: concurrent retries, NUL bytes, values that look like SQL, and the variants
of the shared scenarios that read the rows directly.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from tests.contract.stores import T0, ids, make_incident

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.postgres.rows import RESPONSE_BODY_MAX_CHARS
from downtime_operator.domain.models import IncidentStatus, MonitorRef, Severity
from downtime_operator.services.ports import IncidentStore, OpenIncidentExistsError

INJECTION = "'; DROP TABLE downtime_incidents; --"


def test_satisfies_the_port(store: PostgresIncidentStore) -> None:
    port: IncidentStore = store  # checked by mypy too
    assert port is store


# -- create ------------------------------------------------------------------------------------


async def test_concurrent_retries_of_one_create_agree(store: PostgresIncidentStore) -> None:
    incident = make_incident()
    results = await asyncio.gather(*(store.create_incident(incident) for _ in range(4)))
    assert all(r == incident for r in results)
    assert len(await store.get_recent_incidents()) == 1


async def test_second_open_incident_for_a_monitor_is_refused(store: PostgresIncidentStore) -> None:
    first = await store.create_incident(make_incident())
    with pytest.raises(OpenIncidentExistsError) as caught:
        await store.create_incident(make_incident(started_at=T0 + timedelta(minutes=5)))
    assert caught.value.existing == first


async def test_after_resolve_a_new_incident_may_open(store: PostgresIncidentStore) -> None:
    first = await store.create_incident(make_incident())
    await store.resolve_incident(first.incident_id, ended_at=T0 + timedelta(minutes=2))
    second = await store.create_incident(make_incident(started_at=T0 + timedelta(minutes=10)))
    open_now = await store.get_open_incident(first.monitor)
    assert open_now == second


async def test_monitors_are_independent(store: PostgresIncidentStore) -> None:
    a = await store.create_incident(make_incident("a"))
    b = await store.create_incident(make_incident("b"))
    other_ns = await store.create_incident(make_incident("a", namespace="staging"))
    assert await store.get_open_incident(MonitorRef(namespace="default", name="a")) == a
    assert await store.get_open_incident(MonitorRef(namespace="default", name="b")) == b
    assert await store.get_open_incident(MonitorRef(namespace="staging", name="a")) == other_ns
    assert await store.get_open_incident(MonitorRef(namespace="default", name="c")) is None


async def test_create_truncates_body_and_strips_nul(store: PostgresIncidentStore) -> None:
    incident = make_incident(response_body="x\x00" + "y" * 10_000, error_message="bad\x00byte")
    stored = await store.create_incident(incident)
    assert stored.response_body is not None
    assert len(stored.response_body) == RESPONSE_BODY_MAX_CHARS
    assert stored.response_body.startswith("x\ufffdyyy")
    assert stored.error_message == "bad\ufffdbyte"


async def test_naive_timestamps_are_refused(store: PostgresIncidentStore) -> None:
    with pytest.raises(ValueError, match="started_at"):
        await store.create_incident(make_incident(started_at=datetime(2026, 3, 1, 12, 0)))


# -- update ------------------------------------------------------------------------------------


async def test_update_writes_whitelisted_fields(store: PostgresIncidentStore) -> None:
    incident = await store.create_incident(make_incident())
    due = T0 + timedelta(minutes=10)
    logs = [{"timestamp": T0, "level": "ERROR", "logger": "db", "message": "boom", "labels": {}}]
    await store.update_incident(
        incident.incident_id,
        {
            "severity": Severity.CRITICAL,
            "failed_checks": 7,
            "http_status_code": 502,
            "logs_capture_status": "pending",
            "logs_capture_due_at": due,
            "logs_captured": logs,
            "logs_count": 1,
            "logs_truncated": False,
            "log_analysis": {"error_count": 1, "top_errors": [["boom", 1]]},
            "metrics_snapshot": {"latency_ms": 12.5},
        },
    )
    stored = await store.get_incident(incident.incident_id)
    assert stored is not None
    assert (stored.severity, stored.failed_checks, stored.http_status_code) == (
        Severity.CRITICAL,
        7,
        502,
    )
    details = await store.get_incident_details(incident.incident_id)
    assert details is not None
    assert details["logs_captured"] == [{**logs[0], "timestamp": T0.isoformat()}]
    assert details["log_analysis"] == {"error_count": 1, "top_errors": [["boom", 1]]}
    assert details["logs_capture_status"] == "pending"
    assert details["logs_capture_due_at"] == due
    assert details["updated_at"] >= details["created_at"]
    assert await store.get_due_log_captures(now=due - timedelta(seconds=1)) == []
    assert ids(await store.get_due_log_captures(now=due)) == [incident.incident_id]


@pytest.mark.parametrize(
    "field",
    ["monitor_name", "incident_id", "started_at", "bogus", "status = 'resolved' --", INJECTION],
)
async def test_update_refuses_fields_outside_the_whitelist(
    store: PostgresIncidentStore, field: str
) -> None:
    incident = await store.create_incident(make_incident())
    with pytest.raises(ValueError, match="not an updatable incident field") as caught:
        await store.update_incident(incident.incident_id, {"notes": "x", field: "y"})
    assert repr(field) in str(caught.value)
    assert await store.get_incident(incident.incident_id) == incident  # nothing written


async def test_update_validates_enum_values(store: PostgresIncidentStore) -> None:
    incident = await store.create_incident(make_incident())
    for fields in ({"status": "down"}, {"severity": "urgent"}, {"logs_capture_status": "lost"}):
        with pytest.raises(ValueError):
            await store.update_incident(incident.incident_id, fields)


async def test_update_values_are_data_not_sql(store: PostgresIncidentStore) -> None:
    incident = await store.create_incident(make_incident())
    await store.update_incident(incident.incident_id, {"notes": INJECTION, "error_message": "$1"})
    stored = await store.get_incident(incident.incident_id)
    assert stored is not None
    assert (stored.notes, stored.error_message) == (INJECTION, "$1")


# -- resolve -----------------------------------------------------------------------------------


# -- queries -----------------------------------------------------------------------------------


async def test_recent_is_newest_first_and_filters(store: PostgresIncidentStore) -> None:
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
    with pytest.raises(ValueError):
        await store.get_recent_incidents(limit=0)


async def test_filter_values_are_just_data(
    store: PostgresIncidentStore, db: asyncpg.Connection
) -> None:
    hostile = await store.create_incident(make_incident("a", environment=INJECTION))
    await store.create_incident(make_incident("b"))
    assert ids(await store.get_recent_incidents(environment=INJECTION)) == [hostile.incident_id]
    assert await store.get_recent_incidents(environment="x' OR '1'='1") == []
    assert await store.get_open_incident(MonitorRef(namespace=INJECTION, name=INJECTION)) is None
    assert await db.fetchval("SELECT count(*) FROM downtime_incidents") == 2


async def test_date_range_returns_overlapping_incidents(store: PostgresIncidentStore) -> None:
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
    assert await store.get_incidents_by_date_range(at(2, 30), at(2, 45)) == []
    everything = await store.get_incidents_by_date_range(at(0), at(23), limit=2)
    assert ids(everything) == [ongoing.incident_id, three.incident_id]


async def test_statistics_clip_to_the_period(store: PostgresIncidentStore) -> None:
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


async def test_cleanup_deletes_only_old_resolved_incidents(store: PostgresIncidentStore) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)  # 90 days before: 2026-03-03
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    old = make_incident("old", started_at=long_ago, ended_at=long_ago + timedelta(hours=1))
    old_critical = make_incident(
        "old-critical",
        started_at=long_ago,
        ended_at=long_ago + timedelta(hours=1),
        severity=Severity.CRITICAL,
    )
    old_ongoing = make_incident("old-ongoing", started_at=datetime(2025, 12, 1, tzinfo=UTC))
    recent = make_incident(
        "recent",
        started_at=datetime(2026, 5, 1, tzinfo=UTC),
        ended_at=datetime(2026, 5, 1, 1, tzinfo=UTC),
    )
    # Began long ago but ended inside the retention window: kept.
    long_outage = make_incident(
        "long", started_at=long_ago, ended_at=datetime(2026, 3, 10, tzinfo=UTC)
    )
    for incident in (old, old_critical, old_ongoing, recent, long_outage):
        await store.create_incident(incident)

    deleted = await store.cleanup_old_incidents(90, keep_critical=True, now=now)
    assert ids(deleted) == [old.incident_id]
    assert await store.get_incident(old.incident_id) is None
    assert await store.get_incident(old_critical.incident_id) is not None

    deleted = await store.cleanup_old_incidents(90, keep_critical=False, now=now)
    assert ids(deleted) == [old_critical.incident_id]
    remaining = {i.incident_id for i in await store.get_recent_incidents()}
    assert remaining == {old_ongoing.incident_id, recent.incident_id, long_outage.incident_id}
