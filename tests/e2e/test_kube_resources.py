"""The Kubernetes adapter alone against the real API server: what no fake can show."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from downtime_operator.adapters.kube.resources import KubeResources, load_api_client
from downtime_operator.adapters.kube.secrets import KubeSecrets
from downtime_operator.assembly import resource_pipeline
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.models import Incident, IncidentStatus, Severity
from downtime_operator.services.ports import SecretUnavailableError, WriteRefusedError
from tests.contract.stores import make_incident
from tests.e2e.controlplane import ControlPlane


def ongoing(namespace: str) -> Incident:
    """An open incident of ``<namespace>/api``, named ``api-20260310-120000``."""
    return make_incident(
        namespace=namespace,
        started_at=datetime(2026, 3, 10, 12, 0, tzinfo=UTC),
        error_message="HTTP 503",
        http_status_code=503,
    )


@pytest.fixture
async def resources(control_plane: ControlPlane) -> AsyncIterator[KubeResources]:
    kube = KubeResources(await load_api_client(str(control_plane.kubeconfig)))
    yield kube
    await kube.close()


async def test_a_stale_write_never_moves_a_resolved_incident_back(
    resources: KubeResources, control_plane: ControlPlane, namespace: str
) -> None:
    """A runner's escalation queued before an admin resolve arrives after it: the CR stays
    resolved (the race the admin API and a running monitor can have)."""
    incident = ongoing(namespace)
    await resources.upsert_incident(incident)
    resolved = dataclasses.replace(
        incident,
        status=IncidentStatus.RESOLVED,
        ended_at=incident.started_at + timedelta(minutes=5),
        duration_seconds=300.0,
    )
    await resources.upsert_incident(resolved)
    escalated = dataclasses.replace(incident, severity=Severity.CRITICAL)
    await resources.upsert_incident(escalated)  # the stale write

    body = control_plane.kubectl_json(
        "get", "downtimeincidents", incident.k8s_name, "-n", namespace
    )
    assert body["status"]["status"] == "resolved"
    assert body["status"]["endedAt"].startswith("2026-03-10T12:05:00")

    # Open incidents still move on: escalation of a second, open one is written.
    second = dataclasses.replace(
        ongoing(namespace), k8s_name="api-20260310-130000", incident_id=uuid.uuid4()
    )
    await resources.upsert_incident(second)
    await resources.upsert_incident(dataclasses.replace(second, severity=Severity.CRITICAL))
    body = control_plane.kubectl_json("get", "downtimeincidents", second.k8s_name, "-n", namespace)
    assert (body["status"]["status"], body["status"]["severity"]) == ("ongoing", "critical")


def secret(name: str, **string_data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": string_data,
    }


async def test_secret_values_for_headers_from(
    resources: KubeResources, control_plane: ControlPlane, namespace: str
) -> None:
    clock = [0.0]
    secrets = KubeSecrets(resources.api_client, ttl=60, monotonic=lambda: clock[0])
    control_plane.apply(
        secret("api-token", token="Bearer one\n", multi="a\nb"), namespace=namespace
    )

    async def value(name: str, key: str) -> str:
        return await secrets.secret_value(namespace=namespace, name=name, key=key)

    assert await value("api-token", "token") == "Bearer one"  # echo's newline dropped
    for name, key, message in (
        ("api-token", "missing", f"Secret {namespace}/api-token has no key 'missing'"),
        ("nope", "token", f"Secret {namespace}/nope not found"),
        ("api-token", "multi", "holds a line break"),
    ):
        with pytest.raises(SecretUnavailableError, match=message):
            await value(name, key)

    control_plane.apply(secret("api-token", token="Bearer two"), namespace=namespace)
    assert await value("api-token", "token") == "Bearer one"  # cached for the ttl
    clock[0] = 61
    assert await value("api-token", "token") == "Bearer two"  # a rotation is picked up


async def test_a_refused_write_is_dropped_and_does_not_hold_up_the_next(
    resources: KubeResources, control_plane: ControlPlane, namespace: str
) -> None:
    """A body the API server refuses (422, here a schema maxLength) is reported and dropped by
    the resource sink's ordered queue; the writes queued behind it still go through."""
    refused = dataclasses.replace(
        ongoing(namespace), health_endpoint="http://api/" + "x" * 3000, k8s_name="api-bad"
    )
    with pytest.raises(WriteRefusedError, match=r"HTTP 422 .*healthEndpoint"):
        await resources.upsert_incident(refused)

    pipeline = resource_pipeline(resources)
    good = ongoing(namespace)
    for incident in (refused, good):
        pipeline.publish(IncidentEvent(kind=IncidentEventKind.OPENED, incident=incident))
    pipeline.start()
    assert await pipeline.close(drain_timeout=20)
    assert [queue.failures for queue in pipeline.queues] == [0]  # refused once, not retried
    missing = control_plane.kubectl(
        "get", "downtimeincidents", refused.k8s_name, "-n", namespace, check=False
    )
    assert missing.returncode != 0
    body = control_plane.kubectl_json("get", "downtimeincidents", good.k8s_name, "-n", namespace)
    assert body["spec"]["incidentId"] == str(good.incident_id)
