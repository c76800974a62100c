"""Operator benchmark: the real ``downtime-operator run`` process on the test control plane.

What runs: kube-apiserver + etcd as in the e2e tests (with their audit log), PostgreSQL (a fresh
database), two ``tests.support.target`` processes, and the operator as a process watching one
namespace holding ``--monitors`` HealthMonitors (interval ``--interval``, failureThreshold 1).
The first 90 % point at one target, the rest (``--outage-fraction``) at the other.

Phases, in one run:

1. raw aiohttp rate against the target (the same-run baseline);
2. start: time until every monitor's ``status.state`` is ``Up``;
3. steady window (``--steady-seconds``, after ``--settle-seconds``: past the start-up writes
   and the first round of periodic refreshes): checks achieved against the
   scheduled ones (target requests), operator CPU and RSS, status PATCHes per second and API
   requests per second by verb (from the audit log), p99 scheduling lag (the operator's
   ``gatewayz_health_check_lag_seconds`` histogram);
4. outage: the second target answers 503; time until every failing monitor has its row in
   PostgreSQL and its DowntimeIncident; then it recovers: time until all are resolved, in both.
   Duplicates (two incidents of one monitor) are counted.

Run from the repository root with the control plane binaries built (``scripts/test.sh`` builds
them once)::

    .venv/bin/python -m bench.operator --monitors 1000
    .venv/bin/python -m bench.operator --monitors 10000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from tests.e2e.controlplane import ControlPlane, free_port
from tests.support.prometheus import scrape

from bench.capture import postgres_dsn
from bench.engine import CLOCK_TICKS, PAGE_SIZE, Target, raw_rate, start_target, stop_target

GROUP_PATH = "/apis/monitoring.gatewayz.ai/v1"
NAMESPACE = "bench"
CREATE_CONCURRENCY = 32


@dataclass
class Figures:
    monitors: int
    interval_s: float
    nproc: int
    raw_rate_per_s: float
    all_up_s: float
    first_checks_s: float
    """From the operator's start until every monitor had its first check."""
    first_checks_spread_s: float
    """From the first monitor's first check to the last one's: the start-up spread."""
    restart_checks_s: float
    """The same after a restart (monitors and their finalizers already there)."""
    restart_spread_s: float
    scheduled_checks: int
    achieved_checks: int
    achieved_ratio: float
    lag_p99_s: float
    cpu_percent_of_one_core: float
    """The operator and its check worker together, as are the RSS figures."""
    rss_mib: float
    worker_cpu_percent: float
    worker_rss_mib: float
    status_patches_per_monitor_per_min: float
    status_patches_per_s: float
    api_requests_per_s: dict[str, float] = field(default_factory=dict)
    outage_monitors: int = 0
    outage_rows_s: float = math.nan
    outage_crs_s: float = math.nan
    resolved_rows_s: float = math.nan
    resolved_crs_s: float = math.nan
    duplicate_incidents: int = 0


def monitor_body(name: str, url: str, interval: float) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.gatewayz.ai/v1",
        "kind": "HealthMonitor",
        "metadata": {"name": name},
        "spec": {
            "url": url,
            "interval": f"{interval:g}s",
            "timeout": f"{min(5.0, interval / 2):g}s",
            "retryInterval": f"{interval:g}s",
            "failureThreshold": 1,
        },
    }


class Api:
    """The API server over aiohttp with the admin token (the operator uses its own client)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.session = aiohttp.ClientSession(
            base_url=cp.server,
            headers={"Authorization": f"Bearer {cp.admin_token}"},
            connector=aiohttp.TCPConnector(ssl=cp.ssl_context(), limit=CREATE_CONCURRENCY),
        )

    async def create_monitors(self, bodies: list[dict[str, Any]]) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                path = f"{GROUP_PATH}/namespaces/{NAMESPACE}/healthmonitors"
                async with self.session.post(path, json=body) as response:
                    if response.status >= 300:
                        raise RuntimeError(f"create: {response.status} {await response.text()}")

        await asyncio.gather(*(worker() for _ in range(CREATE_CONCURRENCY)))

    async def items(self, resource: str) -> list[dict[str, Any]]:
        path = f"{GROUP_PATH}/namespaces/{NAMESPACE}/{resource}"
        async with self.session.get(path, timeout=aiohttp.ClientTimeout(total=120)) as response:
            body = await response.json()
        items: list[dict[str, Any]] = body["items"]
        return items

    async def close(self) -> None:
        await self.session.close()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the operator and its check worker)."""
    tree = [pid]
    for parent in tree:
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            tree.extend(int(child) for child in children.read_text().split())
    return tree


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / 2**20


