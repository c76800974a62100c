"""Picks the concrete adapters and builds the engine; the only place that knows them all."""

from __future__ import annotations

import logging

import kopf

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.adapters.kube.resources import KubeResources, load_api_client
from downtime_operator.adapters.postgres.migrations import apply_migrations
from downtime_operator.adapters.postgres.store import PostgresIncidentStore
from downtime_operator.handlers import register
from downtime_operator.services.engine import MonitorEngine
from downtime_operator.services.monitor_runner import RunnerDeps
from downtime_operator.services.ports import OpenIncidentExistsError
from downtime_operator.services.retry_queue import OrderedRetryQueue
from downtime_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)


async def build_engine(settings: OperatorSettings) -> MonitorEngine:
    clock = SystemClock()
    store = await PostgresIncidentStore.connect(settings.database_url, min_size=0)
    prober = HttpProber(clock=clock)
    await prober.start()
    resources = KubeResources(load_api_client(settings.kubeconfig))
    store_writes = OrderedRetryQueue(
        name="postgres", permanent=(OpenIncidentExistsError, ValueError)
    )
    # Postgres may be down at start: the schema goes first in the queue, and every write after
    # it waits (in order) until it has been applied.
    store_writes.submit("apply migrations", lambda: _migrate(store))
    deps = RunnerDeps(
        prober=prober,
        store=store,
        resources=resources,
        clock=clock,
        store_writes=store_writes,
        kube_writes=OrderedRetryQueue(name="kubernetes"),
        status_sync_period=settings.status_sync_period,
    )
    engine = MonitorEngine(deps=deps, closers=(prober.close, store.close))
    engine.start()
    return engine


async def _migrate(store: PostgresIncidentStore) -> None:
    applied = await apply_migrations(store.pool)
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied))


def _configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


def operator_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    async def factory() -> MonitorEngine:
        return await build_engine(settings)

    register(registry, engine_factory=factory, configure=_configure_kopf)
    return registry


async def run_operator(settings: OperatorSettings) -> None:
    registry = operator_registry(settings)
    await kopf.operator(
        registry=registry,
        clusterwide=not settings.watch_namespaces,
        namespaces=list(settings.watch_namespaces),
        standalone=settings.peering is None,
        peering_name=settings.peering,
        memo=kopf.Memo(),
    )


async def migrate(settings: OperatorSettings) -> list[str]:
    store = await PostgresIncidentStore.connect(settings.database_url)
    try:
        return await apply_migrations(store.pool)
    finally:
        await store.close()
