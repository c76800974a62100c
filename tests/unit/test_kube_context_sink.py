"""The context sink: a snapshot per stage, stored and shown, waiting for the other sinks' writes."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind, ResolvedBy
from downtime_operator.domain.kube_context import (
    ContextScope,
    ContextStage,
    NamespaceObjects,
    TargetKind,
    TargetObject,
    TargetRef,
)
from downtime_operator.domain.models import Incident, MonitorRef, Severity
from downtime_operator.services.kube_context import KubeContextSink, NotWrittenYetError
from tests.unit.fakes import FakeClock

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TARGET = TargetRef(kind=TargetKind.SERVICE, name="api", namespace="shop")
SCOPE = ContextScope(target=TARGET, before=timedelta(minutes=5), after=timedelta(minutes=5))


class Reader:
    def __init__(self) -> None:
        self.reads = 0

    async def read_context(self, target: TargetRef) -> tuple[TargetObject, NamespaceObjects]:
        self.reads += 1
        return TargetObject(body={"spec": {"selector": {"app": "api"}}}), NamespaceObjects(
            endpointslices=[
                {
                    "metadata": {"labels": {"kubernetes.io/service-name": "api"}},
                    "endpoints": [{"conditions": {"ready": False}}],
                }
            ]
        )


class Store:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}

    async def record_kube_context(
        self, incident_id: uuid.UUID, *, stage: ContextStage, snapshot: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        if incident_id not in self.rows:
            return None
        self.rows[incident_id][stage.value] = dict(snapshot)
        return dict(self.rows[incident_id])


class View:
    def __init__(self) -> None:
        self.shown: dict[str, dict[str, Any]] = {}
        self.exists = True

    async def publish_kube_context(self, incident: Incident, summary: Mapping[str, Any]) -> bool:
        if self.exists:
            self.shown[incident.k8s_name] = dict(summary)
        return self.exists


def incident() -> Incident:
    return Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace="shop", name="api"),
        k8s_name="api-20260310-120000",
        health_endpoint="http://api.shop.svc/health",
        environment="production",
        started_at=T0,
        detected_at=T0 + timedelta(seconds=20),
        severity=Severity.HIGH,
    )


def sink(clock: FakeClock) -> tuple[KubeContextSink, Reader, Store, View]:
    reader, store, view = Reader(), Store(), View()
    return KubeContextSink(reader=reader, store=store, view=view, clock=clock), reader, store, view


def event(kind: IncidentEventKind, of: Incident, **extra: Any) -> IncidentEvent:
    return IncidentEvent(kind=kind, incident=of, context=SCOPE, **extra)


async def test_detection_and_resolution_are_stored_and_shown() -> None:
    clock = FakeClock(T0 + timedelta(seconds=20))
    context, reader, store, view = sink(clock)
    opened = incident()
    store.rows[opened.incident_id] = {}
    await context.apply(event(IncidentEventKind.OPENED, opened))
    assert store.rows[opened.incident_id]["detection"]["window_start"] == "2026-03-10T11:55:00Z"
    assert view.shown[opened.k8s_name]["topCause"] == "0 ready endpoints"
    clock.current = T0 + timedelta(minutes=3)
    resolved = dataclasses.replace(opened, ended_at=clock.current)
    await context.apply(event(IncidentEventKind.RESOLVED, resolved))
    assert set(store.rows[opened.incident_id]) == {"detection", "resolution"}
    assert view.shown[opened.k8s_name]["stage"] == "resolution"
    assert reader.reads == 2


async def test_nothing_for_other_events_targetless_monitors_or_a_persons_resolve() -> None:
    context, reader, _, _ = sink(FakeClock(T0))
    opened = incident()
    await context.apply(event(IncidentEventKind.CHECKS_REFRESHED, opened))
    await context.apply(IncidentEvent(kind=IncidentEventKind.OPENED, incident=opened))
    await context.apply(event(IncidentEventKind.RESOLVED, opened, resolved_by=ResolvedBy.PERSON))
    assert reader.reads == 0


async def test_a_row_or_resource_not_written_yet_is_waited_for_with_the_same_snapshot() -> None:
    clock = FakeClock(T0 + timedelta(seconds=20))
    context, reader, store, view = sink(clock)
    opened = incident()
    with pytest.raises(NotWrittenYetError, match="no row yet"):
        await context.apply(event(IncidentEventKind.OPENED, opened))
    store.rows[opened.incident_id] = {}
    view.exists = False
    with pytest.raises(NotWrittenYetError, match="no resource yet"):
        await context.apply(event(IncidentEventKind.OPENED, opened))
    view.exists = True
    clock.current += timedelta(seconds=30)
    await context.apply(event(IncidentEventKind.OPENED, opened))
    assert reader.reads == 1  # the retries wrote the snapshot of the moment, not a new one
    assert store.rows[opened.incident_id]["detection"]["taken_at"] == "2026-03-10T12:00:20Z"


async def test_a_row_that_never_comes_is_given_up_on() -> None:
    clock = FakeClock(T0 + timedelta(hours=1))
    context, reader, store, _ = sink(clock)
    await context.apply(event(IncidentEventKind.OPENED, incident()))
    assert store.rows == {} and reader.reads == 1
