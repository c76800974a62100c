"""Serves the admin API over whichever store's ports it is given: the operator's PostgreSQL or
the standalone monitor's SQLite file. The one place that assembles the API's services, so the
two commands cannot drift apart in what the API does (auth, limits, audit, log routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from downtime_operator.api import KeyRing, RateLimit, create_app
from downtime_operator.api.server import serving
from downtime_operator.assembly import log_capture_service, resource_pipeline
from downtime_operator.services.incident_admin import IncidentAdmin
from downtime_operator.services.ports import Clock, LogSource
from downtime_operator.services.sinks import ShownResources
from downtime_operator.services.slo.ports import AdHocMaintenance, ObjectiveSource
from downtime_operator.services.slo.report import SloReports
from downtime_operator.services.store_backend import StoreBackend
from downtime_operator.settings import ApiSettings, current_api_keys
from downtime_operator.settings.key_files import reload_keys

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serve_admin_api(
    api: ApiSettings,
    *,
    backend: StoreBackend,
    resources: ShownResources,
    log_files_dir: Path,
    clock: Clock,
    source: LogSource | None,
    metrics_text: Callable[[], bytes] | None = None,
    objectives: ObjectiveSource | None = None,
    maintenance: AdHocMaintenance | None = None,
) -> AsyncIterator[int]:
    """Serve until the block ends; yields the bound port (``api.port`` 0 picks a free one).

    Manual resolves, acknowledgements and on-demand captures get an incident pipeline of their
    own, so a person's action never waits behind the monitors' writes. Scheduled captures stay
    with the monitoring engine; a claim in the store keeps the two from running the same one.
    """
    if not api.keys:
        logger.warning("admin API: no ADMIN_API_KEYS configured; every admin call will get 401")
    events = resource_pipeline(resources)
    admin = IncidentAdmin(transitions=backend.queries, clock=clock, events=events)
    logs = log_capture_service(
        backend=backend, log_files_dir=log_files_dir, source=source, events=events, clock=clock
    )
    keys = {name: key.get_secret_value() for name, key in api.keys.items()}
    ring = KeyRing(keys)
    app = create_app(
        queries=backend.queries,
        admin=admin,
        audit=backend.audit,
        logs=logs,
        keys=ring,
        clock=clock,
        key_limit=RateLimit(rate=api.key_rate, burst=api.key_burst),
        address_limit=RateLimit(rate=api.address_rate, burst=api.address_burst),
        allowed_networks=api.allowed_cidrs,
        trusted_proxies=api.trusted_proxies,
        metrics_text=metrics_text,
        notifications=backend.notifications,
        slo_reports=None
        if objectives is None
        else SloReports(
            incidents=backend.incidents,
            maintenance=backend.maintenance,
            objectives=objectives,
            clock=clock,
        ),
        maintenance=maintenance,
    )
    async with contextlib.AsyncExitStack() as stack:
        if api.keys_file is not None:
            reloading = asyncio.create_task(
                reload_keys(
                    period=api.keys_reload_seconds,
                    read=functools.partial(current_api_keys, api),
                    apply=ring.replace,
                    loaded=keys,
                    what="admin API keys",
                    log=logger,
                    in_use=lambda: ring.names,
                ),
                name="api-keys",
            )
            stack.callback(reloading.cancel)
        yield await stack.enter_async_context(serving(app, host=api.host, port=api.port))
