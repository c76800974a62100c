"""Log-capture benchmark: 10,000 lines paged from the test Loki, stored and analysed.

What runs: the production ``LogCaptureService`` with ``LokiClient``, ``PostgresLogCaptures`` (a
real PostgreSQL) and ``LocalLogFiles``, against ``tests.support.loki_server`` started as a
separate process (so the server's JSON encoding does not share this process's GIL). Each round
plans a capture for a fresh incident and times ``run_due()``: the claim, the paged requests
(Loki's default cap of 5000 lines per request: 3 requests for 10,000 lines), normalisation,
analysis, the file write (``storage: auto`` puts more than 1000 lines in a file) and the
conditional record in PostgreSQL.

Phases, in one run so the figures are comparable on a busy machine:

1. baseline: raw aiohttp GET of one full 5000-line page plus ``json.loads``, back to back;
2. fetch only: ``LokiClient.fetch`` of the 10,000 lines (paging, de-duplication, normalisation);
3. capture, ``storage: auto`` (a file) and ``storage: database`` (JSONB in the row), each
   plain and then sealed under a log encryption key (AES-256-GCM, issue 14), and the
   10,000 lines read back (the logs route's read) plain and sealed;
4. analysis alone: ``analyze_logs_for_errors`` over the 10,000 captured records (a quarter of
   them errors), and the same records all marked ERROR (the worst case: every line normalised);
5. the baseline again, to see whether the machine's speed drifted during the run.

Run from the repository root::

    .venv/bin/python -m bench.capture               # 10 rounds per phase, ~20 s
    .venv/bin/python -m bench.capture --json
    .venv/bin/python -m bench.capture --dsn postgresql://...   # else scripts/start-postgres.sh
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.loki import LokiClient
from downtime_operator.adapters.postgres.backend import PostgresBackend
from downtime_operator.assembly import log_capture_service
from downtime_operator.domain.analysis import analyze_logs_for_errors
from downtime_operator.domain.incident_events import IncidentEvent
from downtime_operator.domain.log_capture import CapturePlan, LogQuery
from downtime_operator.domain.models import Incident, LogStorage, MonitorRef, Severity
from downtime_operator.domain.window import CaptureWindow, to_unix_ns

REPO_ROOT = Path(__file__).resolve().parents[1]
QUERY = '{app="bench"}'
BASE = datetime(2026, 1, 1, tzinfo=UTC)
STEP_NS = 1_000_000  # one line per millisecond: 10,000 lines in 10 s
CAPTURE_TARGET_SECONDS = 3.0
ANALYSIS_TARGET_SECONDS = 0.2


class FixedClock:
    """Every round captures at the same "now", so every round covers the same window."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class NoEvents:
    """The capture results go nowhere: no Kubernetes in this benchmark."""

    def publish(self, event: IncidentEvent) -> None:
        return None


@dataclass
class Timings:
    rounds: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rounds) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.rounds) * 1000


@dataclass
class Report:
    nproc: int
    lines: int
    pages_per_capture: int
    baseline_page_ms_before: float
    baseline_page_ms_after: float
    fetch_ms: dict[str, float]
    capture_file_ms: dict[str, float]
    capture_database_ms: dict[str, float]
    capture_file_sealed_ms: dict[str, float]
    capture_database_sealed_ms: dict[str, float]
    read_file_ms: dict[str, float]
    read_file_sealed_ms: dict[str, float]
    analysis_ms: dict[str, float]
    analysis_all_errors_ms: dict[str, float]
    capture_target_ms: float
    analysis_target_ms: float
    passed: bool


def _summary(timings: Timings) -> dict[str, float]:
    return {"median": round(timings.median_ms, 1), "max": round(timings.max_ms, 1)}


async def _time(rounds: int, action: Callable[[], Awaitable[object]]) -> Timings:
    taken = []
    for _ in range(rounds):
        started = time.perf_counter()
        await action()
        taken.append(time.perf_counter() - started)
    return Timings(taken)


