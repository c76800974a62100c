"""The kopf layer: a daemon per HealthMonitor that hands over to its MonitorRunner.

Handlers are registered on an explicit registry (no import-time globals) and find the engine in
kopf's ``memo``, which the wiring fills at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import kopf

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.engine import MonitorEngine
from downtime_operator.services.monitor_runner import SpecSnapshot

GROUP = "monitoring.gatewayz.ai"
VERSION = "v1"
EngineFactory = Callable[[], Awaitable[MonitorEngine]]

# Long enough for an in-flight check (timeout < interval) to finish before kopf cancels it.
CANCELLATION_TIMEOUT = 30.0


class _KopfStop:
    def __init__(self, stopped: kopf.DaemonStopped) -> None:
        self._stopped = stopped

    def is_set(self) -> bool:
        return bool(self._stopped)

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await self._stopped.wait(seconds)


def register(
    registry: kopf.OperatorRegistry,
    *,
    engine_factory: EngineFactory,
    configure: Callable[[kopf.OperatorSettings], None],
) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry gets none of kopf's default login handlers: in a pod use the
        # service account, elsewhere the kubeconfig (KUBECONFIG), like the adapters do.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        memo["engine"] = await engine_factory()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        engine: MonitorEngine | None = memo.get("engine")
        if engine is not None:
            await engine.close()

    @kopf.on.field(GROUP, VERSION, "downtimeincidents", field="status.status", registry=registry)
    async def incident_status_changed(
        *, new: Any, spec: kopf.Spec, namespace: str | None, memo: Any, **_: Any
    ) -> None:
        # A human resolved or acknowledged the incident through the admin API (maybe in another
        # process): the monitor's runner must not write the old status back.
        if new not in ("resolved", "investigating"):
            return
        engine: MonitorEngine | None = memo.get("engine")
        monitor_ref = spec.get("monitorRef") or {}
        if engine is None or not monitor_ref.get("name"):
            return
        ref = MonitorRef(
            namespace=monitor_ref.get("namespace") or namespace or "", name=monitor_ref["name"]
        )
        runner = engine.runners.get(ref)
        if runner is None:
            return
        incident_id = UUID(str(spec["incidentId"]))
        if new == "resolved":
            runner.resolved_elsewhere(incident_id)
        else:
            runner.acknowledged_elsewhere(incident_id)

    @kopf.daemon(
        GROUP,
        VERSION,
        "healthmonitors",
        registry=registry,
        cancellation_timeout=CANCELLATION_TIMEOUT,
    )
    async def monitor(
        *,
        name: str,
        namespace: str | None,
        spec: kopf.Spec,
        meta: kopf.Meta,
        stopped: kopf.DaemonStopped,
        memo: Any,
        **_: Any,
    ) -> None:
        engine: MonitorEngine = memo["engine"]
        ref = MonitorRef(namespace=namespace or "", name=name)
        runner = engine.runner_for(ref)
        created = meta.get("creationTimestamp")
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
        await runner.run(
            read_spec=lambda: SpecSnapshot(
                spec=dict(spec), generation=meta.get("generation"), created_at=created_at
            ),
            stop=_KopfStop(stopped),
        )
        if meta.get("deletionTimestamp"):
            runner.resolve_for_deletion()
            engine.forget(ref)
