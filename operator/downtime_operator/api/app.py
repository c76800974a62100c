"""The aiohttp application factory: every dependency passed in, nothing global."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from downtime_operator.api.auth import KeyRing
from downtime_operator.api.coalesce import SingleFlight
from downtime_operator.api.deps import DEPS, OPENAPI, ApiDeps
from downtime_operator.api.errors import error_envelope
from downtime_operator.api.guard import admin_guard
from downtime_operator.api.openapi import build_openapi
from downtime_operator.api.ratelimit import RateLimit, TokenBuckets
from downtime_operator.api.routes import OPERATIONS
from downtime_operator.services.admin_ports import AuditLog, IncidentQueries
from downtime_operator.services.incident_admin import IncidentAdmin
from downtime_operator.services.incident_report import IncidentReports
from downtime_operator.services.outbox import NotificationOutbox
from downtime_operator.services.ports import Clock, IncidentLogs
from downtime_operator.services.slo.ports import AdHocMaintenance
from downtime_operator.services.slo.report import SloReports
from downtime_operator.version import package_version

DEFAULT_KEY_LIMIT = RateLimit(rate=10.0, burst=20)
DEFAULT_ADDRESS_LIMIT = RateLimit(rate=20.0, burst=40)


def create_app(
    *,
    queries: IncidentQueries,
    admin: IncidentAdmin,
    audit: AuditLog,
    logs: IncidentLogs | None,
    keys: Mapping[str, str] | KeyRing,
    clock: Clock,
    key_limit: RateLimit = DEFAULT_KEY_LIMIT,
    address_limit: RateLimit = DEFAULT_ADDRESS_LIMIT,
    allowed_networks: Sequence[IPv4Network | IPv6Network] = (),
    trusted_proxies: Sequence[IPv4Network | IPv6Network] = (),
    registry: CollectorRegistry | None = None,
    metrics_text: Callable[[], bytes] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    notifications: NotificationOutbox | None = None,
    slo_reports: SloReports | None = None,
    maintenance: AdHocMaintenance | None = None,
) -> web.Application:
    """The admin API over the given ports.

    ``keys`` maps key names to keys, or is a ``KeyRing`` the caller may update while serving.
    ``logs`` may be None in a process without log capture; its
    routes then answer 503. ``/metrics`` serves ``metrics_text()`` if given, else the text
    exposition of ``registry`` (an empty one by default). ``admin``'s queued Kubernetes writes
    start and are flushed with the application.
    """
    if metrics_text is None:
        exposed = registry if registry is not None else CollectorRegistry()

        def metrics_text() -> bytes:
            return generate_latest(exposed)

    app = web.Application(middlewares=[error_envelope, admin_guard, error_envelope])
    app[DEPS] = ApiDeps(
        queries=queries,
        admin=admin,
        logs=logs,
        audit=audit,
        clock=clock,
        keys=keys if isinstance(keys, KeyRing) else KeyRing(keys),
        key_buckets=TokenBuckets(limit=key_limit, clock=monotonic),
        address_buckets=TokenBuckets(limit=address_limit, clock=monotonic),
        allowed_networks=tuple(allowed_networks),
        trusted_proxies=tuple(trusted_proxies),
        metrics_text=metrics_text,
        statistics=SingleFlight(),
        reports=IncidentReports(queries=queries, audit=audit, notifications=notifications),
        notifications=notifications,
        slo_reports=slo_reports,
        maintenance=maintenance,
    )
    app[OPENAPI] = json.dumps(build_openapi(OPERATIONS, version=package_version())).encode()
    for op in OPERATIONS:
        app.router.add_route(op.method, op.route_path, op.handler, name=op.operation_id)

    async def admin_writes(_: web.Application) -> AsyncIterator[None]:
        admin.start()
        yield
        await admin.close()

    app.cleanup_ctx.append(admin_writes)
    return app
