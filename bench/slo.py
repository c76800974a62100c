"""SLO status cost (issue 15, acceptance 7): every monitor's ``status.slo`` within one status
sync period, from at most one query per monitor per period (in fact two for all of them).

What runs: the production ``UptimeBoard`` over the PostgreSQL store and maintenance ledger, on a
database of its own holding ``--monitors`` monitors with ``--incidents`` incidents and
``--periods`` maintenance periods each, spread over the 90 days an objective may judge. Each
round is what one sync period costs the operator: the board's read (the queries are counted),
then for every monitor what its runner computes at its periodic refresh: ``status.uptime``,
``status.slo`` (availability, budget, three burn rates) and the three burn-rate alert rules.

Baseline, in the same run: the same rounds computing ``status.uptime`` alone (what each runner
computed before the issue), from the same read.

Run from the repository root::

    .venv/bin/python -m bench.slo                  # 2,000 monitors
    .venv/bin/python -m bench.slo --json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.capture import with_database
from downtime_operator.adapters.postgres.maintenance import PostgresMaintenanceLedger
from downtime_operator.adapters.postgres.migrations import apply_migrations
from downtime_operator.adapters.postgres.queries import connect_pool
from downtime_operator.adapters.postgres.store import PostgresIncidentStore
from downtime_operator.domain.burn_alerts import BurnFactors, BurnWatch
from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import SloSpec, Span, slo_figures
from downtime_operator.domain.statistics import DowntimeSpan
from downtime_operator.services.uptime_board import UptimeBoard

SPEC = SloSpec.parse(objective="99.9", window="30d")
RULES = BurnFactors().rules()


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class CountedIncidents:
    """The store's read, counted: the cost the board puts on the database per period."""

    def __init__(self, store: PostgresIncidentStore) -> None:
        self._store = store
        self.queries = 0

    async def incident_spans(
        self, *, since: datetime, until: datetime
    ) -> Mapping[MonitorRef, list[DowntimeSpan]]:
        self.queries += 1
        return await self._store.incident_spans(since=since, until=until)


class CountedMaintenance:
    def __init__(self, ledger: PostgresMaintenanceLedger) -> None:
        self._ledger = ledger
        self.queries = 0

    async def maintenance_spans(
        self, *, since: datetime, until: datetime
    ) -> Mapping[MonitorRef, list[Span]]:
        self.queries += 1
        return await self._ledger.maintenance_spans(since=since, until=until)


