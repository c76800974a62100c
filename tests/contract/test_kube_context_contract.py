"""The incident's Kubernetes context on every SQL store: each stage written by the sink reads
back the same from PostgreSQL and the SQLite file, beside the other stage, across a restart."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from downtime_operator.adapters.postgres.kube_context import PostgresKubeContexts
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.adapters.sqlite.kube_context import SqliteKubeContexts
from downtime_operator.domain.kube_context import (
    ContextStage,
    NamespaceObjects,
    TargetKind,
    TargetObject,
    TargetRef,
    context_snapshot_json,
    take_snapshot,
)
from downtime_operator.services.kube_context import KubeContextStore
from tests.contract.stores import T0, AnyStore, Stores, make_incident, ports_for, sql_store

pytestmark = pytest.mark.sql_only("the Kubernetes context is a column of the SQL stores")


def contexts_for(store: AnyStore) -> KubeContextStore:
    found = sql_store(store)
    if isinstance(found, SqliteIncidentStore):
        return SqliteKubeContexts(found.database)
    return PostgresKubeContexts(found.pool)


def snapshot(stage: ContextStage, *, ready: bool) -> dict[str, Any]:
    pod = {
        "metadata": {"name": "api-1", "labels": {"app": "api"}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    return context_snapshot_json(
        take_snapshot(
            stage=stage,
            target=TargetRef(kind=TargetKind.SERVICE, name="api", namespace="default"),
            found=TargetObject(body={"spec": {"selector": {"app": "api"}}}),
            objects=NamespaceObjects(pods=[pod]),
            window_start=T0 - timedelta(minutes=5),
            window_end=T0 + timedelta(minutes=1),
            first_failure_at=T0,
            taken_at=T0 + timedelta(minutes=1),
        )
    )


async def details(store: AnyStore, incident_id: uuid.UUID) -> dict[str, Any]:
    found = await ports_for(sql_store(store)).queries.incident_details(incident_id)
    assert found is not None
    return found


async def test_each_stage_is_kept_beside_the_other(store: AnyStore) -> None:
    incident = await store.create_incident(make_incident())
    contexts = contexts_for(store)
    assert (await details(store, incident.incident_id))["kube_context"] is None
    detection = snapshot(ContextStage.DETECTION, ready=False)
    stored = await contexts.record_kube_context(
        incident.incident_id, stage=ContextStage.DETECTION, snapshot=detection
    )
    assert stored == {"detection": detection}
    resolution = snapshot(ContextStage.RESOLUTION, ready=True)
    stored = await contexts.record_kube_context(
        incident.incident_id, stage=ContextStage.RESOLUTION, snapshot=resolution
    )
    assert stored == {"detection": detection, "resolution": resolution}
    assert (await details(store, incident.incident_id))["kube_context"] == stored
    # A retried write is the same write: the stage is replaced, the other kept.
    again = await contexts.record_kube_context(
        incident.incident_id, stage=ContextStage.DETECTION, snapshot=detection
    )
    assert again == stored


async def test_an_incident_without_a_row_is_reported_not_created(store: AnyStore) -> None:
    missing = await contexts_for(store).record_kube_context(
        uuid.uuid4(),
        stage=ContextStage.DETECTION,
        snapshot=snapshot(ContextStage.DETECTION, ready=True),
    )
    assert missing is None


async def test_the_context_survives_a_restart(stores: Stores) -> None:
    store = await stores.open()
    incident = await store.create_incident(make_incident())
    detection = snapshot(ContextStage.DETECTION, ready=False)
    await contexts_for(store).record_kube_context(
        incident.incident_id, stage=ContextStage.DETECTION, snapshot=detection
    )
    await stores.close(store)
    reopened = await stores.open()
    assert (await details(reopened, incident.incident_id))["kube_context"] == {
        "detection": detection
    }
