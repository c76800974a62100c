"""Deployments, StatefulSets, ReplicaSets and Pods as real objects on the control plane, without
controllers.

There is no controller-manager or kubelet: the test creates what a rollout would (a ReplicaSet
per revision, owned by its Deployment; pods owned by the ReplicaSet, or by the StatefulSet with
its ``controller-revision-hash``) and sets the status itself through the status subresource, as
a kubelet or the StatefulSet controller would (ready, restarts, OOMKilled, revisions).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.e2e.controlplane import ApiError, ControlPlane

IMAGE = "registry.example/app:1"
APPS = "/apis/apps/v1/namespaces"
CORE = "/api/v1/namespaces"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Controller:
    """One workload ``name`` of ``kind`` (selector ``app=name``) in ``namespace``, and its pods."""

    kind = ""
    resource = ""

    def __init__(self, cp: ControlPlane, namespace: str, name: str) -> None:
        self.cp = cp
        self.namespace = namespace
        self.name = name
        spec: dict[str, Any] = {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
        }
        if self.kind == "StatefulSet":
            spec["serviceName"] = name
        created = cp.api(
            "POST",
            f"{APPS}/{namespace}/{self.resource}",
            {"apiVersion": "apps/v1", "kind": self.kind, "metadata": {"name": name}, "spec": spec},
        )
        self.uid: str = created["metadata"]["uid"]

    def _create_pod(self, name: str, labels: dict[str, str], owner: dict[str, Any]) -> str:
        pod = self.cp.api(
            "POST",
            f"{CORE}/{self.namespace}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
        )
        created: str = pod["metadata"]["name"]
        self.set_pod(created, ready=True)
        return created

    def set_pod(
        self, name: str, *, ready: bool, restarts: int = 0, terminated: str | None = None
    ) -> None:
        """The pod's status as its kubelet would write it; ``terminated``: the last
        termination's reason (``OOMKilled`` with exit code 137), just now."""
        container: dict[str, Any] = {
            "name": "app",
            "image": IMAGE,
            "imageID": "",
            "ready": ready,
            "restartCount": restarts,
            "state": {"running": {"startedAt": _now()}},
        }
        if terminated is not None:
            container["lastState"] = {
                "terminated": {
                    "reason": terminated,
                    "exitCode": 137,
                    "startedAt": _now(),
                    "finishedAt": _now(),
                }
            }
        self.cp.api(
            "PATCH",
            f"{CORE}/{self.namespace}/pods/{name}/status",
            {
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "containerStatuses": [container],
                }
            },
            content_type="application/merge-patch+json",
        )

    @staticmethod
    def _owner(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": True,
        }


class Workload(_Controller):
    """A Deployment, rolled out as ReplicaSets."""

    kind = "Deployment"
    resource = "deployments"

    def roll_out(self, *, revision: int, pods: int = 3) -> list[str]:
        """A ReplicaSet of ``revision`` with ``pods`` ready pods; their names."""
        hash_ = f"rev{revision}"
        labels = {"app": self.name, "pod-template-hash": hash_}
        replicaset = self.cp.api(
            "POST",
            f"{APPS}/{self.namespace}/replicasets",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{self.name}-{hash_}",
                    "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                    "ownerReferences": [self._owner("apps/v1", "Deployment", self.name, self.uid)],
                },
                "spec": {
                    "replicas": pods,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "app", "image": IMAGE}]},
                    },
                },
            },
        )
        owner = self._owner(
            "apps/v1", "ReplicaSet", replicaset["metadata"]["name"], replicaset["metadata"]["uid"]
        )
        return [
            self._create_pod(f"{self.name}-{hash_}-{index}", labels, owner) for index in range(pods)
        ]


class StatefulWorkload(_Controller):
    """A StatefulSet: pods ``name-<ordinal>`` labelled with their revision."""

    kind = "StatefulSet"
    resource = "statefulsets"

    def run_pod(self, ordinal: int, *, revision: str) -> str:
        """Pod ``ordinal`` (re-)created now at ``revision``, ready."""
        name = f"{self.name}-{ordinal}"
        try:
            self.cp.api("DELETE", f"{CORE}/{self.namespace}/pods/{name}?gracePeriodSeconds=0")
        except ApiError as error:
            if error.status != 404:
                raise
        labels = {"app": self.name, "controller-revision-hash": revision}
        owner = self._owner("apps/v1", "StatefulSet", self.name, self.uid)
        return self._create_pod(name, labels, owner)

    def set_revisions(self, *, current: str, update: str) -> None:
        """``status.currentRevision`` and ``updateRevision``, as its controller writes them."""
        self.cp.api(
            "PATCH",
            f"{APPS}/{self.namespace}/statefulsets/{self.name}/status",
            {"status": {"replicas": 3, "currentRevision": current, "updateRevision": update}},
            content_type="application/merge-patch+json",
        )
