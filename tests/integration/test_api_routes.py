"""Each admin route over a real port and a real PostgreSQL, with the seed's envelopes."""

from __future__ import annotations

import asyncio
import os
import shlex
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from tests.conftest import DatabaseFactory
from tests.support.api import KEYS, ApiUnderTest, clear, insert_incident, serve_api

from downtime_operator.adapters.postgres.outbox import PostgresOutbox
from downtime_operator.domain.models import IncidentStatus, Severity
from downtime_operator.services.outbox import NewNotification, Outcome

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {KEYS['ops']}"}


@pytest.fixture(scope="module")
async def served(migrated_dsn: str) -> AsyncIterator[ApiUnderTest]:
    async with serve_api(migrated_dsn) as api:
        yield api


@pytest.fixture
async def api(served: ApiUnderTest) -> ApiUnderTest:
    await clear(served.pool)
    served.resources.incidents.clear()
    served.resources.events.clear()
    served.logs.entries.clear()
    served.clock.pinned = None
    return served


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def get(
    http: aiohttp.ClientSession, api: ApiUnderTest, path: str, **params: Any
) -> tuple[int, Any]:
    async with http.get(api.url(path), params=params) as response:
        return response.status, await response.json()


async def post(
    http: aiohttp.ClientSession, api: ApiUnderTest, path: str, **params: Any
) -> tuple[int, Any]:
    async with http.post(api.url(path), params=params) as response:
        return response.status, await response.json()


# -- List --------------------------------------------------------------------------------------


async def test_list_is_newest_first_in_the_seed_envelope(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    old = await insert_incident(api.pool, name="a", started_at=T0, ended_at=T0 + timedelta(1))
    new = await insert_incident(api.pool, name="b", started_at=T0 + timedelta(days=2))
    status, body = await get(http, api, "/admin/downtime/incidents", limit=10)
    assert status == 200
    assert set(body) == {
        "status",
        "total_incidents",
        "ongoing",
        "resolved",
        "incidents",
        "next_cursor",
    }
    assert body["status"] == "success"
    assert (body["total_incidents"], body["ongoing"], body["resolved"]) == (2, 1, 1)
    assert [i["incident_id"] for i in body["incidents"]] == [
        str(new.incident_id),
        str(old.incident_id),
    ]
    assert body["next_cursor"] is None
    first = body["incidents"][0]
    assert first["monitor_name"] == "b"
    assert first["started_at"] == "2026-03-12T12:00:00Z"
    assert first["status"] == "ongoing"
    assert "logs_captured" not in first  # bulky columns stay out of lists


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "ongoing"}, {"ongoing-a"}),
        ({"status": "investigating"}, {"investigating-b"}),
        ({"status": "resolved"}, {"resolved-a", "resolved-b-staging"}),
        ({"severity": "critical"}, {"investigating-b"}),
        ({"environment": "staging"}, {"resolved-b-staging"}),
        ({"monitor": "resolved-a"}, {"resolved-a"}),
        ({"namespace": "team-b"}, {"investigating-b", "resolved-b-staging"}),
        ({"namespace": "team-b", "status": "resolved"}, {"resolved-b-staging"}),
        ({"environment": "nowhere"}, set()),
    ],
)
async def test_list_filters(
    api: ApiUnderTest,
    http: aiohttp.ClientSession,
    params: dict[str, str],
    expected: set[str],
) -> None:
    await insert_incident(api.pool, name="ongoing-a", namespace="team-a", started_at=T0)
    await insert_incident(
        api.pool,
        name="investigating-b",
        namespace="team-b",
        started_at=T0,
        status=IncidentStatus.INVESTIGATING,
        severity=Severity.CRITICAL,
    )
    await insert_incident(
        api.pool, name="resolved-a", namespace="team-a", started_at=T0, ended_at=T0 + timedelta(1)
    )
    await insert_incident(
        api.pool,
        name="resolved-b-staging",
        namespace="team-b",
        started_at=T0,
        ended_at=T0 + timedelta(1),
        environment="staging",
    )
    status, body = await get(http, api, "/admin/downtime/incidents", **params)
    assert status == 200
    assert {i["monitor_name"] for i in body["incidents"]} == expected


