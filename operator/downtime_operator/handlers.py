"""The kopf layer: a daemon per HealthMonitor that hands over to its MonitorRunner.

Handlers are registered on an explicit registry (no import-time globals) and find the engine in
kopf's ``memo``, which the wiring fills at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import kopf

from downtime_operator.domain.maintenance import InvalidWindowError, parse_window_spec
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.sharding import Shard
from downtime_operator.services.engine import MonitorEngine
from downtime_operator.services.monitor_runner import SpecSnapshot
from downtime_operator.services.slo.maintenance import MaintenanceCalendar

logger = logging.getLogger(__name__)

GROUP = "monitoring.gatewayz.ai"
VERSION = "v1"
MonitorListing = Callable[[], Awaitable[list[dict[str, Any]]]]
EngineFactory = Callable[[], Awaitable[tuple[MonitorEngine, MonitorListing | None]]]
"""The engine, and how to list every HealthMonitor once at start-up so that their runners
start at once (``EarlyRuns``); None when kopf's peering decides whether this replica runs."""

# Long enough for an in-flight check (timeout < interval) to finish before kopf cancels it.
CANCELLATION_TIMEOUT = 30.0


class ChannelUpdates(Protocol):
    def update(
        self, *, namespace: str, name: str, spec: Mapping[str, Any], generation: int | None
    ) -> None: ...

    def remove(self, *, namespace: str, name: str) -> None: ...


class _KopfStop:
    """kopf's stop flag, or the engine closing: at shutdown kopf runs the cleanup handler
    (which closes the engine and its prober) while it may still be starting daemons."""

    def __init__(self, stopped: kopf.DaemonStopped, engine: MonitorEngine) -> None:
        self._stopped = stopped
        self._engine = engine

    def is_set(self) -> bool:
        return bool(self._stopped) or self._engine.closing

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await self._stopped.wait(seconds)


def register(
    registry: kopf.OperatorRegistry,
    *,
    engine_factory: EngineFactory,
    configure: Callable[[kopf.OperatorSettings], None],
    shard: Shard | None = None,
    channels: ChannelUpdates | None = None,
    maintenance: MaintenanceCalendar | None = None,
) -> None:
    def owned(meta: Mapping[str, Any]) -> bool:
        return shard is None or shard.owns(str(meta.get("uid")))

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry gets none of kopf's default login handlers: in a pod use the
        # service account, elsewhere the kubeconfig (KUBECONFIG), like the adapters do.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        engine, list_monitors = await engine_factory()
        memo["engine"] = engine
        if list_monitors is not None:
            await _start_early(engine, list_monitors=list_monitors, owned=owned)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        engine: MonitorEngine | None = memo.get("engine")
        if engine is not None:
            await engine.close()

    # A spying handler, not a change handler: kopf keeps no "last handled" annotation on each
    # DowntimeIncident for it (one PATCH less per incident, which a mass outage multiplies),
    # and sharded replicas, which all see every incident, never trip over each other's
    # bookkeeping. Acting on a status seen before is harmless: the runner ignores it.
    @kopf.on.event(GROUP, VERSION, "downtimeincidents", registry=registry)
    async def incident_event(
        *, body: kopf.Body, namespace: str | None, memo: Any, **_: Any
    ) -> None:
        # A human resolved or acknowledged the incident through the admin API (maybe in another
        # process): the monitor's runner must not write the old status back.
        state = (body.get("status") or {}).get("status")
        if state not in ("resolved", "investigating"):
            return
        engine: MonitorEngine | None = memo.get("engine")
        spec = body.get("spec") or {}
        monitor_ref = spec.get("monitorRef") or {}
        if engine is None or not monitor_ref.get("name") or not spec.get("incidentId"):
            return
        ref = MonitorRef(
            namespace=monitor_ref.get("namespace") or namespace or "", name=monitor_ref["name"]
        )
        runner = engine.runners.get(ref)
        if runner is None:
            return
        incident_id = UUID(str(spec["incidentId"]))
        if state == "resolved":
            runner.resolved_elsewhere(incident_id)
        else:
            runner.acknowledged_elsewhere(incident_id)

    if channels is not None:

        @kopf.on.event(GROUP, VERSION, "notificationchannels", registry=registry)
        async def channel_event(
            *, type: str | None, name: str, namespace: str | None, body: kopf.Body, **_: Any
        ) -> None:
            # Every replica and shard keeps every channel: any of them may deliver.
            if type == "DELETED":
                channels.remove(namespace=namespace or "", name=name)
                return
            channels.update(
                namespace=namespace or "",
                name=name,
                spec=dict(body.get("spec") or {}),
                generation=body.get("metadata", {}).get("generation"),
            )

    if maintenance is not None:
        _register_windows(registry, maintenance)

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
        if not owned(meta):
            # Another shard checks it. The daemon still exists (idle) rather than being
            # filtered out: kopf would then find no handler needing its finalizer and remove
            # it while the owning shard adds it back, forever.
            await stopped.wait()
            return
        engine: MonitorEngine = memo["engine"]
        ref = MonitorRef(namespace=namespace or "", name=name)
        runner = engine.runner_for(ref)
        continuing = await engine.early.take_over(ref)
        await runner.run(
            read_spec=lambda: _snapshot(spec, meta),
            stop=_KopfStop(stopped, engine),
            continuing=continuing,
        )
        if meta.get("deletionTimestamp"):
            runner.resolve_for_deletion()
            engine.forget(ref)


