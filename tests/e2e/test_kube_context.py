"""Each incident's Kubernetes context, against the real control plane: what ran behind the
endpoint when it failed, and the probable cause it supports (or "no change found")."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from downtime_operator.adapters.kube.context import KubeContextReader
from downtime_operator.adapters.kube.resources import KubeResources, load_api_client
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.adapters.sqlite.kube_context import SqliteKubeContexts
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.kube_context import (
    NO_CHANGE_FOUND,
    ContextScope,
    TargetKind,
    TargetRef,
)
from downtime_operator.domain.models import Incident, MonitorRef, Severity
from downtime_operator.services.kube_context import KubeContextSink
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import Env, eventually, monitor
from tests.e2e.workloads import StatefulWorkload, Workload
from tests.support.target import TargetServer
from tests.unit.fakes import FakeClock

TARGET_REF = {"kind": "Deployment", "name": "api"}


async def incident_with_context(env: Env) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        items = env.opened_incidents()
        return items[0] if items and items[0]["status"].get("context") else None

    return await eventually(found, within=30, what="status.context on the DowntimeIncident")


async def stored_context(env: Env, *stages: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        rows = await env.rows()
        if not rows or rows[0]["kube_context"] is None:
            return None
        stored: dict[str, Any] = json.loads(rows[0]["kube_context"])
        return stored if set(stages) <= set(stored) else None

    return await eventually(found, within=30, what=f"kube_context {stages} in PostgreSQL")


async def up(env: Env, target: TargetServer) -> None:
    env.apply(monitor("api", target.url, targetRef=TARGET_REF))
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up")


async def test_oom_killed_pods_are_listed_and_named_as_the_cause(
    env: Env, target: TargetServer
) -> None:
    api = Workload(env.cp, env.namespace, "api")
    pods = api.roll_out(revision=1)
    await up(env, target)
    for name in pods[:2]:
        api.set_pod(name, ready=False, restarts=1, terminated="OOMKilled")
    target.set_mode("failing")
    incident = await incident_with_context(env)
    context = incident["status"]["context"]
    assert context["topCause"] == "2 of 3 pods OOMKilled"
    assert context["podsReady"] == "1/3"
    assert "2 of 3 pods OOMKilled" in env.cp.kubectl("get", "dti", "-n", env.namespace).stdout
    detection = (await stored_context(env, "detection"))["detection"]
    killed = {p["name"]: p for p in detection["pods"] if p["last_termination_reason"]}
    assert set(killed) == set(pods[:2])
    assert {(p["last_exit_code"], p["restarts"]) for p in killed.values()} == {(137, 1)}
    assert any(pods[0] in line for line in detection["causes"][0]["evidence"])

    for name in pods[:2]:
        api.set_pod(name, ready=True, restarts=1)
    target.set_mode("healthy")
    resolution = (await stored_context(env, "detection", "resolution"))["resolution"]
    assert resolution["pods_ready"] == 3


async def test_a_rollout_30_s_before_the_outage_is_the_probable_cause(
    env: Env, target: TargetServer
) -> None:
    api = Workload(env.cp, env.namespace, "api")
    api.roll_out(revision=1)
    await up(env, target)
    api.roll_out(revision=2)
    await asyncio.sleep(30)
    target.set_mode("failing")
    incident = await incident_with_context(env)
    top = incident["status"]["context"]["topCause"]
    found = re.fullmatch(
        r"Deployment api rolled out to revision 2, (\d+) s before the first failed check", top
    )
    assert found is not None, top
    assert 29 <= int(found[1]) <= 35


async def test_a_statefulset_stuck_in_a_rollout_is_the_probable_cause(
    env: Env, target: TargetServer
) -> None:
    """Its newest pod was re-created at the update revision 20 s before the outage; the rest
    still run the current one."""
    db = StatefulWorkload(env.cp, env.namespace, "db")
    for ordinal in range(3):
        db.run_pod(ordinal, revision="db-5c4b")
    db.set_revisions(current="db-5c4b", update="db-5c4b")
    env.apply(monitor("api", target.url, targetRef={"kind": "StatefulSet", "name": "db"}))
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up")
    db.set_revisions(current="db-5c4b", update="db-9a8b")
    new = db.run_pod(2, revision="db-9a8b")
    db.set_pod(new, ready=False)
    await asyncio.sleep(20)
    target.set_mode("failing")
    incident = await incident_with_context(env)
    top = incident["status"]["context"]["topCause"]
    found = re.fullmatch(
        r"StatefulSet db rolled out to revision db-9a8b, (\d+) s before the first failed check",
        top,
    )
    assert found is not None, top
    assert 19 <= int(found[1]) <= 26
    detection = (await stored_context(env, "detection"))["detection"]
    assert [(r["replicaset"], r["replicas"]) for r in detection["rollouts"]] == [
        ("db-9a8b", 1),
        ("db-5c4b", 2),
    ]


async def test_an_outage_with_no_kubernetes_change_says_so(env: Env, target: TargetServer) -> None:
    api = Workload(env.cp, env.namespace, "api")
    api.roll_out(revision=1)
    await up(env, target)
    target.set_mode("failing")
    incident = await incident_with_context(env)
    assert incident["status"]["context"]["topCause"] == NO_CHANGE_FOUND
    detection = (await stored_context(env, "detection"))["detection"]
    assert (detection["pods_total"], detection["causes"]) == (3, [])


async def test_refused_and_missing_objects_are_recorded_not_raised(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A ServiceAccount with no RBAC: every read is a 403, answered once each and recorded;
    a target that does not exist is named as such."""
    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = control_plane.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    clients = [
        await load_api_client(str(control_plane.write_kubeconfig(tmp_path / "nobody", token))),
        await load_api_client(str(control_plane.kubeconfig)),
    ]
    refused, admin = (KubeContextReader(api_client) for api_client in clients)
    target = TargetRef(kind=TargetKind.SERVICE, name="gone", namespace=namespace)
    try:
        found, objects = await refused.read_context(target)
        assert (found.problem, dict(objects.unreadable)) == (
            "forbidden",
            dict.fromkeys(("pods", "replicasets", "endpointslices", "events"), "forbidden"),
        )
        assert refused.requests == 5
        missing, objects = await admin.read_context(target)
        assert (missing.problem, dict(objects.unreadable)) == ("not found", {})
    finally:
        for api_client in clients:
            await api_client.close()  # type: ignore[no-untyped-call]


