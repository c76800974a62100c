"""An incident's Kubernetes context: targets, snapshots and probable causes, from plain dicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from downtime_operator.domain.kube_context import (
    NO_CHANGE_FOUND,
    ContextStage,
    NamespaceObjects,
    TargetKind,
    TargetObject,
    TargetRef,
    context_record,
    context_scope,
    context_snapshot_json,
    context_summary,
    context_target,
    infer_target,
    take_snapshot,
)
from downtime_operator.domain.models import MonitorSpec
from downtime_operator.domain.spec import InvalidSpecError, parse_monitor_spec

FAILED_AT = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)
LABELS = {"app": "api"}


def _ts(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def pod(
    name: str,
    *,
    ready: bool = True,
    restarts: int = 0,
    reason: str | None = None,
    exit_code: int = 137,
    finished: datetime | None = None,
    replicaset: str = "api-7d9f",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "api", "restartCount": restarts}
    if reason is not None:
        container["lastState"] = {
            "terminated": {
                "reason": reason,
                "exitCode": exit_code,
                "finishedAt": _ts(finished or FAILED_AT - timedelta(seconds=20)),
            }
        }
    return {
        "metadata": {
            "name": name,
            "labels": labels or LABELS,
            "ownerReferences": [{"kind": "ReplicaSet", "name": replicaset}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [container],
        },
    }


def replicaset(name: str, *, revision: int, created: datetime) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": _ts(created),
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "name": "api"}],
        },
        "spec": {"replicas": 3},
    }


def endpointslice(service: str, *ready: bool) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{service}-abc", "labels": {"kubernetes.io/service-name": service}},
        "endpoints": [{"conditions": {"ready": r}} for r in ready],
    }


def warning(kind: str, name: str, reason: str, at: datetime) -> dict[str, Any]:
    return {
        "type": "Warning",
        "reason": reason,
        "message": f"{reason} happened",
        "count": 2,
        "lastTimestamp": _ts(at),
        "involvedObject": {"kind": kind, "name": name},
    }


SERVICE = TargetRef(kind=TargetKind.SERVICE, name="api", namespace="shop")
DEPLOYMENT = TargetRef(kind=TargetKind.DEPLOYMENT, name="api", namespace="shop")
SERVICE_BODY = {"spec": {"selector": LABELS}}
DEPLOYMENT_BODY = {"spec": {"selector": {"matchLabels": LABELS}}}
OLD_RS = replicaset("api-5c4b", revision=13, created=FAILED_AT - timedelta(days=2))
CURRENT_RS = replicaset("api-7d9f", revision=14, created=FAILED_AT - timedelta(days=1))


def snapshot(
    objects: NamespaceObjects,
    *,
    target: TargetRef = SERVICE,
    found: TargetObject | None = None,
) -> Any:
    return take_snapshot(
        stage=ContextStage.DETECTION,
        target=target,
        found=found or TargetObject(body=SERVICE_BODY),
        objects=objects,
        window_start=FAILED_AT - timedelta(minutes=5),
        window_end=FAILED_AT + timedelta(seconds=30),
        first_failure_at=FAILED_AT,
        taken_at=FAILED_AT + timedelta(seconds=30),
    )


def healthy(**changes: Any) -> NamespaceObjects:
    objects: dict[str, Any] = {
        "pods": [pod("api-1"), pod("api-2"), pod("api-3")],
        "replicasets": [OLD_RS, CURRENT_RS],
        "endpointslices": [endpointslice("api", True, True, True)],
        "events": [],
        **changes,
    }
    return NamespaceObjects(**objects)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://api.shop.svc:8080/health", ("api", "shop")),
        ("https://api.shop.svc.cluster.local/health", ("api", "shop")),
        ("http://api.shop.svc.cluster.local./", ("api", "shop")),
        ("http://api.shop.example.com/health", None),
        ("http://127.0.0.1:8080/health", None),
        ("http://shop.svc/health", None),
    ],
)
def test_in_cluster_service_urls_name_their_service(
    url: str, expected: tuple[str, str] | None
) -> None:
    found = infer_target(url)
    assert (None if found is None else (found.name, found.namespace)) == expected
    if found is not None:
        assert found.kind is TargetKind.SERVICE and found.inferred


def test_target_ref_wins_and_other_namespaces_are_not_read() -> None:
    named = context_target(
        named=(TargetKind.DEPLOYMENT, "web"), url="http://api.shop.svc/", namespace="shop"
    )
    assert named == TargetRef(kind=TargetKind.DEPLOYMENT, name="web", namespace="shop")
    assert context_target(named=None, url="http://api.other.svc/", namespace="shop") is None


def test_spec_target_ref_is_parsed_and_validated() -> None:
    spec = parse_monitor_spec(
        {"url": "http://127.0.0.1/", "targetRef": {"kind": "StatefulSet", "name": "db"}}
    )
    assert spec.target_ref == (TargetKind.STATEFULSET, "db")
    scope = context_scope(spec, namespace="shop")
    assert scope is not None and scope.before == spec.log_capture.before
    assert context_scope(MonitorSpec(url="http://127.0.0.1/"), namespace="shop") is None
    with pytest.raises(InvalidSpecError, match=r"spec\.targetRef\.kind"):
        parse_monitor_spec({"url": "http://x/", "targetRef": {"kind": "Pod", "name": "db"}})
    with pytest.raises(InvalidSpecError, match=r"spec\.targetRef\.name"):
        parse_monitor_spec({"url": "http://x/", "targetRef": {"kind": "Service", "name": "Db!"}})


def test_nothing_changed_says_so_instead_of_guessing() -> None:
    taken = snapshot(healthy())
    assert taken.causes == ()
    assert taken.top_cause == NO_CHANGE_FOUND
    assert (taken.pods_total, taken.pods_ready, taken.ready_endpoints) == (3, 3, 3)
    assert [r.revision for r in taken.rollouts] == [14, 13]


def test_oom_killed_pods_are_the_top_cause_with_their_evidence() -> None:
    pods = [
        pod("api-1", ready=False, restarts=2, reason="OOMKilled"),
        pod("api-2", ready=False, restarts=1, reason="OOMKilled"),
        pod("api-3"),
    ]
    taken = snapshot(healthy(pods=pods))
    assert taken.top_cause == "2 of 3 pods OOMKilled"
    evidence = taken.causes[0].evidence
    assert len(evidence) == 2 and "exit code 137" in evidence[0] and "2 restarts" in evidence[0]
    oom = taken.pods[0]
    assert (oom.last_termination_reason, oom.last_exit_code, oom.restarts) == ("OOMKilled", 137, 2)


def test_terminations_outside_the_window_are_history_not_causes() -> None:
    long_ago = FAILED_AT - timedelta(hours=3)
    taken = snapshot(healthy(pods=[pod("api-1", reason="OOMKilled", finished=long_ago)]))
    assert taken.causes == ()


def test_a_rollout_just_before_the_failure_is_named_with_its_lead() -> None:
    new_rs = replicaset("api-9a8b", revision=15, created=FAILED_AT - timedelta(seconds=40))
    taken = snapshot(healthy(replicasets=[OLD_RS, CURRENT_RS, new_rs]))
    assert (
        taken.top_cause
        == "Deployment api rolled out to revision 15, 40 s before the first failed check"
    )
    assert "api-9a8b" in taken.causes[0].evidence[0]


def test_a_deployments_first_revision_is_its_creation_not_a_rollout() -> None:
    first = replicaset("api-7d9f", revision=1, created=FAILED_AT - timedelta(seconds=40))
    taken = snapshot(healthy(replicasets=[first]))
    assert [r.revision for r in taken.rollouts] == [1]
    assert taken.causes == ()


def test_a_rollout_after_the_first_failure_is_not_its_cause() -> None:
    fix = replicaset("api-9a8b", revision=15, created=FAILED_AT + timedelta(seconds=10))
    assert snapshot(healthy(replicasets=[OLD_RS, CURRENT_RS, fix])).causes == ()


def test_no_ready_endpoints_and_no_ready_pods() -> None:
    pods = [pod("api-1", ready=False), pod("api-2", ready=False)]
    taken = snapshot(healthy(pods=pods, endpointslices=[endpointslice("api", False, False)]))
    assert [c.summary for c in taken.causes] == ["0 ready endpoints", "0 of 2 pods ready"]


def test_warning_events_of_its_objects_within_the_window() -> None:
    events = [
        warning("Pod", "api-1", "Unhealthy", FAILED_AT - timedelta(seconds=5)),
        warning("Pod", "other-1", "BackOff", FAILED_AT - timedelta(seconds=5)),
        warning("Pod", "api-2", "BackOff", FAILED_AT - timedelta(hours=2)),
    ]
    taken = snapshot(healthy(events=events))
    assert [(e.object_name, e.reason) for e in taken.events] == [("api-1", "Unhealthy")]
    assert taken.top_cause == "1 Warning events (Unhealthy)"


def test_deployment_target_finds_its_pods_and_their_endpoints() -> None:
    slice_ = {
        "metadata": {"name": "front-x", "labels": {"kubernetes.io/service-name": "front"}},
        "endpoints": [
            {"conditions": {"ready": False}, "targetRef": {"kind": "Pod", "name": "api-1"}},
            {"conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": "zzz"}},
        ],
    }
    taken = snapshot(
        healthy(endpointslices=[slice_]),
        target=DEPLOYMENT,
        found=TargetObject(body=DEPLOYMENT_BODY),
    )
    assert (taken.ready_endpoints, taken.endpoints_total) == (0, 1)
    assert taken.target == "Deployment api"


def test_missing_and_forbidden_are_recorded_not_guessed() -> None:
    missing = snapshot(healthy(), found=TargetObject(problem="not found"))
    assert missing.top_cause == "Service api does not exist"
    assert missing.pods_total == 0
    forbidden = snapshot(
        NamespaceObjects(unreadable={"pods": "forbidden"}),
        found=TargetObject(problem="forbidden"),
    )
    assert forbidden.causes == ()
    assert forbidden.unreadable == ("pods: forbidden", "target: forbidden")


def test_stored_record_round_trips_and_summarises_detection_first() -> None:
    oom = snapshot(healthy(pods=[pod("api-1", ready=False, reason="OOMKilled"), pod("api-2")]))
    later = take_snapshot(
        stage=ContextStage.RESOLUTION,
        target=SERVICE,
        found=TargetObject(body=SERVICE_BODY),
        objects=healthy(endpointslices=[endpointslice("api", False)]),
        window_start=FAILED_AT - timedelta(minutes=5),
        window_end=FAILED_AT + timedelta(minutes=2),
        first_failure_at=FAILED_AT,
        taken_at=FAILED_AT + timedelta(minutes=2),
    )
    stored = {"detection": context_snapshot_json(oom), "resolution": context_snapshot_json(later)}
    assert context_record(stored)[ContextStage.DETECTION] == oom
    summary = context_summary(stored)
    assert summary == {
        "target": "Service api",
        "stage": "resolution",
        "topCause": "1 of 2 pods OOMKilled",
        "probableCauses": ["1 of 2 pods OOMKilled", "0 ready endpoints"],
        "podsReady": "3/3",
        "readyEndpoints": 0,
        "unreadable": [],
    }
    assert context_summary(None) is None
    assert context_summary({"detection": {"garbage": 1}}) is None


STATEFULSET = TargetRef(kind=TargetKind.STATEFULSET, name="db", namespace="shop")
DB_LABELS = {"app": "db"}


def db_pod(ordinal: int, *, revision: str, created: datetime, ready: bool = True) -> dict[str, Any]:
    body = pod(
        f"db-{ordinal}",
        ready=ready,
        labels={**DB_LABELS, "controller-revision-hash": revision},
    )
    body["metadata"]["creationTimestamp"] = _ts(created)
    body["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "name": "db"}]
    return body


def db_snapshot(pods: list[dict[str, Any]], *, current: str, update: str) -> Any:
    body = {
        "spec": {"selector": {"matchLabels": DB_LABELS}},
        "status": {"currentRevision": current, "updateRevision": update},
    }
    return snapshot(NamespaceObjects(pods=pods), target=STATEFULSET, found=TargetObject(body=body))


def test_a_statefulset_stuck_mid_rollout_names_its_new_revision() -> None:
    """The newest ordinal was re-created at the new revision 40 s before the failure and is
    not ready; the others still run the old one."""
    long_ago = FAILED_AT - timedelta(days=3)
    pods = [
        db_pod(0, revision="db-5c4b", created=long_ago),
        db_pod(1, revision="db-5c4b", created=long_ago),
        db_pod(2, revision="db-9a8b", created=FAILED_AT - timedelta(seconds=40), ready=False),
    ]
    taken = db_snapshot(pods, current="db-5c4b", update="db-9a8b")
    assert taken.top_cause == (
        "StatefulSet db rolled out to revision db-9a8b, 40 s before the first failed check"
    )
    assert "1 pods at it" in taken.causes[0].evidence[0]
    assert [(r.replicaset, r.replicas) for r in taken.rollouts] == [("db-9a8b", 1), ("db-5c4b", 2)]


def test_a_statefulset_at_one_revision_has_no_rollout_to_blame() -> None:
    created = FAILED_AT - timedelta(seconds=40)  # pods re-created, but nothing says by a rollout
    pods = [db_pod(n, revision="db-5c4b", created=created) for n in range(3)]
    taken = db_snapshot(pods, current="db-5c4b", update="db-5c4b")
    assert [r.replicaset for r in taken.rollouts] == ["db-5c4b"]
    assert taken.causes == ()


def test_a_statefulset_update_with_no_pod_yet_is_listed_without_a_time() -> None:
    long_ago = FAILED_AT - timedelta(days=3)
    pods = [db_pod(n, revision="db-5c4b", created=long_ago) for n in range(3)]
    taken = db_snapshot(pods, current="db-5c4b", update="db-9a8b")
    newest = taken.rollouts[0]
    assert (newest.replicaset, newest.created_at) == ("db-9a8b", None)
    assert taken.causes == ()  # no time to compare with the failure: not guessed
