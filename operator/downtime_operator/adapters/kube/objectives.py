"""``ObjectiveSource`` over the HealthMonitors: every ``spec.slo``, read when a report asks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from downtime_operator.adapters.kube.resources import KubeResources
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.sla_report import MonitorObjective, monitor_objective


class KubeObjectives:
    def __init__(self, resources: KubeResources, *, namespaces: Sequence[str]) -> None:
        self._resources = resources
        self._namespaces = tuple(namespaces)

    async def objectives(self) -> dict[MonitorRef, MonitorObjective]:
        found: dict[MonitorRef, MonitorObjective] = {}
        for body in await self._resources.list_monitors(namespaces=self._namespaces):
            meta = body.get("metadata") or {}
            created = meta.get("creationTimestamp")
            objective = monitor_objective(
                body.get("spec") or {},
                created_at=datetime.fromisoformat(created.replace("Z", "+00:00"))
                if created
                else None,
            )
            if objective is not None:
                found[MonitorRef(namespace=meta["namespace"], name=meta["name"])] = objective
        return found