def tree_cpu_seconds(pids: list[int]) -> list[float]:
    return [process_cpu_seconds(pid) for pid in pids]


def lag_p99(metrics_port: int) -> float:
    """The 99th percentile of the scheduling-lag histogram (its bucket's upper bound)."""
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in scrape(metrics_port, timeout=10).items()
        if name == "gatewayz_health_check_lag_seconds_bucket"
    )
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= 0.99 * total)


def audit_counts(cp: ControlPlane, *, since: datetime, until: datetime) -> Counter[str]:
    """API requests by ``verb resource[/subresource]`` received in ``[since, until)``."""
    counts: Counter[str] = Counter()
    with cp.audit_log.open() as log:
        for line in log:
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete":
                continue
            at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if not since <= at < until:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "?") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            counts[f"{event['verb']} {resource}"] += 1
    return counts


async def target_count(session: aiohttp.ClientSession, target: Target) -> int:
    async with session.get(target.control_url) as answer:
        return int((await answer.json())["requests"])


async def first_seen(session: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
    url = target.control_url.removesuffix("/mode") + "/first-seen?contains=m%3D"
    async with session.get(url) as answer:
        seen: dict[str, Any] = await answer.json()
        return seen


async def forget_seen(session: aiohttp.ClientSession, target: Target) -> None:
    url = target.control_url.removesuffix("/mode") + "/first-seen/reset"
    async with session.post(url) as answer:
        answer.raise_for_status()


async def every_monitor_checked(
    session: aiohttp.ClientSession,
    targets: tuple[Target, ...],
    *,
    monitors: int,
    since: float,
    within: float,
) -> tuple[float, float]:
    """Seconds from ``since`` until every monitor's URL was asked for once, and the spread
    from the first monitor's first check to the last one's."""
    deadline = time.monotonic() + within
    while True:
        seen = [await first_seen(session, t) for t in targets]
        if sum(s["distinct"] for s in seen) >= monitors:
            last = max(s["last"] for s in seen if s["last"] is not None)
            first = min(s["first"] for s in seen if s["first"] is not None)
            return last - since, last - first
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every monitor was checked within {within:g}s: {seen}")
        await asyncio.sleep(1.0)


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    os.kill(operator.pid, signal.SIGTERM)
    try:
        operator.wait(timeout=60)
    except subprocess.TimeoutExpired:
        # Still flushing writes 60 s after SIGTERM: a figure of its own, not a crash.
        print("operator still flushing 60 s after SIGTERM; killed", file=sys.stderr)
        operator.kill()


async def set_mode(session: aiohttp.ClientSession, target: Target, mode: str) -> None:
    async with session.post(f"{target.control_url}/{mode}") as answer:
        answer.raise_for_status()


async def timed(probe: Any, *, within: float, every: float = 0.5) -> float:
    """Seconds until ``await probe()`` is true (nan if never within ``within``)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await probe():
            return time.monotonic() - started
        await asyncio.sleep(every)
    return math.nan


async def run(args: argparse.Namespace) -> Figures:  # noqa: PLR0915 (one scenario, in order)
    admin_dsn = postgres_dsn(None)
    database = f"bench_operator_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = f"{admin_dsn.partition('?')[0].rsplit('/', 1)[0]}/{database}"
    healthy, flaky = start_target("healthy"), start_target("healthy")
    failing_count = int(args.monitors * args.outage_fraction)
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    operator: subprocess.Popen[bytes] | None = None
    try:
        baseline = await raw_rate(healthy.url, seconds=3, concurrency=100)
        with ControlPlane() as cp:
            cp.api("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
            api = Api(cp)
            bodies = [
                monitor_body(
                    f"m-{i:05d}",
                    f"{(flaky if i >= args.monitors - failing_count else healthy).url}?m={i}",
                    args.interval,
                )
                for i in range(args.monitors)
            ]
            await api.create_monitors(bodies)
            metrics_port = free_port()
            env = cp.env(
                DATABASE_URL=dsn,
                WATCH_NAMESPACES=NAMESPACE,
                LOG_LEVEL="WARNING",
                METRICS_PORT=str(metrics_port),
                METRICS_HOST="127.0.0.1",
            )
            log = (workdir / "operator.log").open("wb")

            def launch() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [sys.executable, "-m", "downtime_operator", "run"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                )

            started_at = time.time()
            operator = launch()

            async def all_up() -> bool:
                items = await api.items("healthmonitors")
                up = sum(bool((i.get("status") or {}).get("state") == "Up") for i in items)
                return up == len(bodies)

            all_up_s = await timed(all_up, within=args.start_timeout, every=5.0)
            print(f"all Up after {all_up_s:.1f}s", file=sys.stderr)
            async with aiohttp.ClientSession() as control:
                first_checks_s, first_checks_spread_s = await every_monitor_checked(
                    control, (healthy, flaky), monitors=len(bodies), since=started_at, within=60
                )
            # Past the start-up writes and the first round of periodic refreshes (one sync
            # period after the first checks): the steady state.
            await asyncio.sleep(args.settle_seconds)
            async with aiohttp.ClientSession() as control:
                requests_before = await target_count(control, healthy) + await target_count(
                    control, flaky
                )
                pids = process_tree(operator.pid)
                cpu_before = tree_cpu_seconds(pids)
                window_start = datetime.now().astimezone()
                t0 = time.monotonic()
                await asyncio.sleep(args.steady_seconds)
                window = time.monotonic() - t0
                window_end = datetime.now().astimezone()
                cpu = [
                    after - before
                    for after, before in zip(tree_cpu_seconds(pids), cpu_before, strict=True)
                ]
                requests = (
                    await target_count(control, healthy)
                    + await target_count(control, flaky)
                    - requests_before
                )
                rss = [process_rss_mib(pid) for pid in pids]
                lag = lag_p99(metrics_port)
                await asyncio.sleep(1)  # audit lines land just after the response
                counts = audit_counts(cp, since=window_start, until=window_end)
                status_patches = counts["patch healthmonitors/status"]
                scheduled = int(args.monitors * window / args.interval)

                await set_mode(control, flaky, "failing")
                print(f"outage: {failing_count} monitors failing", file=sys.stderr, flush=True)
                conn = await asyncpg.connect(dsn)
                try:

                    async def rows_opened() -> bool:
                        n = await conn.fetchval("SELECT count(*) FROM downtime_incidents")
                        return int(n) >= failing_count

                    async def crs_opened() -> bool:
                        return len(await api.items("downtimeincidents")) >= failing_count

                    rows_s, crs_s = await asyncio.gather(
                        timed(rows_opened, within=args.outage_timeout),
                        timed(crs_opened, within=args.outage_timeout, every=1.0),
                    )
                    await asyncio.sleep(args.interval)
                    await set_mode(control, flaky, "healthy")

                    async def rows_resolved() -> bool:
                        n = await conn.fetchval(
                            "SELECT count(*) FROM downtime_incidents WHERE status = 'resolved'"
                        )
                        return int(n) >= failing_count

                    async def crs_resolved() -> bool:
                        items = await api.items("downtimeincidents")
                        done = sum(
                            bool((i.get("status") or {}).get("status") == "resolved") for i in items
                        )
                        return done >= failing_count

                    resolved_rows_s, resolved_crs_s = await asyncio.gather(
                        timed(rows_resolved, within=args.outage_timeout),
                        timed(crs_resolved, within=args.outage_timeout, every=1.0),
                    )
                    duplicates = int(
                        await conn.fetchval(
                            "SELECT count(*) - count(DISTINCT (monitor_namespace, monitor_name))"
                            " FROM downtime_incidents"
                        )
                    )
                finally:
                    await conn.close()
            # A restart: the monitors exist and carry kopf's finalizer already, as after an
            # upgrade or a rescheduled pod (the first start above also added 10,000 finalizers).
            stop_operator(operator)
            async with aiohttp.ClientSession() as control:
                for target in (healthy, flaky):
                    await forget_seen(control, target)
                restarted_at = time.time()
                operator = launch()
                restart_checks_s, restart_spread_s = await every_monitor_checked(
                    control,
                    (healthy, flaky),
                    monitors=len(bodies),
                    since=restarted_at,
                    within=args.start_timeout,
                )
            await api.close()
            stop_operator(operator)
    finally:
        if operator is not None and operator.poll() is None:
            operator.kill()
        stop_target(healthy)
        stop_target(flaky)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    seconds = (window_end - window_start).total_seconds()
    return Figures(
        monitors=args.monitors,
        interval_s=args.interval,
        nproc=len(os.sched_getaffinity(0)),
        raw_rate_per_s=baseline.rate,
        all_up_s=all_up_s,
        first_checks_s=first_checks_s,
        first_checks_spread_s=first_checks_spread_s,
        restart_checks_s=restart_checks_s,
        restart_spread_s=restart_spread_s,
        scheduled_checks=scheduled,
        achieved_checks=min(requests, scheduled),
        achieved_ratio=min(1.0, requests / scheduled) if scheduled else math.nan,
        lag_p99_s=lag,
        cpu_percent_of_one_core=100 * sum(cpu) / window,
        rss_mib=sum(rss),
        worker_cpu_percent=100 * sum(cpu[1:]) / window,
        worker_rss_mib=sum(rss[1:]),
        status_patches_per_monitor_per_min=status_patches / args.monitors / (seconds / 60),
        status_patches_per_s=status_patches / seconds,
        api_requests_per_s={k: round(v / seconds, 2) for k, v in sorted(counts.items())},
        outage_monitors=failing_count,
        outage_rows_s=rows_s,
        outage_crs_s=crs_s,
        resolved_rows_s=resolved_rows_s,
        resolved_crs_s=resolved_crs_s,
        duplicate_incidents=duplicates,
    )


def summary(f: Figures) -> str:
    lines = [
        f"operator benchmark (nproc={f.nproc}): {f.monitors} monitors every {f.interval_s:g}s",
        f"  raw aiohttp rate         {f.raw_rate_per_s:.0f} req/s (same-run baseline)",
        f"  all Up after start       {f.all_up_s:.1f} s",
        f"  every monitor checked    {f.first_checks_s:.1f} s after the process started"
        f" (first checks spread over {f.first_checks_spread_s:.1f} s)",
        f"  after a restart          every monitor checked {f.restart_checks_s:.1f} s after the"
        f" process started (spread over {f.restart_spread_s:.1f} s)",
        f"  checks achieved          {f.achieved_checks}/{f.scheduled_checks}"
        f" = {f.achieved_ratio:.4f}",
        f"  scheduling lag p99       {f.lag_p99_s * 1000:.0f} ms (histogram bucket bound)",
        f"  operator CPU / RSS       {f.cpu_percent_of_one_core:.0f}% of a core"
        f" / {f.rss_mib:.0f} MiB (of which the check worker {f.worker_cpu_percent:.0f}%"
        f" / {f.worker_rss_mib:.0f} MiB)",
        f"  status PATCHes           {f.status_patches_per_s:.1f}/s"
        f" ({f.status_patches_per_monitor_per_min:.2f} per monitor per min)",
        "  API requests/s by verb   "
        + ", ".join(f"{k}: {v:g}" for k, v in f.api_requests_per_s.items()),
        f"  {f.outage_monitors}-monitor outage      rows in {f.outage_rows_s:.1f} s,"
        f" CRs in {f.outage_crs_s:.1f} s; resolved: rows {f.resolved_rows_s:.1f} s,"
        f" CRs {f.resolved_crs_s:.1f} s; duplicate incidents {f.duplicate_incidents}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--outage-fraction", type=float, default=0.1)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=75.0)
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--outage-timeout", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    print(json.dumps(asdict(figures), indent=2) if args.json else summary(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
