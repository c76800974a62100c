"""The incident's playbook and its severity changes on every store: the playbook is written
with the row and read back as it was, each escalation is appended to ``severity_changes`` once
(a retried or racing write of the same change adds nothing), and both reach the incident detail
and the report alike from PostgreSQL and the SQLite file."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from downtime_operator.domain.models import Severity
from downtime_operator.domain.report import IncidentFacts, build_report
from downtime_operator.domain.severity import SeverityChange
from tests.contract.stores import T0, AnyStore, Store, Stores, make_incident, ports_for, raw_row

PLAYBOOK = "https://runbooks.example.com/api-down\nthen page #db-oncall"
TO_HIGH = SeverityChange(
    at=T0 + timedelta(minutes=2), previous=Severity.MEDIUM, severity=Severity.HIGH
)
TO_CRITICAL = SeverityChange(
    at=T0 + timedelta(minutes=5), previous=Severity.HIGH, severity=Severity.CRITICAL
)


async def severity_changes(store: AnyStore, incident_id: uuid.UUID) -> Any:
    text = (await raw_row(store, "downtime_incidents", "incident_id", incident_id))[
        "severity_changes"
    ]
    return None if text is None else json.loads(text)


async def test_the_playbook_is_written_with_the_row_and_survives_a_restart(
    stores: Stores,
) -> None:
    store = await stores.open()
    incident = make_incident(playbook=PLAYBOOK + "\x00")
    created = await store.create_incident(incident)
    assert created.playbook == PLAYBOOK + "\ufffd"  # stored as any text column is
    await stores.close(store)
    reopened = await stores.open()
    found = await reopened.get_incident(incident.incident_id)
    assert found is not None and found.playbook == PLAYBOOK + "\ufffd"
    [ongoing] = await reopened.get_ongoing_incidents()
    assert ongoing.playbook == found.playbook
    without = await reopened.create_incident(make_incident("web"))
    assert without.playbook is None


async def test_each_escalation_is_appended_once(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident(severity=Severity.MEDIUM))
    assert await severity_changes(store, incident.incident_id) is None
    await store.escalate_incident(incident.incident_id, change=TO_HIGH, failed_checks=12)
    await store.escalate_incident(incident.incident_id, change=TO_HIGH, failed_checks=12)  # retry
    await store.escalate_incident(incident.incident_id, change=TO_CRITICAL, failed_checks=30)
    assert await severity_changes(store, incident.incident_id) == [
        {"at": "2026-03-10T12:02:00+00:00", "from": "medium", "to": "high"},
        {"at": "2026-03-10T12:05:00+00:00", "from": "high", "to": "critical"},
    ]
    found = await store.get_incident(incident.incident_id)
    assert found is not None
    assert (found.severity, found.failed_checks) == (Severity.CRITICAL, 30)


async def test_racing_writes_of_one_change_append_it_once(stores: Stores) -> None:
    first, second = await stores.open(), await stores.open()
    incident = await first.create_incident(make_incident(severity=Severity.MEDIUM))
    await asyncio.gather(
        *(
            store.escalate_incident(incident.incident_id, change=TO_HIGH, failed_checks=12)
            for store in (first, second) * 4
        )
    )
    assert await severity_changes(first, incident.incident_id) == [TO_HIGH.to_json()]


async def test_escalating_an_unknown_incident_writes_nothing(store: AnyStore) -> None:
    missing = uuid.uuid4()
    await store.escalate_incident(missing, change=TO_HIGH, failed_checks=1)
    assert await store.get_incident(missing) is None


@pytest.mark.sql_only("the incident detail is the admin API's port")
async def test_the_detail_and_the_report_show_both(store: Store) -> None:
    incident = await store.create_incident(
        make_incident(severity=Severity.MEDIUM, playbook=PLAYBOOK)
    )
    for change in (TO_HIGH, TO_CRITICAL):
        await store.escalate_incident(incident.incident_id, change=change, failed_checks=3)
    details = await ports_for(store).queries.incident_details(incident.incident_id)
    assert details is not None
    assert details["playbook"] == PLAYBOOK
    assert details["severity_changes"] == [TO_HIGH.to_json(), TO_CRITICAL.to_json()]
    report = build_report(facts=IncidentFacts.from_details(details), calls=[], deliveries=[])
    assert report.severity_changes == (TO_HIGH, TO_CRITICAL)
    assert report.to_dict()["playbook"] == PLAYBOOK
    assert [e.event for e in report.timeline if e.event.startswith("Escalated")] == [
        "Escalated from medium to high",
        "Escalated from high to critical",
    ]