async def prepare(admin_dsn: str, database: str, args: argparse.Namespace) -> str:
    """A fresh database with the monitors' incidents and maintenance periods."""
    dsn = with_database(admin_dsn, database)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn)
        # Incident k of monitor m starts at a spread-out instant of the last 90 days and lasts
        # 1 to 30 minutes; maintenance periods likewise, 30 to 120 minutes.
        await conn.execute(
            """
            INSERT INTO downtime_incidents
                (incident_id, started_at, detected_at, ended_at, duration_seconds,
                 health_endpoint, status, severity, monitor_namespace, monitor_name, k8s_name)
            SELECT gen_random_uuid(), s, s, s + d, extract(epoch FROM d),
                   'http://127.0.0.1/health', 'resolved', 'high', 'bench', 'm-' || m,
                   'm-' || m || '-' || k
            FROM generate_series(0, $1 - 1) AS m, generate_series(0, $2 - 1) AS k,
                 LATERAL (SELECT now() - interval '90 days'
                                 + (k * 90.0 / $2 + (m % 97) / 100.0) * interval '1 day' AS s,
                                 (1 + (m * 7 + k) % 30) * interval '1 minute' AS d) AS t
            """,
            args.monitors,
            args.incidents,
        )
        await conn.execute(
            """
            INSERT INTO downtime_maintenance_periods
                (monitor_namespace, monitor_name, started_at, ended_at, reason)
            SELECT 'bench', 'm-' || m, s, s + d, 'bench'
            FROM generate_series(0, $1 - 1) AS m, generate_series(0, $2 - 1) AS k,
                 LATERAL (SELECT now() - interval '89 days'
                                 + (k * 89.0 / $2 + 0.5) * interval '1 day' AS s,
                                 (30 + (m + k) % 90) * interval '1 minute' AS d) AS t
            """,
            args.monitors,
            args.periods,
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return dsn


def _round(
    board: UptimeBoard, monitors: Sequence[MonitorRef], watches: list[BurnWatch], *, slo: bool
) -> None:
    """What every runner computes at its periodic refresh, for all monitors."""
    created = datetime.now(UTC) - timedelta(days=365)
    for monitor, watch in zip(monitors, watches, strict=True):
        board.uptime(monitor, created_at=created)
        if not slo:
            continue
        timeline = board.timeline(monitor, created_at=created)
        assert timeline is not None
        watch.update(rules=RULES, rate=functools.partial(timeline.burn_rate, target=SPEC.target))
        slo_figures(SPEC, timeline=timeline).status_view()


async def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    pool = await connect_pool(dsn, max_size=2)
    try:
        incidents = CountedIncidents(PostgresIncidentStore(pool))
        maintenance = CountedMaintenance(PostgresMaintenanceLedger(pool))
        board = UptimeBoard(
            store=incidents,
            maintenance=maintenance,
            clock=Clock(),
            period=timedelta(seconds=args.sync_period),
        )
        monitors = [MonitorRef(namespace="bench", name=f"m-{i}") for i in range(args.monitors)]
        watches = [BurnWatch() for _ in monitors]
        result: dict[str, Any] = {}
        for name, slo in (("uptime_only", False), ("uptime_and_slo", True)):
            reads, computes = [], []
            incidents.queries = maintenance.queries = 0
            for _ in range(args.rounds):
                started = time.perf_counter()
                await board.refresh()
                read = time.perf_counter()
                _round(board, monitors, watches, slo=slo)
                reads.append(read - started)
                computes.append(time.perf_counter() - read)
            totals = [r + c for r, c in zip(reads, computes, strict=True)]
            result[name] = {
                "read_ms_median": round(1000 * statistics.median(reads), 1),
                "compute_ms_median": round(1000 * statistics.median(computes), 1),
                "period_ms_median": round(1000 * statistics.median(totals), 1),
                "period_ms_max": round(1000 * max(totals), 1),
                "queries_per_period": (incidents.queries + maintenance.queries) / args.rounds,
            }
        worst = result["uptime_and_slo"]
        result["ok"] = (
            worst["period_ms_max"] < 1000 * args.sync_period
            and worst["queries_per_period"] <= args.monitors
        )
        return result
    finally:
        await pool.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin_dsn = args.dsn or os.environ.get("DATABASE_URL")
    if not admin_dsn:
        raise SystemExit("bench.slo: give --dsn or DATABASE_URL (source /tmp/envsetup.sh)")
    dsn = await prepare(admin_dsn, args.database, args)
    figures = await measure(dsn, args)
    return {
        "monitors": args.monitors,
        "incidents": args.monitors * args.incidents,
        "maintenance_periods": args.monitors * args.periods,
        "sync_period_s": args.sync_period,
        "rounds": args.rounds,
        "nproc": os.cpu_count(),
        **figures,
    }


def _print(result: dict[str, Any]) -> None:
    print(
        f"{result['monitors']:,} monitors, {result['incidents']:,} incidents, "
        f"{result['maintenance_periods']:,} maintenance periods; {result['rounds']} periods"
    )
    for name in ("uptime_only", "uptime_and_slo"):
        row = result[name]
        print(
            f"{name:>15}: read {row['read_ms_median']} ms + compute {row['compute_ms_median']} ms"
            f" = {row['period_ms_median']} ms (max {row['period_ms_max']} ms),"
            f" {row['queries_per_period']:g} queries per period"
        )
    print(f"within the {result['sync_period_s']} s sync period: {result['ok']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument("--incidents", type=int, default=20, help="per monitor, over 90 days")
    parser.add_argument("--periods", type=int, default=10, help="maintenance, per monitor")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sync-period", type=float, default=60.0)
    parser.add_argument("--database", default="downtime_bench_slo")
    parser.add_argument("--dsn", help="a role that may create databases (default: DATABASE_URL)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