def _register_windows(registry: kopf.OperatorRegistry, maintenance: MaintenanceCalendar) -> None:
    @kopf.on.event(GROUP, VERSION, "maintenancewindows", registry=registry)
    async def window_event(
        *, type: str | None, name: str, namespace: str | None, body: kopf.Body, **_: Any
    ) -> None:
        # Every replica and shard keeps every window: each checks some of its monitors.
        if type == "DELETED":
            maintenance.remove(namespace=namespace or "", name=name)
            return
        try:
            window = parse_window_spec(dict(body.get("spec") or {}))
        except InvalidWindowError as exc:
            # The CRD refuses this; an edited CRD must not crash the watch.
            logger.warning("MaintenanceWindow %s/%s ignored: %s", namespace, name, exc)
            maintenance.remove(namespace=namespace or "", name=name)
            return
        maintenance.put(namespace=namespace or "", name=name, spec=window)

    @kopf.on.event(GROUP, VERSION, "healthmonitors", registry=registry)
    async def monitor_labels(
        *, type: str | None, name: str, namespace: str | None, meta: kopf.Meta, **_: Any
    ) -> None:
        # Every monitor, whichever shard checks it: the windows' status counts them all.
        ref = MonitorRef(namespace=namespace or "", name=name)
        if type == "DELETED":
            maintenance.forget_monitor(ref)
        else:
            maintenance.note_monitor(ref, labels=dict(meta.get("labels") or {}))


def _snapshot(spec: Mapping[str, Any], meta: Mapping[str, Any]) -> SpecSnapshot:
    created = meta.get("creationTimestamp")
    return SpecSnapshot(
        spec=dict(spec),
        generation=meta.get("generation"),
        created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        labels=dict(meta.get("labels") or {}),
    )


async def _start_early(
    engine: MonitorEngine,
    *,
    list_monitors: MonitorListing,
    owned: Callable[[Mapping[str, Any]], bool],
) -> None:
    try:
        bodies = await list_monitors()
    except Exception as exc:
        # Only a faster start is lost: kopf's daemons start every monitor anyway.
        logger.warning("start-up listing of HealthMonitors failed (%r); daemons start them", exc)
        return
    for body in bodies:
        meta = body.get("metadata") or {}
        # One being deleted is left to its daemon, which resolves its incident.
        if not owned(meta) or meta.get("deletionTimestamp"):
            continue
        ref = MonitorRef(namespace=meta.get("namespace") or "", name=meta["name"])
        engine.start_early(ref, _snapshot(body.get("spec") or {}, meta))
