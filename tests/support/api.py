"""The admin API served for tests: over a real port, on real PostgreSQL, with fake Kubernetes.

``serve_api`` runs it on the test's event loop (for async tests with an aiohttp client);
``ThreadedApi`` runs it on its own loop in a thread, for synchronous clients such as
schemathesis (``requests``) and ``curl``, which would otherwise block the loop serving them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from downtime_operator.adapters.postgres.audit import PostgresAuditLog
from downtime_operator.adapters.postgres.maintenance import PostgresMaintenanceLedger
from downtime_operator.adapters.postgres.outbox import PostgresOutbox
from downtime_operator.adapters.postgres.queries import PostgresIncidentQueries, connect_pool
from downtime_operator.adapters.postgres.store import PostgresIncidentStore
from downtime_operator.api import RateLimit, create_app, serving
from downtime_operator.assembly import resource_pipeline
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity
from downtime_operator.domain.sla_report import MonitorObjective
from downtime_operator.services.incident_admin import IncidentAdmin
from downtime_operator.services.slo.report import SloReports
from tests.unit.fakes import RecordingResources

HOST = "127.0.0.1"
KEYS = {"ops": "ops-key-0123456789abcdef", "ci": "ci-key-fedcba9876543210"}
GENEROUS = RateLimit(rate=10_000.0, burst=10_000)


@dataclass
class RecordingMaintenance:
    """``AdHocMaintenance`` that keeps each window it is asked to create."""

    windows: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def start_maintenance(
        self, *, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> None:
        self.windows.append((namespace, name, dict(spec)))


@dataclass(frozen=True)
class FixedObjectives:
    """``ObjectiveSource`` over a dict, as the HealthMonitors would give it."""

    found: dict[MonitorRef, MonitorObjective]

    async def objectives(self) -> dict[MonitorRef, MonitorObjective]:
        return dict(self.found)


class SettableClock:
    """Real time by default; a test may pin it to make statistics exact."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def now(self) -> datetime:
        return self.pinned if self.pinned is not None else datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _level_rank(level: str | None) -> int:
    order = ["DEBUG", "INFO", "WARNING", "ERROR"]
    return order.index(level) if level in order else len(order)


@dataclass
class FakeIncidentLogs:
    """``IncidentLogs`` over a dict; only incidents given entries (or captured) are known."""

    entries: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
    captures: list[UUID] = field(default_factory=list)

    async def get_filtered_logs(
        self,
        incident_id: UUID,
        *,
        level: str | None = None,
        logger_name: str | None = None,
        search: str | None = None,
    ) -> list[dict[str, Any]] | None:
        found = self.entries.get(incident_id)
        if found is None:
            return None
        return [
            e
            for e in found
            if (level is None or _level_rank(e.get("level")) >= _level_rank(level))
            and (logger_name is None or str(e.get("logger", "")).startswith(logger_name))
            and (search is None or search.lower() in str(e["message"]).lower())
        ]

    async def get_analysis(self, incident_id: UUID) -> dict[str, Any] | None:
        found = self.entries.get(incident_id)
        if found is None:
            return None
        errors = [e for e in found if e.get("level") == "ERROR"]
        messages: dict[str, int] = {}
        for e in errors:
            messages[e["message"]] = messages.get(e["message"], 0) + 1
        return {
            "total_logs": len(found),
            "error_count": len(errors),
            "warning_count": sum(e.get("level") == "WARNING" for e in found),
            "error_types": {},
            "top_errors": sorted(messages.items(), key=lambda kv: -kv[1])[:10],
        }

    async def capture_now(self, incident_id: UUID) -> dict[str, Any] | None:
        if incident_id not in self.entries:
            return None
        self.captures.append(incident_id)
        return {"state": "captured", "lines": len(self.entries[incident_id])}


@dataclass
class ApiUnderTest:
    base_url: str
    pool: asyncpg.Pool[Any]
    resources: RecordingResources
    logs: FakeIncidentLogs
    clock: SettableClock
    admin: IncidentAdmin
    maintenance: RecordingMaintenance

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def settle(self) -> None:
        """Wait until the queued CR updates and events have been applied."""
        await self.admin.close(drain_timeout=5.0)
        self.admin.start()


