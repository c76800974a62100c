"""The post-mortem routes over a real port and a real PostgreSQL: root cause and notes
(``PATCH .../incidents/{id}``) and the report (``GET .../incidents/{id}/report``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from tests.support.api import KEYS, ApiUnderTest, clear, insert_incident, serve_api

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.postgres.outbox import PostgresOutbox
from downtime_operator.domain.models import Severity
from downtime_operator.domain.severity import SeverityChange
from downtime_operator.services.outbox import NewNotification, Outcome

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
INCIDENTS = "/admin/downtime/incidents"


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture
async def api(migrated_dsn: str) -> AsyncIterator[ApiUnderTest]:
    async with serve_api(migrated_dsn) as served:
        await clear(served.pool)
        yield served


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Without a key: each call says whose it is."""
    async with aiohttp.ClientSession() as session:
        yield session


async def patch(
    http: aiohttp.ClientSession,
    api: ApiUnderTest,
    incident_id: uuid.UUID,
    body: Any,
    *,
    key: str = "ops",
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.patch(
        api.url(f"{INCIDENTS}/{incident_id}"),
        data=data,
        headers={**bearer(key), "Content-Type": "application/json"},
    ) as response:
        return response.status, await response.json()


# -- Root cause and notes ----------------------------------------------------------------------


async def test_root_cause_and_signed_notes_are_stored_audited_and_mirrored(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0, notes="auto-detected")
    iid = incident.incident_id
    api.clock.pinned = T0 + timedelta(minutes=10)
    status, body = await patch(http, api, iid, {"root_cause": "bad deploy", "notes": "rolled back"})
    assert status == 200, body
    assert (body["status"], body["message"]) == ("success", "Incident updated")
    assert body["incident"]["root_cause"] == "bad deploy"
    assert body["incident"]["notes"] == "auto-detected\n[2026-03-10T12:10:00Z ops] rolled back"

    api.clock.pinned = T0 + timedelta(minutes=20)
    status, body = await patch(http, api, iid, {"notes": "added a test"}, key="ci")
    assert status == 200 and body["incident"]["root_cause"] == "bad deploy"
    status, body = await patch(http, api, iid, {"root_cause": "pool exhausted"})
    assert status == 200
    notes = (
        "auto-detected\n[2026-03-10T12:10:00Z ops] rolled back\n"
        "[2026-03-10T12:20:00Z ci] added a test"
    )
    assert (body["incident"]["root_cause"], body["incident"]["notes"]) == ("pool exhausted", notes)
    assert body["incident"]["status"] == "ongoing"

    row = await api.pool.fetchrow(
        "SELECT root_cause, notes FROM downtime_incidents WHERE incident_id = $1", iid
    )
    assert row is not None and (row["root_cause"], row["notes"]) == ("pool exhausted", notes)
    await api.settle()
    shown = api.resources.incidents[incident.k8s_name]
    assert (shown.root_cause, shown.notes) == ("pool exhausted", notes)
    assert api.resources.events == []
    audit = await api.pool.fetch(
        "SELECT key_name, action, incident_id, parameters::text AS parameters, outcome"
        " FROM downtime_audit_log ORDER BY audit_id"
    )
    assert [(r["key_name"], r["action"], r["incident_id"], r["outcome"]) for r in audit] == [
        ("ops", "updateIncident", iid, "success"),
        ("ci", "updateIncident", iid, "success"),
        ("ops", "updateIncident", iid, "success"),
    ]
    assert json.loads(audit[0]["parameters"]) == {
        "root_cause": "bad deploy",
        "notes": "rolled back",
    }


async def test_a_resolved_incident_takes_its_post_mortem(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    """The post-mortem is written after the outage, so unlike a resolve this is no conflict."""
    incident = await insert_incident(api.pool, started_at=T0)
    async with http.post(
        api.url(f"{INCIDENTS}/{incident.incident_id}/resolve"),
        params={"notes": "restarted"},
        headers=bearer("ops"),
    ) as response:
        assert response.status == 200
    status, body = await patch(http, api, incident.incident_id, {"root_cause": "OOM"})
    assert status == 200
    assert (body["incident"]["status"], body["incident"]["notes"]) == ("resolved", "restarted")
    assert body["incident"]["root_cause"] == "OOM"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"root_cause": "x", "severity": "low"}, "severity"),
        ({"root_cause": "x" * 2001}, "root_cause"),
        ({"notes": "x" * 4001}, "notes"),
        ({"notes": "bell\x07"}, "notes"),
        ({"notes": "   "}, "notes"),
        ({"root_cause": None}, "root_cause"),
        ({"root_cause": 42}, "root_cause"),
        ({}, "body"),
        ([{"notes": "x"}], "body"),
        (b"", "body"),
        (b"notes=x", "body"),
        (b"\xff\xfe{", "body"),
    ],
)
async def test_bad_bodies_answer_422_naming_the_field(
    api: ApiUnderTest, http: aiohttp.ClientSession, body: Any, field: str
) -> None:
    incident = await insert_incident(api.pool, started_at=T0)
    status, answer = await patch(http, api, incident.incident_id, body)
    assert status == 422
    assert [e["field"] for e in answer["errors"]] == [field], answer
    stored = await api.pool.fetchrow(
        "SELECT root_cause, notes FROM downtime_incidents WHERE incident_id = $1",
        incident.incident_id,
    )
    assert stored is not None and tuple(stored) == (None, None)