INCIDENTS = 100


async def test_the_context_of_100_simultaneous_incidents_is_cheap(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """Acceptance 8 (cost): 100 incidents opening together, each with its own Deployment of 3
    pods, cost < 300 API requests and < 5 s for their context (read, stored, shown)."""
    at = datetime.now(UTC)
    incidents = []
    for index in range(INCIDENTS):
        name = f"svc{index}"
        Workload(control_plane, namespace, name).roll_out(revision=1)
        incidents.append(
            Incident(
                incident_id=uuid.uuid4(),
                monitor=MonitorRef(namespace=namespace, name=name),
                k8s_name=f"{name}-{at:%Y%m%d-%H%M%S}",
                health_endpoint=f"http://{name}/health",
                environment="production",
                started_at=at,
                detected_at=at,
                severity=Severity.HIGH,
            )
        )
    store = await SqliteIncidentStore.open(tmp_path / "downtime.db")
    resources = KubeResources(await load_api_client(str(control_plane.kubeconfig)))
    try:
        for incident in incidents:
            await store.create_incident(incident)
            await resources.upsert_incident(incident)
        reader = KubeContextReader(resources.api_client)
        sink = KubeContextSink(
            reader=reader,
            store=SqliteKubeContexts(store.database),
            view=resources,
            clock=FakeClock(at + timedelta(seconds=1)),
        )
        started_at = datetime.now(UTC)
        began = time.monotonic()
        await asyncio.gather(
            *(
                sink.apply(
                    IncidentEvent(
                        kind=IncidentEventKind.OPENED,
                        incident=incident,
                        context=ContextScope(
                            target=TargetRef(
                                kind=TargetKind.DEPLOYMENT,
                                name=incident.monitor.name,
                                namespace=namespace,
                            ),
                            before=timedelta(minutes=5),
                            after=timedelta(minutes=5),
                        ),
                    )
                )
                for incident in incidents
            )
        )
        seconds = time.monotonic() - began
    finally:
        await resources.close()
        await store.close()

    def requests() -> list[dict[str, Any]]:
        return [
            e
            for e in control_plane.audit_events(namespace=namespace)
            if e["requestReceivedTimestamp"] >= started_at.isoformat().replace("+00:00", "Z")
        ]

    made = await eventually(
        lambda: found if len(found := requests()) >= reader.requests + INCIDENTS else None,
        within=10,
        what="the audit log's lines",
    )
    shown = incident_context(control_plane, namespace, incidents[-1].k8s_name)
    assert shown["topCause"] == NO_CHANGE_FOUND and shown["podsReady"] == "3/3"
    print(f"context of {INCIDENTS} incidents: {len(made)} API requests in {seconds:.2f} s")
    assert len(made) < 300
    assert seconds < 5


def incident_context(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    body = cp.api(
        "GET", f"/apis/monitoring.gatewayz.ai/v1/namespaces/{namespace}/downtimeincidents/{name}"
    )
    context: dict[str, Any] = body["status"]["context"]
    return context