@contextlib.asynccontextmanager
async def serve_api(
    dsn: str,
    *,
    keys: Mapping[str, str] = KEYS,
    key_limit: RateLimit = GENEROUS,
    address_limit: RateLimit = GENEROUS,
    allowed_networks: Sequence[IPv4Network | IPv6Network] = (),
    trusted_proxies: Sequence[IPv4Network | IPv6Network] = (),
    monotonic: Callable[[], float] | None = None,
    metrics_text: Callable[[], bytes] | None = None,
    objectives: Mapping[MonitorRef, MonitorObjective] | None = None,
) -> AsyncIterator[ApiUnderTest]:
    """``objectives``: the monitors' ``spec.slo`` the SLA report judges (none by default)."""
    pool = await connect_pool(dsn, max_size=4)
    try:
        queries = PostgresIncidentQueries(pool)
        resources = RecordingResources()
        clock = SettableClock()
        logs = FakeIncidentLogs()
        maintenance = RecordingMaintenance()
        admin = IncidentAdmin(transitions=queries, clock=clock, events=resource_pipeline(resources))
        options: dict[str, Any] = {}
        if monotonic is not None:
            options["monotonic"] = monotonic
        app = create_app(
            queries=queries,
            admin=admin,
            audit=PostgresAuditLog(pool),
            notifications=PostgresOutbox(pool),
            logs=logs,
            keys=keys,
            clock=clock,
            key_limit=key_limit,
            address_limit=address_limit,
            allowed_networks=allowed_networks,
            trusted_proxies=trusted_proxies,
            metrics_text=metrics_text,
            slo_reports=SloReports(
                incidents=PostgresIncidentStore(pool),
                maintenance=PostgresMaintenanceLedger(pool),
                objectives=FixedObjectives(dict(objectives or {})),
                clock=clock,
            ),
            maintenance=maintenance,
            **options,
        )
        async with serving(app, host=HOST, port=0) as port:
            yield ApiUnderTest(
                base_url=f"http://{HOST}:{port}",
                pool=pool,
                resources=resources,
                logs=logs,
                clock=clock,
                admin=admin,
                maintenance=maintenance,
            )
    finally:
        await pool.close()


class ThreadedApi:
    """``serve_api`` on its own event loop in a thread; ``with`` blocks until it listens."""

    def __init__(self, dsn: str, **options: Any) -> None:
        self._dsn = dsn
        self._options = options
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="api-under-test", daemon=True)
        self._error: BaseException | None = None
        self.api: ApiUnderTest | None = None

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve_api(self._dsn, **self._options) as api:
            self.api = api
            self._ready.set()
            await self._stop.wait()

    def run(self, coro_factory: Callable[[ApiUnderTest], Any], timeout: float = 30.0) -> Any:
        """Run ``coro_factory(api)`` on the server's loop (e.g. to seed rows) and return it."""
        assert self._loop is not None and self.api is not None
        future = asyncio.run_coroutine_threadsafe(coro_factory(self.api), self._loop)
        return future.result(timeout=timeout)

    def __enter__(self) -> ApiUnderTest:
        self._thread.start()
        if not self._ready.wait(timeout=60) or self._error is not None:
            raise RuntimeError(f"API did not start: {self._error!r}")
        assert self.api is not None
        return self.api

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


async def insert_incident(
    pool: asyncpg.Pool[Any],
    *,
    name: str = "api",
    namespace: str = "default",
    started_at: datetime,
    ended_at: datetime | None = None,
    status: IncidentStatus | None = None,
    severity: Severity = Severity.HIGH,
    environment: str = "production",
    **extra: Any,
) -> Incident:
    """A row as the operator writes it (through the store), resolved when ``ended_at`` is set."""
    if status is None:
        status = IncidentStatus.ONGOING if ended_at is None else IncidentStatus.RESOLVED
    incident = Incident(
        incident_id=uuid4(),
        monitor=MonitorRef(namespace=namespace, name=name),
        k8s_name=f"{name}-{started_at:%Y%m%d-%H%M%S}",
        health_endpoint=f"http://{name}.{namespace}.example/health",
        environment=environment,
        started_at=started_at,
        detected_at=started_at,
        severity=severity,
        status=status,
        ended_at=ended_at,
        error_message="HTTP 503",
        http_status_code=503,
        **extra,
    )
    return await PostgresIncidentStore(pool).create_incident(incident)


async def clear(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute("DELETE FROM downtime_incidents")
    await pool.execute("DELETE FROM downtime_audit_log")
    await pool.execute("DELETE FROM downtime_notifications")
    await pool.execute("DELETE FROM downtime_maintenance_periods")