async def test_cursor_pages_through_everything_once(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    # Ties on started_at (two monitors down at the same second) must not be lost or repeated.
    starts = [T0, T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), T0 + timedelta(2)]
    for n, started in enumerate([*starts, T0 - timedelta(days=3), T0 - timedelta(days=4)]):
        await insert_incident(
            api.pool, name=f"m{n}", started_at=started, ended_at=started + timedelta(seconds=5)
        )
    _, everything = await get(http, api, "/admin/downtime/incidents", limit=500)
    expected = [i["incident_id"] for i in everything["incidents"]]
    assert len(expected) == 7
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):  # bounded: 7 rows in pages of 3 need 3 pages
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        status, page = await get(http, api, "/admin/downtime/incidents", **params)
        assert status == 200
        seen += [i["incident_id"] for i in page["incidents"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


# -- Ongoing and one incident -----------------------------------------------------------------


async def test_ongoing_lists_open_incidents(api: ApiUnderTest, http: aiohttp.ClientSession) -> None:
    ongoing = await insert_incident(api.pool, name="a", started_at=T0)
    looking = await insert_incident(
        api.pool, name="b", started_at=T0 + timedelta(1), status=IncidentStatus.INVESTIGATING
    )
    await insert_incident(api.pool, name="c", started_at=T0, ended_at=T0 + timedelta(1))
    status, body = await get(http, api, "/admin/downtime/incidents/ongoing")
    assert status == 200
    assert set(body) == {"status", "count", "incidents"}
    assert body["count"] == 2
    assert [i["incident_id"] for i in body["incidents"]] == [
        str(looking.incident_id),
        str(ongoing.incident_id),
    ]


async def test_get_one_incident_with_its_details(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0, response_body="<h1>503</h1>")
    lines = [{"timestamp": "2026-03-10T12:00:01Z", "level": "ERROR", "message": "boom"}]
    await api.pool.execute(
        "UPDATE downtime_incidents SET logs_captured = $2::text::jsonb, logs_count = 1"
        " WHERE incident_id = $1",
        incident.incident_id,
        '[{"timestamp": "2026-03-10T12:00:01Z", "level": "ERROR", "message": "boom"}]',
    )
    status, body = await get(http, api, f"/admin/downtime/incidents/{incident.incident_id}")
    assert status == 200
    assert set(body) == {"status", "incident"}
    detail = body["incident"]
    assert detail["incident_id"] == str(incident.incident_id)
    assert detail["response_body"] == "<h1>503</h1>"
    assert detail["logs_captured"] == lines
    assert detail["logs_count"] == 1

    unknown = uuid.uuid4()
    status, body = await get(http, api, f"/admin/downtime/incidents/{unknown}")
    assert (status, body) == (404, {"status": "error", "message": f"Incident {unknown} not found"})


# -- Logs, analysis, capture -------------------------------------------------------------------

LINES: list[dict[str, Any]] = [
    {"timestamp": "2026-03-10T11:56:00Z", "level": "INFO", "logger": "app.http", "message": "ok"},
    {
        "timestamp": "2026-03-10T12:00:01Z",
        "level": "ERROR",
        "logger": "app.db",
        "message": "Database connection timeout",
        "labels": {"app": "gatewayz-api"},
    },
    {
        "timestamp": "2026-03-10T12:00:02Z",
        "level": "WARNING",
        "logger": "app.db",
        "message": "retrying",
    },
    {
        "timestamp": "2026-03-10T12:00:03Z",
        "level": "ERROR",
        "logger": "app.cache",
        "message": "Redis connection failed",
    },
]


async def test_logs_are_filtered_by_level_logger_and_search(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0)
    api.logs.entries[incident.incident_id] = LINES
    path = f"/admin/downtime/incidents/{incident.incident_id}/logs"

    status, body = await get(http, api, path)
    assert status == 200
    assert body["total_logs"] == body["total_captured"] == 4
    assert body["filters"] == {"level": None, "logger": None, "search": None}

    status, body = await get(http, api, path, level="ERROR", logger_name="app.db")
    assert status == 200
    assert (body["total_logs"], body["total_captured"]) == (1, 4)
    assert body["filters"] == {"level": "ERROR", "logger": "app.db", "search": None}
    assert body["logs"] == [{**LINES[1], "timestamp": "2026-03-10T12:00:01Z"}]

    status, body = await get(http, api, path, search="redis")
    assert [e["message"] for e in body["logs"]] == ["Redis connection failed"]

    unknown = uuid.uuid4()
    status, _ = await get(http, api, f"/admin/downtime/incidents/{unknown}/logs")
    assert status == 404


async def test_analysis_has_exactly_the_seed_shape(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0)
    api.logs.entries[incident.incident_id] = LINES
    status, body = await get(
        http, api, f"/admin/downtime/incidents/{incident.incident_id}/analysis"
    )
    assert status == 200
    assert body == {
        "status": "success",
        "incident_id": str(incident.incident_id),
        "analysis": {
            "total_logs": 4,
            "error_count": 2,
            "warning_count": 1,
            "error_types": {},
            "top_errors": [["Database connection timeout", 1], ["Redis connection failed", 1]],
        },
    }
    quiet = await insert_incident(api.pool, name="quiet", started_at=T0)
    api.logs.entries[quiet.incident_id] = []
    status, body = await get(http, api, f"/admin/downtime/incidents/{quiet.incident_id}/analysis")
    assert (status, body["message"]) == (200, "No logs were captured for this incident")
    # The seed's shape all the same: a client reading analysis.total_logs gets 0, not an error.
    assert body["analysis"] == {
        "total_logs": 0,
        "error_count": 0,
        "warning_count": 0,
        "error_types": {},
        "top_errors": [],
    }


async def test_capture_logs_runs_now_and_answers_202(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0)
    api.logs.entries[incident.incident_id] = LINES
    status, body = await post(
        http, api, f"/admin/downtime/incidents/{incident.incident_id}/capture-logs"
    )
    assert status == 202
    assert body == {
        "status": "success",
        "message": "Log capture triggered",
        "incident_id": str(incident.incident_id),
        "result": {"state": "captured", "lines": 4},
    }
    assert api.logs.captures[-1] == incident.incident_id


# -- Resolve and acknowledge -------------------------------------------------------------------


async def test_resolve_updates_row_resource_and_posts_an_event(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0, notes="auto-detected")
    api.clock.pinned = T0 + timedelta(minutes=7, seconds=30)
    path = f"/admin/downtime/incidents/{incident.incident_id}/resolve"

    status, body = await post(http, api, path, notes="restarted the pod")
    assert status == 200
    assert (body["status"], body["message"]) == ("success", "Incident resolved")
    resolved = body["incident"]
    assert resolved["status"] == "resolved"
    assert resolved["ended_at"] == "2026-03-10T12:07:30Z"
    assert resolved["duration_seconds"] == 450.0
    assert resolved["notes"] == "auto-detected\nrestarted the pod"

    row = await api.pool.fetchrow(
        "SELECT status, ended_at FROM downtime_incidents WHERE incident_id = $1",
        incident.incident_id,
    )
    assert row is not None
    assert (row["status"], row["ended_at"]) == ("resolved", api.clock.pinned)
    await api.settle()
    cr = api.resources.incidents[incident.k8s_name]
    assert (cr.status, cr.ended_at, cr.duration_seconds) == (
        IncidentStatus.RESOLVED,
        api.clock.pinned,
        450.0,
    )
    [(reason, message)] = api.resources.events
    assert reason == "IncidentResolvedManually"
    assert "resolved by ops after 450s: restarted the pod" in message

    status, body = await post(http, api, path)
    assert (status, body["status"]) == (409, "error")
    assert "already resolved" in body["message"]
    status, _ = await post(http, api, f"/admin/downtime/incidents/{uuid.uuid4()}/resolve")
    assert status == 404


async def test_acknowledge_marks_investigating_everywhere(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0)
    path = f"/admin/downtime/incidents/{incident.incident_id}/acknowledge"
    status, body = await post(http, api, path, notes="on it")
    assert status == 200
    assert body["message"] == "Incident acknowledged"
    assert (body["incident"]["status"], body["incident"]["notes"]) == ("investigating", "on it")
    await api.settle()
    assert api.resources.incidents[incident.k8s_name].status is IncidentStatus.INVESTIGATING
    assert [reason for reason, _ in api.resources.events] == ["IncidentAcknowledged"]

    status, body = await post(http, api, path)  # still open: acknowledging again is fine
    assert (status, body["incident"]["status"]) == (200, "investigating")
    await post(http, api, f"/admin/downtime/incidents/{incident.incident_id}/resolve")
    status, _ = await post(http, api, path)
    assert status == 409


# -- Statistics, probes, documents ------------------------------------------------------------


async def test_statistics_has_the_seed_shape_plus_extras(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    api.clock.pinned = T0
    await insert_incident(
        api.pool, started_at=T0 - timedelta(hours=2), ended_at=T0 - timedelta(hours=1)
    )
    status, body = await get(http, api, "/admin/downtime/statistics")
    assert status == 200
    assert set(body) == {"status", "period_days", "period_start", "period_end", "statistics"}
    assert body["period_days"] == 30
    assert body["period_end"] == "2026-03-10T12:00:00Z"
    assert body["statistics"] == {
        "total_incidents": 1,
        "total_downtime_seconds": 3600.0,
        "average_duration_seconds": 3600.0,
        "by_severity": {"high": 1},
        "by_status": {"resolved": 1},
        "mttr_seconds": 3600.0,
        "longest_incident_seconds": 3600.0,
        "monitors": [
            {
                "namespace": "default",
                "name": "api",
                "incidents": 1,
                "downtime_seconds": 3600.0,
                "uptime_percent": round(100 * (1 - 3600 / (30 * 86400)), 3),
            }
        ],
    }


async def test_probes_metrics_and_openapi_need_no_key(served: ApiUnderTest) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/healthz", "/readyz"):
            async with anonymous.get(served.url(path)) as response:
                assert (response.status, await response.json()) == (200, {"status": "ok"})
        async with anonymous.get(served.url("/metrics")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
        async with anonymous.get(served.url("/admin/downtime/openapi.json")) as response:
            assert response.status == 200
            assert (await response.json())["openapi"] == "3.1.0"
        async with anonymous.get(served.url("/admin/downtime/incidents")) as response:
            assert response.status == 401


async def test_metrics_serve_the_given_provider(migrated_dsn: str) -> None:
    async with (
        serve_api(migrated_dsn, metrics_text=lambda: b"gatewayz_test_metric 1\n") as api,
        aiohttp.ClientSession() as anonymous,
        anonymous.get(api.url("/metrics")) as response,
    ):
        assert await response.text() == "gatewayz_test_metric 1\n"


async def test_readyz_fails_when_postgres_is_unreachable() -> None:
    # A port nothing listens on: the pool connects lazily, so the app starts and reports.
    async with (
        serve_api("postgresql://nobody:x@127.0.0.1:9/none") as api,
        aiohttp.ClientSession(headers=AUTH) as session,
    ):
        async with session.get(api.url("/readyz")) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
        async with session.get(api.url("/admin/downtime/incidents")) as response:
            assert response.status == 503
            assert (await response.json())["status"] == "error"


async def test_a_schema_not_migrated_yet_answers_503_not_500(
    make_database: DatabaseFactory,
) -> None:
    """The standalone monitor serves its API while it applies the migrations (in its queue)."""
    dsn = await make_database()
    async with serve_api(dsn) as api, aiohttp.ClientSession(headers=AUTH) as session:
        async with session.get(api.url("/admin/downtime/incidents")) as response:
            assert response.status == 503
        incident = api.url(f"/admin/downtime/incidents/{uuid.uuid4()}/resolve")
        async with session.post(incident) as response:
            assert response.status == 503  # the audit trail cannot be written: nothing is done


# -- The seed's curl examples, verbatim but for the host ---------------------------------------

SEED_CURLS = [
    'curl -X GET "{base}/admin/downtime/incidents?limit=10" '
    '-H "Authorization: Bearer ${{ADMIN_API_KEY}}"',
    'curl -X GET "{base}/admin/downtime/incidents/ongoing" '
    '-H "Authorization: Bearer ${{ADMIN_API_KEY}}"',
    'curl -X GET "{base}/admin/downtime/incidents/${{INCIDENT_ID}}/logs?level=ERROR" '
    '-H "Authorization: Bearer ${{ADMIN_API_KEY}}"',
    'curl -X GET "{base}/admin/downtime/incidents/${{INCIDENT_ID}}/analysis" '
    '-H "Authorization: Bearer ${{ADMIN_API_KEY}}"',
    'curl -X GET "{base}/admin/downtime/statistics?days=30" '
    '-H "Authorization: Bearer ${{ADMIN_API_KEY}}"',
]


@pytest.mark.parametrize("template", SEED_CURLS)
async def test_the_seeds_curl_examples_work(api: ApiUnderTest, template: str) -> None:
    incident = await insert_incident(api.pool, started_at=T0)
    api.logs.entries[incident.incident_id] = LINES
    command = template.format(base=api.base_url)
    env = {
        **os.environ,
        "ADMIN_API_KEY": KEYS["ci"],
        "INCIDENT_ID": str(incident.incident_id),
    }
    # Through a shell, as a person would paste it; -s -w only add the status to the output.
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"{command} -s -w '\\n%{{http_code}}'",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    body, _, code = out.decode().rpartition("\n")
    assert code == "200", (shlex.quote(command), body, err.decode())
    assert '"status":"success"' in body


# -- Notifications -----------------------------------------------------------------------------


async def test_an_incidents_notifications_are_its_delivery_log(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = (await insert_incident(api.pool, name="a", started_at=T0)).incident_id
    outbox = PostgresOutbox(api.pool)
    await outbox.enqueue(
        [
            NewNotification(
                incident_id=incident,
                channel=f"shop/{name}",
                event=event,
                payload={},
                created_at=T0 + timedelta(seconds=later),
            )
            for name, later in (("slack", 0), ("pager", 1))
            for event in ("opened", "resolved")
        ]
    )
    [row, *_] = await outbox.claim(owner="op", now=T0, lease=timedelta(minutes=5), limit=1)
    later = T0 + timedelta(seconds=4)
    await outbox.record(
        [Outcome.retry(row.id, at=T0, next_attempt_at=later, error="HTTP 503")], owner="op"
    )
    status, body = await get(http, api, f"/admin/downtime/incidents/{incident}/notifications")
    assert status == 200 and body["status"] == "success"
    log = [(n["channel"], n["event"], n["state"], n["attempts"]) for n in body["notifications"]]
    assert log == [
        ("shop/pager", "opened", "pending", 0),
        ("shop/pager", "resolved", "pending", 0),
        ("shop/slack", "opened", "pending", 1),  # tried once, to be retried
        ("shop/slack", "resolved", "pending", 0),
    ]
    assert any(n["last_error"] == "HTTP 503" for n in body["notifications"])
    missing = uuid.uuid4()
    status, body = await get(http, api, f"/admin/downtime/incidents/{missing}/notifications")
    assert status == 404


async def test_a_test_notification_is_queued_for_the_channel_and_audited(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    path = "/admin/downtime/notifications/test"
    status, body = await post(http, api, path, channel="shop/oncall")
    assert status == 202 and body["channel"] == "shop/oncall"
    test_id = uuid.UUID(body["test_id"])
    [row] = await PostgresOutbox(api.pool).for_incident(test_id)
    assert (row.channel, row.event, row.state) == ("shop/oncall", f"test:{test_id}", "pending")
    audited = await api.pool.fetchval(
        "SELECT count(*) FROM downtime_audit_log WHERE action = 'testNotificationChannel'"
    )
    assert audited == 1
    for bad in ("oncall", "Shop/x", "shop/", "a/b/c"):
        status, body = await post(http, api, path, channel=bad)
        assert status == 422 and body["errors"][0]["field"] == "channel", (bad, body)