async def test_the_longest_texts_are_accepted(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(api.pool, started_at=T0)
    status, body = await patch(
        http, api, incident.incident_id, {"root_cause": "é" * 2000, "notes": "n" * 4000}
    )
    assert status == 200 and body["incident"]["root_cause"] == "é" * 2000


async def test_unknown_incidents_and_missing_keys(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    unknown = uuid.uuid4()
    status, body = await patch(http, api, unknown, {"notes": "x"})
    assert (status, body["message"]) == (404, f"Incident {unknown} not found")
    incident = await insert_incident(api.pool, started_at=T0)
    async with http.patch(
        api.url(f"{INCIDENTS}/{incident.incident_id}"), json={"notes": "sneaky"}
    ) as response:
        assert response.status == 401
    audited = await api.pool.fetch(
        "SELECT key_name, outcome, parameters::text AS parameters FROM downtime_audit_log"
        " ORDER BY audit_id"
    )
    assert [(r["key_name"], r["outcome"]) for r in audited] == [
        ("ops", "not_found"),
        (None, "unauthorized"),
    ]
    assert json.loads(audited[1]["parameters"]) == {"notes": "sneaky"}
    stored = await api.pool.fetchval(
        "SELECT notes FROM downtime_incidents WHERE incident_id = $1", incident.incident_id
    )
    assert stored is None


# -- Report ------------------------------------------------------------------------------------


async def test_the_report_in_markdown_and_json(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    incident = await insert_incident(
        api.pool, started_at=T0, severity=Severity.MEDIUM, playbook="https://runbooks/api"
    )
    iid = incident.incident_id
    path = f"{INCIDENTS}/{iid}"
    await PostgresIncidentStore(api.pool).escalate_incident(
        iid,
        change=SeverityChange(
            at=T0 + timedelta(minutes=1), previous=Severity.MEDIUM, severity=Severity.HIGH
        ),
        failed_checks=7,
    )
    api.clock.pinned = T0 + timedelta(minutes=2)
    async with http.post(api.url(f"{path}/acknowledge"), headers=bearer("ops")) as response:
        assert response.status == 200
    api.clock.pinned = T0 + timedelta(minutes=9)
    async with http.post(api.url(f"{path}/resolve"), headers=bearer("ops")) as response:
        assert response.status == 200
    await patch(http, api, iid, {"root_cause": "pool exhausted", "notes": "raised the pool"})
    outbox = PostgresOutbox(api.pool)
    await outbox.enqueue(
        [
            NewNotification(
                incident_id=iid,
                channel="shop/oncall",
                event="opened",
                payload={},
                created_at=T0 + timedelta(seconds=1),
            )
        ]
    )
    sent = T0 + timedelta(seconds=2)
    [row] = await outbox.claim(owner="op", now=sent, lease=timedelta(minutes=5), limit=1)
    await outbox.record([Outcome.sent(row.id, at=sent, provider_id="m-1")], owner="op")

    async with http.get(api.url(f"{path}/report"), headers=bearer("ops")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/markdown; charset=utf-8"
        text = await response.text()
    for section in ("Summary", "Impact", "Timeline", "Evidence", "Playbook", "Root cause"):
        assert f"\n## {section}\n" in text
    assert f"# Incident report: {incident.k8s_name}\n" in text
    assert "| 2026-03-10 12:00:02 UTC | Notification opened sent to shop/oncall |" in text
    assert "| 2026-03-10 12:01:00 UTC | Escalated from medium to high |" in text
    assert "- Severity changes: from medium to high at 2026-03-10 12:01:00 UTC" in text
    assert "## Playbook\n\n<https://runbooks/api>\n" in text
    assert "| 2026-03-10 12:02:00 UTC | Acknowledged by ops |" in text
    assert "| 2026-03-10 12:09:00 UTC | Resolved by ops after 9m |" in text
    assert "```text\npool exhausted\n```" in text
    assert "[2026-03-10T12:09:00Z ops] raised the pool" in text

    async with http.get(
        api.url(f"{path}/report"), headers={**bearer("ops"), "Accept": "application/json"}
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = await response.json()
    assert (body["status"], body["incident_id"]) == ("success", str(iid))
    report = body["report"]
    assert report["summary"]["status"] == "resolved"
    assert report["impact"]["duration_seconds"] == 540.0
    assert report["timeline"][0] == {"at": "2026-03-10T12:00:00Z", "event": "First failed check"}
    assert report["evidence"]["server_info"] is None
    assert report["evidence"]["log_capture"]["summary"] == "not planned"
    assert report["impact"]["severity_changes"] == [
        {"at": "2026-03-10T12:01:00Z", "from": "medium", "to": "high"}
    ]
    assert (report["playbook"], report["root_cause"]) == ("https://runbooks/api", "pool exhausted")
    async with http.get(api.url(path), headers=bearer("ops")) as response:
        detail = (await response.json())["incident"]
    assert detail["playbook"] == "https://runbooks/api"
    assert detail["severity_changes"] == report["impact"]["severity_changes"]


async def test_the_report_of_an_unknown_incident_or_without_a_key(
    api: ApiUnderTest, http: aiohttp.ClientSession
) -> None:
    unknown = uuid.uuid4()
    async with http.get(api.url(f"{INCIDENTS}/{unknown}/report"), headers=bearer("ops")) as r:
        assert r.status == 404
        assert (await r.json())["status"] == "error"
    incident = await insert_incident(api.pool, started_at=T0)
    async with http.get(api.url(f"{INCIDENTS}/{incident.incident_id}/report")) as response:
        assert response.status == 401
