"""Deployments, ReplicaSets and Pods as real objects on the control plane, without controllers.

There is no controller-manager or kubelet: the test creates what a rollout would (a ReplicaSet
per revision, owned by its Deployment; pods owned by the ReplicaSet) and sets the pods' status
itself through the status subresource, as a kubelet would (ready, restarts, OOMKilled).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.e2e.controlplane import ControlPlane

IMAGE = "registry.example/app:1"
APPS = "/apis/apps/v1/namespaces"
CORE = "/api/v1/namespaces"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Workload:
    """One Deployment ``name`` (selector ``app=name``) in ``namespace``."""

    def __init__(self, cp: ControlPlane, namespace: str, name: str) -> None:
        self.cp = cp
        self.namespace = namespace
        self.name = name
        created = cp.api(
            "POST",
            f"{APPS}/{namespace}/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "app", "image": IMAGE}]},
                    },
                },
            },
        )
        self.uid: str = created["metadata"]["uid"]

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
        names = []
        for index in range(pods):
            pod = self.cp.api(
                "POST",
                f"{CORE}/{self.namespace}/pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{self.name}-{hash_}-{index}",
                        "labels": labels,
                        "ownerReferences": [
                            self._owner(
                                "apps/v1",
                                "ReplicaSet",
                                replicaset["metadata"]["name"],
                                replicaset["metadata"]["uid"],
                            )
                        ],
                    },
                    "spec": {"containers": [{"name": "app", "image": IMAGE}]},
                },
            )
            names.append(pod["metadata"]["name"])
            self.set_pod(names[-1], ready=True)
        return names

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
