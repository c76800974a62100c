"""What the handlers and middlewares reach through the application (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from aiohttp import web

from downtime_operator.api.auth import KeyRing
from downtime_operator.api.coalesce import SingleFlight
from downtime_operator.api.ratelimit import TokenBuckets
from downtime_operator.domain.statistics import PeriodStatistics
from downtime_operator.services.admin_ports import AuditLog, IncidentQueries
from downtime_operator.services.incident_admin import IncidentAdmin
from downtime_operator.services.incident_report import IncidentReports
from downtime_operator.services.outbox import NotificationOutbox
from downtime_operator.services.ports import Clock, IncidentLogs
from downtime_operator.services.slo.ports import AdHocMaintenance
from downtime_operator.services.slo.report import SloReports


@dataclass(frozen=True, kw_only=True)
class ApiDeps:
    queries: IncidentQueries
    admin: IncidentAdmin
    logs: IncidentLogs | None
    audit: AuditLog
    clock: Clock
    keys: KeyRing
    key_buckets: TokenBuckets
    address_buckets: TokenBuckets
    allowed_networks: tuple[IPv4Network | IPv6Network, ...]
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
    """Peers whose X-Forwarded-For names the client (the ingress); empty: the peer is it."""
    metrics_text: Callable[[], bytes]
    statistics: SingleFlight[PeriodStatistics]
    reports: IncidentReports
    notifications: NotificationOutbox | None = None
    """The notification outbox: the delivery log and test messages (None: 503)."""
    slo_reports: SloReports | None = None
    """The monthly SLA reports (None: no objectives in this process, 503)."""
    maintenance: AdHocMaintenance | None = None
    """Where ad-hoc maintenance windows are put in force (None: 503)."""


DEPS = web.AppKey("downtime_api_deps", ApiDeps)
KEY_NAME = web.RequestKey("downtime_api_key_name", str)
"""The name of the key that authenticated the request (set by the guard)."""
OPENAPI = web.AppKey("downtime_api_openapi", bytes)
"""The rendered OpenAPI document, built once from the route table."""
