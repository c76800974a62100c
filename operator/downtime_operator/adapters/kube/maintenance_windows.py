"""``AdHocMaintenance`` in Kubernetes: an ad-hoc window is a MaintenanceWindow like any other,
so every replica's watch acts on it, ``kubectl get mw`` shows it and it can be deleted early."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.aio import client

from downtime_operator.adapters.kube.bodies import API_VERSION, COMPONENT, GROUP, VERSION
from downtime_operator.services.slo.ports import WindowBody

WINDOWS = "maintenancewindows"


class KubeMaintenanceWindows:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api_client)

    async def start_maintenance(self, *, namespace: str, name: str, spec: WindowBody) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": "MaintenanceWindow",
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/managed-by": COMPONENT},
            },
            "spec": dict(spec),
        }
        await self._custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WINDOWS, body)

    async def patch_window_status(
        self, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        await self._custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            WINDOWS,
            name,
            {"status": dict(status)},
        )