def start_loki(lines: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.loki_server",
            "--lines",
            str(lines),
            "--start-ns",
            str(to_unix_ns(BASE)),
            "--step-ns",
            str(STEP_NS),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise RuntimeError(f"the test Loki did not start (printed {url!r})")
    return process, url


def with_database(dsn: str, database: str) -> str:
    """The same DSN (and its query options) naming another database."""
    base, _, query = dsn.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


def postgres_dsn(explicit: str | None) -> str:
    if explicit:
        return explicit
    found = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if found:
        return found
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "start-postgres.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1].partition("=")[2]


async def baseline(url: str, window: CaptureWindow, rounds: int) -> Timings:
    """One full page straight from the server, decoded: the floor any client pays per page."""
    params = {
        "query": QUERY,
        "start": str(window.start_ns),
        "end": str(window.end_ns),
        "limit": "5000",
        "direction": "forward",
    }
    async with aiohttp.ClientSession() as session:

        async def page() -> None:
            async with session.get(f"{url}/loki/api/v1/query_range", params=params) as answer:
                json.loads(await answer.read())

        await page()  # warm the connection
        return await _time(rounds, page)


async def bench(args: argparse.Namespace) -> Report:
    loki_process, url = start_loki(args.lines)
    dsn = postgres_dsn(args.dsn)
    database = f"bench_capture_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    database_dsn = f"{dsn.partition('?')[0].rsplit('/', 1)[0]}/{database}"
    backend = await PostgresBackend.connect(database_dsn, min_size=1, max_size=4)
    # The same database, its captured data sealed: a ring with one random key.
    keys = LogKeyRing({"bench": os.urandom(32)})
    sealed = await PostgresBackend.connect(database_dsn, min_size=1, max_size=4, keys=keys)
    try:
        await backend.migrate()
        with tempfile.TemporaryDirectory() as files_dir:
            return await _measure(args, url, (backend, sealed), Path(files_dir))
    finally:
        await sealed.close()
        await backend.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        loki_process.terminate()
        loki_process.wait(timeout=10)


async def _measure(
    args: argparse.Namespace,
    url: str,
    backends: tuple[PostgresBackend, PostgresBackend],
    files_dir: Path,
) -> Report:
    # before = 5m: the window starts at the first line; the lines end long before "now".
    started_at = BASE + timedelta(minutes=5)
    now = started_at + timedelta(minutes=1)
    window = CaptureWindow(start_ns=to_unix_ns(BASE), end_ns=to_unix_ns(now))
    before = await baseline(url, window, args.rounds)

    async with LokiClient(url=url) as client:
        fetched: list[int] = []

        async def fetch() -> None:
            batch = await client.fetch(LogQuery(query=QUERY, window=window, max_lines=10_000))
            fetched.append(len(batch.entries))

        fetch_timings = await _time(args.rounds, fetch)
        assert set(fetched) == {min(args.lines, 10_000)}, fetched

        plain, sealed = (
            log_capture_service(
                backend=backend,
                log_files_dir=files_dir,
                source=client,
                events=NoEvents(),
                clock=FixedClock(now),
            )
            for backend in backends
        )

        async def capture_once(
            storage: LogStorage, backend: PostgresBackend
        ) -> tuple[float, uuid.UUID]:
            service = sealed if backend.keys else plain
            incident = Incident(
                incident_id=uuid.uuid4(),
                monitor=MonitorRef(namespace="bench", name=uuid.uuid4().hex[:12]),
                k8s_name="",
                health_endpoint="http://bench/health",
                environment="bench",
                started_at=started_at,
                detected_at=started_at,
                severity=Severity.HIGH,
            )
            await backend.incidents.create_incident(incident)
            plan = CapturePlan(enabled=True, query=QUERY, storage=storage)
            await backend.captures.schedule_log_capture(
                incident.incident_id, plan=plan, due_at=started_at
            )
            began = time.perf_counter()
            ran = await service.run_due()
            taken = time.perf_counter() - began
            assert ran == 1, ran
            return taken, incident.incident_id

        async def capture_rounds(storage: LogStorage) -> tuple[Timings, Timings, list[uuid.UUID]]:
            """Plain and sealed in turn, round by round, so both meet the same machine."""
            taken: tuple[list[float], list[float]] = ([], [])
            last: list[uuid.UUID] = []
            for _ in range(args.rounds):
                last = []
                for kind, backend in enumerate(backends):
                    seconds, incident_id = await capture_once(storage, backend)
                    taken[kind].append(seconds)
                    last.append(incident_id)
            return Timings(taken[0]), Timings(taken[1]), last

        file_timings, sealed_file, (in_file, sealed_in_file) = await capture_rounds(LogStorage.AUTO)
        database_timings, sealed_database, (last, _) = await capture_rounds(LogStorage.DATABASE)

    stored = await plain.get_filtered_logs(last)
    assert stored is not None and len(stored) == min(args.lines, 10_000)
    read_file = await _time(args.rounds, lambda: plain.get_filtered_logs(in_file))
    read_sealed = await _time(args.rounds, lambda: sealed.get_filtered_logs(sealed_in_file))
    assert await sealed.get_filtered_logs(sealed_in_file) == await plain.get_filtered_logs(in_file)
    analysis_timings = _time_analysis(stored, args.rounds)
    every_line_an_error = [{**record, "level": "ERROR"} for record in stored]
    worst_analysis = _time_analysis(every_line_an_error, args.rounds)
    after = await baseline(url, window, args.rounds)
    worst_capture = max(
        t.max_ms for t in (file_timings, database_timings, sealed_file, sealed_database)
    )
    return Report(
        nproc=os.cpu_count() or 0,
        lines=min(args.lines, 10_000),
        pages_per_capture=min(args.lines, 10_000) // 5000 + 1,  # full pages + the closing one
        baseline_page_ms_before=round(before.median_ms, 1),
        baseline_page_ms_after=round(after.median_ms, 1),
        fetch_ms=_summary(fetch_timings),
        capture_file_ms=_summary(file_timings),
        capture_database_ms=_summary(database_timings),
        capture_file_sealed_ms=_summary(sealed_file),
        capture_database_sealed_ms=_summary(sealed_database),
        read_file_ms=_summary(read_file),
        read_file_sealed_ms=_summary(read_sealed),
        analysis_ms=_summary(analysis_timings),
        analysis_all_errors_ms=_summary(worst_analysis),
        capture_target_ms=CAPTURE_TARGET_SECONDS * 1000,
        analysis_target_ms=ANALYSIS_TARGET_SECONDS * 1000,
        passed=worst_capture < CAPTURE_TARGET_SECONDS * 1000
        and analysis_timings.max_ms < ANALYSIS_TARGET_SECONDS * 1000,
    )


def _time_analysis(records: list[dict[str, Any]], rounds: int) -> Timings:
    taken = []
    for _ in range(rounds):
        began = time.perf_counter()
        analyze_logs_for_errors(records)
        taken.append(time.perf_counter() - began)
    return Timings(taken)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--dsn", help="PostgreSQL DSN of a role that may create databases")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    report = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(f"nproc {report.nproc}; {report.lines} lines, {report.pages_per_capture} requests")
        print(
            f"baseline (one 5000-line page, GET + json.loads): {report.baseline_page_ms_before}"
            f" ms before, {report.baseline_page_ms_after} ms after"
        )
        print(f"fetch only (paged, de-duplicated, normalised): {report.fetch_ms} ms")
        print(f"capture, storage auto (file):  {report.capture_file_ms} ms")
        print(f"capture, storage database:     {report.capture_database_ms} ms")
        print(f"capture, file, sealed:         {report.capture_file_sealed_ms} ms")
        print(f"capture, database, sealed:     {report.capture_database_sealed_ms} ms")
        print(f"read back, file:               {report.read_file_ms} ms")
        print(f"read back, file, sealed:       {report.read_file_sealed_ms} ms")
        print(f"analysis alone:                {report.analysis_ms} ms")
        print(f"analysis, every line an error: {report.analysis_all_errors_ms} ms (no target)")
        verdict = "PASS" if report.passed else "FAIL"
        print(
            f"{verdict}: capture < {report.capture_target_ms:.0f} ms,"
            f" analysis < {report.analysis_target_ms:.0f} ms (worst round)"
        )
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
