"""Root cause and notes on every store: what ``PATCH .../incidents/{id}`` writes must read back
the same from PostgreSQL, the SQLite file and the unit tests' fake."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Protocol

from downtime_operator.domain.models import Incident, IncidentStatus
from tests.contract.stores import T0, AnyStore, make_incident, ports_for
from tests.unit.fakes import MemoryStore


class Annotations(Protocol):
    async def annotate_incident(
        self, incident_id: uuid.UUID, *, root_cause: str | None, note: str | None
    ) -> Incident | None: ...


def annotations_for(store: AnyStore) -> Annotations:
    """The store's ``IncidentTransitions`` (the admin API's port); the fake is its own."""
    return store if isinstance(store, MemoryStore) else ports_for(store).queries


async def test_the_root_cause_is_set_then_replaced(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident())
    annotations = annotations_for(store)
    first = await annotations.annotate_incident(
        incident.incident_id, root_cause="expired TLS certificate", note=None
    )
    assert first is not None
    assert (first.root_cause, first.notes) == ("expired TLS certificate", None)
    replaced = await annotations.annotate_incident(
        incident.incident_id, root_cause="DNS record removed", note=None
    )
    assert replaced is not None and replaced.root_cause == "DNS record removed"
    assert await store.get_incident(incident.incident_id) == replaced


async def test_notes_are_appended_after_the_resolution_notes(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident(notes="auto-detected"))
    ended_at = T0 + timedelta(minutes=5)
    await store.resolve_incident(incident.incident_id, ended_at=ended_at, notes="ok")
    annotations = annotations_for(store)
    await annotations.annotate_incident(
        incident.incident_id, root_cause="bad deploy", note="[2026-03-10T12:10:00Z ops] rolled back"
    )
    annotated = await annotations.annotate_incident(
        incident.incident_id, root_cause=None, note="[2026-03-10T12:20:00Z ci] tests added"
    )
    assert annotated is not None
    assert annotated.notes == (
        "auto-detected\nok\n[2026-03-10T12:10:00Z ops] rolled back\n"
        "[2026-03-10T12:20:00Z ci] tests added"
    )
    assert annotated.root_cause == "bad deploy"  # kept when none is given
    # A resolved incident stays as it was resolved: only the post-mortem moved on.
    assert annotated.status is IncidentStatus.RESOLVED
    assert annotated.ended_at == ended_at
    assert await store.get_incident(incident.incident_id) == annotated


async def test_text_is_stored_as_any_text_column_is(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident())
    annotated = await annotations_for(store).annotate_incident(
        incident.incident_id, root_cause="nul\x00byte", note="line one\nline two"
    )
    assert annotated is not None
    assert (annotated.root_cause, annotated.notes) == ("nul\ufffdbyte", "line one\nline two")


async def test_an_unknown_incident_is_none(store: AnyStore) -> None:
    missing = await annotations_for(store).annotate_incident(uuid.uuid4(), root_cause="x", note="y")
    assert missing is None
