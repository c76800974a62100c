"""Admin API benchmark: list and statistics latency over the real HTTP port, on a big table.

What runs: ``downtime-operator api`` as its own process (the production wiring: pool, queries,
guard, audit, pydantic responses), on PostgreSQL holding ``--incidents`` incidents of
``--monitors`` monitors spread over ``--span-days`` days, in a database of its own. The load comes
from this process: ``--clients`` concurrent aiohttp clients, each sending its next request as
soon as the previous answer is read, for ``--seconds`` per scenario.

Phases, all in one run so the figures are comparable on a busy machine:

1. data: generated in PostgreSQL by one ``INSERT ... SELECT generate_series`` (kept between runs
   when the size matches; ``--fresh`` rebuilds), then ``VACUUM ANALYZE``;
2. plans: ``EXPLAIN`` of every query the scenarios run, both the custom plan and the generic plan
   a prepared statement (asyncpg) settles on; each must use an index on ``downtime_incidents``
   and none may scan it sequentially;
3. baseline: ``/healthz`` under the same concurrency (HTTP and process overhead, no database);
4. scenarios: list (limit 50, no filter), list with filters (a rotation of filters and a cursor
   page), statistics (days=30); latency p50/p95/p99/max and requests per second each.

Run from the repository root::

    .venv/bin/python -m bench.api                        # 1,000,000 incidents (data: ~6 min once)
    .venv/bin/python -m bench.api --incidents 50000      # quick run
    .venv/bin/python -m bench.api --json                 # machine-readable figures
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.capture import with_database
from downtime_operator.adapters.postgres.migrations import apply_migrations
from downtime_operator.adapters.postgres.queries import (
    FUTURE_END_SQL,
    STATISTICS_SQL,
    list_query,
    statistics_params,
)
from downtime_operator.api.schemas import encode_cursor
from downtime_operator.domain.models import IncidentStatus, Severity
from downtime_operator.services.admin_ports import IncidentFilter, PageCursor

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
API_KEY = "bench-key-0123456789abcdef"
LIST_P99_TARGET_MS = 20.0
STATISTICS_P99_TARGET_MS = 150.0
READY_SECONDS = 60.0
INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}

# Parsed, never contacted: the benchmark only reads.
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""

# Monitor m is "svc-m" in namespace "team-(m % 10)"; environment by monitor; severity by
# incident; incident k of a monitor starts at k * spacing (+ a per-monitor offset) and lasts 30 s
# to 30 min, so one monitor's incidents never overlap. The newest incident of every 50th monitor
# is still ongoing (and of the next one, investigating): the partial unique index allows one
# open incident per monitor, and real tables hold few.
GENERATE_SQL = """
INSERT INTO downtime_incidents (
    incident_id, monitor_namespace, monitor_name, k8s_name, health_endpoint, environment,
    started_at, detected_at, ended_at, duration_seconds, severity, status, error_message,
    http_status_code, failed_checks
)
SELECT
    gen_random_uuid(),
    'team-' || (m % 10),
    'svc-' || m,
    'svc-' || m || '-' || to_char(started AT TIME ZONE 'UTC', 'YYYYMMDD-HH24MISS'),
    'http://svc-' || m || '.team-' || (m % 10) || '/health',
    CASE WHEN m % 20 < 16 THEN 'production' WHEN m % 20 < 19 THEN 'staging' ELSE 'dev' END,
    started,
    started + interval '30 seconds',
    CASE WHEN open THEN NULL ELSE started + duration END,
    CASE WHEN open THEN NULL ELSE EXTRACT(EPOCH FROM duration)::float8 END,
    CASE WHEN h < 10 THEN 'critical' WHEN h < 35 THEN 'medium' WHEN h < 50 THEN 'low'
         ELSE 'high' END,
    CASE WHEN NOT open THEN 'resolved' WHEN m % 50 = 0 THEN 'ongoing' ELSE 'investigating' END,
    'HTTP 503',
    503,
    3
FROM (
    SELECT i, m, k, h,
           $1::timestamptz + k * $2::interval + ((m * 7919) % 3600) * interval '1 second'
               AS started,
           (30 + (i * 40503) % 1770) * interval '1 second' AS duration,
           (k = $4 - 1 AND m % 50 IN (0, 1)) AS open
    FROM (
        SELECT i, i % $3 AS m, i / $3 AS k, (i * 2654435761) % 100 AS h
        FROM generate_series(0::bigint, $5::bigint - 1) AS i
    ) ids
) gen
"""


@dataclass(frozen=True, kw_only=True)
class DataSize:
    incidents: int
    monitors: int
    span_days: int


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    path: str
    params: Sequence[dict[str, str]]
    """Rotated request by request, so a scenario may cover several filters."""
    target_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class Latency:
    scenario: str
    requests: int
    errors: int
    statuses: dict[str, int]
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    target_ms: float | None

    @property
    def met(self) -> bool | None:
        """A run with failed requests proves nothing about latency (e.g. the database away)."""
        if self.target_ms is None:
            return None
        return self.errors == 0 and self.p99_ms < self.target_ms


@dataclass(frozen=True, kw_only=True)
class Plan:
    query: str
    mode: str
    indexes: list[str]
    seq_scans: int
    ms: float | None

    @property
    def uses_index(self) -> bool:
        return bool(self.indexes) and self.seq_scans == 0


# -- Data ----------------------------------------------------------------------------------------


def _admin_dsn(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "start-postgres.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1].partition("=")[2]


async def prepare_data(admin_dsn: str, database: str, size: DataSize, *, fresh: bool) -> str:
    """The bench database with ``size``; rebuilt only when asked or when its size differs."""
    dsn = with_database(admin_dsn, database)
    admin = await asyncpg.connect(admin_dsn)
    try:
        exists = await admin.fetchval("SELECT true FROM pg_database WHERE datname = $1", database)
        if exists and fresh:
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            exists = False
        if not exists:
            await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn)
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (size jsonb NOT NULL)")
        stored = await conn.fetchval("SELECT size::text FROM bench_meta")
        if stored is not None and json.loads(stored) == asdict(size):
            print(f"data: reusing {size.incidents:,} incidents in {database}", file=sys.stderr)
            return dsn
        await conn.execute(
            "TRUNCATE downtime_incidents, downtime_audit_log, downtime_incident_days,"
            " downtime_monitor_spans, bench_meta"
        )
        per_monitor = max(1, size.incidents // size.monitors)
        spacing = timedelta(days=size.span_days) / per_monitor
        start = datetime.now(UTC) - timedelta(days=size.span_days) - timedelta(hours=1)
        started = time.monotonic()
        # A bulk load as production would do one: without the per-row triggers, then the
        # rollups rebuilt set-based (a trigger call per row would take ~15 minutes here).
        await conn.execute("ALTER TABLE downtime_incidents DISABLE TRIGGER USER")
        try:
            await conn.execute(
                GENERATE_SQL,
                start,
                spacing,
                size.monitors,
                per_monitor,
                per_monitor * size.monitors,
                timeout=3600,
            )
        finally:
            await conn.execute("ALTER TABLE downtime_incidents ENABLE TRIGGER USER")
        await conn.execute("SELECT downtime_rebuild_rollups()", timeout=3600)
        for table in ("downtime_incidents", "downtime_incident_days", "downtime_monitor_spans"):
            await conn.execute(f"VACUUM ANALYZE {table}", timeout=3600)
        await conn.execute(
            "INSERT INTO bench_meta (size) VALUES ($1::text::jsonb)", json.dumps(asdict(size))
        )
        print(
            f"data: generated {per_monitor * size.monitors:,} incidents"
            f" in {time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )
    finally:
        await conn.close()
    return dsn


# -- Plans ---------------------------------------------------------------------------------------


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def _plan_of(query: str, mode: str, explained: Any) -> Plan:
    document = json.loads(explained) if isinstance(explained, str) else explained
    root = document[0]
    nodes = list(_walk(root["Plan"]))
    return Plan(
        query=query,
        mode=mode,
        indexes=sorted({n["Index Name"] for n in nodes if n["Node Type"] in INDEX_NODES}),
        seq_scans=sum(
            n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "downtime_incidents"
            for n in nodes
        ),
        ms=root.get("Execution Time"),
    )


async def explain(dsn: str, queries: dict[str, tuple[str, list[Any]]]) -> list[Plan]:
    """The custom plan (EXPLAIN ANALYZE with the values) and the generic plan of a prepared
    statement, which is what asyncpg runs once PostgreSQL stops re-planning it."""
    conn = await asyncpg.connect(dsn)
    plans = []
    try:
        for name, (sql, params) in queries.items():
            custom = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
            plans.append(_plan_of(name, "custom", custom))
            async with conn.transaction():
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                statement = await conn.prepare(f"EXPLAIN (FORMAT JSON) {sql}")
                plans.append(_plan_of(name, "generic", await statement.fetchval(*params)))
    finally:
        await conn.close()
    return plans


# -- The server ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def api_process(dsn: str, workdir: Path) -> AsyncIterator[str]:
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "KUBECONFIG": str(kubeconfig),
        "ADMIN_API_KEYS": f"bench={API_KEY}",
        "API_HOST": HOST,
        "API_PORT": str(port),
        # The limits are not what is measured here.
        "API_RATE_LIMIT_PER_KEY": "1000000",
        "API_RATE_BURST_PER_KEY": "1000000",
        "API_RATE_LIMIT_PER_ADDRESS": "1000000",
        "API_RATE_BURST_PER_ADDRESS": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    log = (workdir / "api.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downtime_operator",
        "api",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    base = f"http://{HOST}:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + READY_SECONDS
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline or process.returncode is not None:
                    raise RuntimeError((workdir / "api.log").read_text()[-4000:])
                await asyncio.sleep(0.2)
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        log.close()


# -- Load ----------------------------------------------------------------------------------------


def _quantile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(
    base: str, scenario: Scenario, *, clients: int, seconds: float, warmup: float = 1.0
) -> Latency:
    samples: list[float] = []
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def client(offset: int, until: float, record: bool) -> None:
            n = offset
            while time.monotonic() < until:
                params = scenario.params[n % len(scenario.params)]
                n += clients
                started = time.perf_counter()
                async with session.get(base + scenario.path, params=params) as response:
                    await response.read()
                if record:
                    samples.append(time.perf_counter() - started)
                    statuses[response.status] += 1

        warm_until = time.monotonic() + warmup
        await asyncio.gather(*(client(c, warm_until, False) for c in range(clients)))
        began = time.monotonic()
        until = began + seconds
        await asyncio.gather(*(client(c, until, True) for c in range(clients)))
        elapsed = time.monotonic() - began
    ordered = sorted(s * 1000 for s in samples)
    return Latency(
        scenario=scenario.name,
        requests=len(ordered),
        errors=sum(n for status, n in statuses.items() if status != 200),
        statuses={str(status): n for status, n in sorted(statuses.items())},
        rps=len(ordered) / elapsed,
        p50_ms=statistics.median(ordered),
        p95_ms=_quantile(ordered, 0.95),
        p99_ms=_quantile(ordered, 0.99),
        max_ms=ordered[-1],
        target_ms=scenario.target_ms,
    )


# -- The run -------------------------------------------------------------------------------------


def _filters(size: DataSize) -> list[tuple[str, IncidentFilter]]:
    monitor = size.monitors // 3
    return [
        (
            "status=resolved severity=critical",
            IncidentFilter(status=IncidentStatus.RESOLVED, severity=Severity.CRITICAL),
        ),
        ("status=ongoing", IncidentFilter(status=IncidentStatus.ONGOING)),
        ("environment=staging", IncidentFilter(environment="staging")),
        (
            "monitor+namespace",
            IncidentFilter(monitor=f"svc-{monitor}", namespace=f"team-{monitor % 10}"),
        ),
        ("namespace severity=low", IncidentFilter(namespace="team-7", severity=Severity.LOW)),
        (
            "environment=dev status=resolved",
            IncidentFilter(environment="dev", status=IncidentStatus.RESOLVED),
        ),
    ]


def _params(filters: IncidentFilter) -> dict[str, str]:
    out = {"limit": "50"}
    for key, value in (
        ("status", filters.status),
        ("severity", filters.severity),
        ("environment", filters.environment),
        ("monitor", filters.monitor),
        ("namespace", filters.namespace),
    ):
        if value is not None:
            out[key] = str(value)
    return out


async def _second_page_cursor(dsn: str, filters: IncidentFilter) -> PageCursor:
    conn = await asyncpg.connect(dsn)
    try:
        sql, params = list_query(filters=filters, limit=50, after=None)
        rows = await conn.fetch(sql, *params)
    finally:
        await conn.close()
    last = rows[49]
    return PageCursor(started_at=last["started_at"], incident_id=last["incident_id"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    size = DataSize(incidents=args.incidents, monitors=args.monitors, span_days=args.span_days)
    dsn = await prepare_data(_admin_dsn(args.dsn), args.database, size, fresh=args.fresh)
    filters = _filters(size)
    cursor_filter = filters[2][1]
    cursor = await _second_page_cursor(dsn, cursor_filter)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        future_end_from = await conn.fetchval(FUTURE_END_SQL, now)
    finally:
        await conn.close()
    since = now - timedelta(days=30)
    queries: dict[str, tuple[str, list[Any]]] = {
        "list": list_query(filters=IncidentFilter(), limit=50, after=None),
        **{f"list {name}": list_query(filters=f, limit=50, after=None) for name, f in filters},
        "list environment=staging, page 2": list_query(
            filters=cursor_filter, limit=50, after=cursor
        ),
        "statistics: future ends": (FUTURE_END_SQL, [now]),
        "statistics days=30": (
            STATISTICS_SQL,
            statistics_params(since=since, until=now, future_end_from=future_end_from),
        ),
    }
    plans = await explain(dsn, queries)
    filtered = [_params(f) for _, f in filters] + [
        {**_params(cursor_filter), "cursor": encode_cursor(cursor)}
    ]
    scenarios = [
        Scenario(name="healthz (baseline)", path="/healthz", params=[{}]),
        Scenario(
            name="list limit=50",
            path="/admin/downtime/incidents",
            params=[{"limit": "50"}],
            target_ms=LIST_P99_TARGET_MS,
        ),
        Scenario(
            name="list limit=50, filters",
            path="/admin/downtime/incidents",
            params=filtered,
            target_ms=LIST_P99_TARGET_MS,
        ),
        Scenario(
            name="statistics days=30",
            path="/admin/downtime/statistics",
            params=[{"days": "30"}],
            target_ms=STATISTICS_P99_TARGET_MS,
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as workdir:
        async with api_process(dsn, Path(workdir)) as base:
            latencies = [
                await measure(base, s, clients=args.clients, seconds=args.seconds)
                for s in scenarios
            ]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "size": asdict(size),
        "clients": args.clients,
        "seconds": args.seconds,
        "plans": [{**asdict(p), "uses_index": p.uses_index} for p in plans],
        "latency": [{**asdict(lat), "met": lat.met} for lat in latencies],
        "ok": all(p.uses_index for p in plans) and all(lat.met is not False for lat in latencies),
    }


def _print(result: dict[str, Any], out: Callable[[str], None]) -> None:
    size = result["size"]
    out(
        f"{size['incidents']:,} incidents, {size['monitors']} monitors, {size['span_days']} days;"
        f" {result['clients']} clients x {result['seconds']} s; nproc={result['nproc']}"
    )
    out("")
    out(f"{'query':<42} {'plan':<8} {'ms':>7}  index")
    for p in result["plans"]:
        ms = "" if p["ms"] is None else f"{p['ms']:.2f}"
        verdict = "ok" if p["uses_index"] else "NO INDEX"
        out(f"{p['query']:<42} {p['mode']:<8} {ms:>7}  {verdict}: {', '.join(p['indexes'])}")
    out("")
    out(
        f"{'scenario':<26} {'req':>6} {'err':>4} {'rps':>7} {'p50':>7} {'p95':>7} {'p99':>7}"
        f" {'max':>7}  target"
    )
    for lat in result["latency"]:
        target = "" if lat["target_ms"] is None else f"p99 < {lat['target_ms']:.0f} ms: "
        verdict = "" if lat["met"] is None else ("met" if lat["met"] else "MISSED")
        out(
            f"{lat['scenario']:<26} {lat['requests']:>6} {lat['errors']:>4} {lat['rps']:>7.0f}"
            f" {lat['p50_ms']:>7.2f} {lat['p95_ms']:>7.2f} {lat['p99_ms']:>7.2f}"
            f" {lat['max_ms']:>7.2f}  {target}{verdict}"
        )
        if lat["errors"]:
            out(f"  answers by status: {lat['statuses']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--monitors", type=int, default=500)
    parser.add_argument("--span-days", type=int, default=365)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database", default="downtime_bench_api")
    parser.add_argument("--dsn", help="a role that may create databases (default: local)")
    parser.add_argument("--fresh", action="store_true", help="regenerate the data")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result, print)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
