"""Check-engine benchmark: many monitors on the real engine against a local target, no Kubernetes.

What runs: the production ``MonitorEngine`` + ``MonitorRunner`` + ``HttpProber`` (one shared
aiohttp session), with in-memory no-op stand-ins for PostgreSQL and Kubernetes (status patches
are still computed and "sent" to the fake). The target is ``tests.support.target`` in its own
process, so it does not share this process's GIL or event loop.

Phases, all in one run so the figures are comparable on a busy machine:

1. raw aiohttp baseline: one ClientSession, ``--concurrency`` workers doing back-to-back GETs;
2. the engine: ``--monitors`` monitors every ``--interval`` seconds for ``--seconds`` seconds.
   Monitor ``i`` starts at ``i * interval / monitors``: the phases are spread over the first
   interval, as in an operator that has been running for a while (not all at the same instant);
3. the raw baseline again, to see whether the machine's speed drifted during the run.

Figures: achieved/scheduled checks (scheduled = the check times of each monitor's phase grid
that fall inside the window; achieved = checks completed whose scheduled time is inside it),
scheduling lag p50/p99/max (as the runner reports it to its observer), check latency, RSS, CPU.

Run from the repository root::

    .venv/bin/python -m bench.engine                          # full size, ~75 s
    .venv/bin/python -m bench.engine --seconds 15 --monitors 200   # smoke run
    .venv/bin/python -m bench.engine --json                   # machine-readable figures
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.http_probe import HttpProber
from downtime_operator.adapters.sqlite.backend import SqliteBackend
from downtime_operator.assembly import build_engine
from downtime_operator.domain.log_capture import CaptureResult
from downtime_operator.domain.models import (
    CheckResult,
    Incident,
    MonitorRef,
)
from downtime_operator.domain.spec import InvalidSpecError, parse_monitor_spec
from downtime_operator.services.monitor_runner import MonitorRunner, SpecSnapshot
from downtime_operator.services.stop import EventStopSignal

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TARGET_READY_SECONDS = 15.0
CHECK_TIMEOUT_SECONDS = 5.0
LAG_TARGET_SECONDS = 0.5
RATIO_TARGET = 0.99
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

log = logging.getLogger("bench.engine")


# -- no-op stand-ins for PostgreSQL and Kubernetes ----------------------------------------------


class CountingResources:
    """IncidentResources that only counts what would have been sent to the API server."""

    def __init__(self) -> None:
        self.status_patches = 0
        self.incident_upserts = 0
        self.events = 0

    async def upsert_incident(self, incident: Incident) -> None:
        self.incident_upserts += 1

    async def find_open_incident(self, monitor: MonitorRef) -> Incident | None:
        return None

    async def find_open_incidents(self, namespace: str) -> list[Incident]:
        return []

    async def delete_incident(self, incident: Incident) -> None:
        return None

    async def patch_monitor_status(self, monitor: MonitorRef, status: Mapping[str, Any]) -> None:
        self.status_patches += 1

    async def post_event(
        self, monitor: MonitorRef, *, reason: str, message: str, warning: bool = False
    ) -> None:
        self.events += 1

    async def publish_log_capture(self, incident: Incident, result: CaptureResult) -> None:
        return None


class EngineLog(logging.Handler):
    """Counts the engine's warnings and errors; shows the first few instead of thousands."""

    def __init__(self, show: int = 5) -> None:
        super().__init__(level=logging.WARNING)
        self.show = show
        self.count = 0
        self.first: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < self.show:
            text = self.format(record)
            self.first.append(text)
            print(text, file=sys.stderr)


ENGINE_LOG = EngineLog()


# -- the target process -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Target:
    process: subprocess.Popen[bytes]
    port: int
    control_port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/health"

    @property
    def control_url(self) -> str:
        return f"http://{HOST}:{self.control_port}/mode"

    def cpu_seconds(self) -> float:
        """user + system CPU of the target process so far (Linux /proc)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def start_target(mode: str) -> Target:
    port, control_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "tests.support.target",
        "--port",
        str(port),
        "--control-port",
        str(control_port),
        "--mode",
        mode,
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    target = Target(process=process, port=port, control_port=control_port)
    deadline = time.monotonic() + TARGET_READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"target exited with {process.returncode}: {command}")
        try:
            with urllib.request.urlopen(target.control_url, timeout=1.0) as answer:
                json.load(answer)
            return target
        except OSError:
            time.sleep(0.1)
    stop_target(target)
    raise RuntimeError(f"target not ready within {TARGET_READY_SECONDS:.0f}s")


def stop_target(target: Target) -> None:
    if target.process.poll() is None:
        target.process.terminate()
        try:
            target.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            target.process.kill()
            target.process.wait(timeout=10)


async def target_requests(session: aiohttp.ClientSession, target: Target) -> int:
    async with session.get(target.control_url) as answer:
        body = await answer.json()
    return int(body["requests"])


# -- measurements -----------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted ``values`` (nan when empty)."""
    if not values:
        return float("nan")
    rank = max(1, min(len(values), math.ceil(fraction * len(values) - 1e-9)))
    return values[rank - 1]


def rss_now_mib() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * PAGE_SIZE / 2**20


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Baseline:
    seconds: float
    concurrency: int
    requests: int
    errors: int
    rate: float


async def raw_rate(url: str, *, seconds: float, concurrency: int) -> Baseline:
    """Back-to-back GETs by ``concurrency`` workers sharing one ClientSession.

    ``requests`` counts answers of any status; ``errors`` the requests that got none.
    """
    answered = 0
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal answered, errors
            while loop.time() < deadline:
                try:
                    async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                        async with session.get(url) as response:
                            await response.read()
                    answered += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = loop.time() - started
    return Baseline(
        seconds=round(elapsed, 2),
        concurrency=concurrency,
        requests=answered,
        errors=errors,
        rate=round(answered / elapsed, 1),
    )


@dataclass
class Recorder:
    """The runners' observer: keeps the checks whose scheduled time falls in the window."""

    window_start: datetime
    window_end: datetime
    lags: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    completed: int = 0  # every check, in the window or not
    failed: int = 0

    def __call__(self, ref: MonitorRef, result: CheckResult, lag: float) -> None:
        self.completed += 1
        # The runner computes the lag just before calling the prober, which stamps ``at``.
        scheduled = result.at - timedelta(seconds=lag)
        if not self.window_start <= scheduled < self.window_end:
            return
        self.lags.append(lag)
        if result.ok:
            if result.latency_ms is not None:
                self.latencies_ms.append(result.latency_ms)
        else:
            self.failed += 1
            self.errors[result.error or "?"] += 1


def scheduled_checks(*, monitors: int, interval: float, seconds: float) -> int:
    """Check times ``offset_i + k * interval`` (k >= 0) before ``seconds``, over all monitors."""
    total = 0
    for i in range(monitors):
        offset = i * interval / monitors
        if offset < seconds:
            total += int((seconds - offset) // interval) + (
                1 if (seconds - offset) % interval > 0 else 0
            )
    return total


# -- the engine run ---------------------------------------------------------------------------


def monitor_spec(args: argparse.Namespace, url: str) -> dict[str, str]:
    return {
        "url": url,
        "interval": f"{args.interval:g}s",
        "timeout": f"{args.timeout:g}s",
        "retryInterval": f"{args.interval:g}s",
    }


@dataclass
class EngineFigures:
    monitors: int
    interval_s: float
    timeout_s: float
    window_s: float
    limit_per_host: int
    scheduled: int
    achieved: int
    ratio: float
    failed: int
    errors: dict[str, int]
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    start_lag_p99_ms: float
    start_lag_max_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    cpu_s: float
    cpu_percent_of_one_core: float
    cpu_us_per_check: float
    target_cpu_s: float
    target_requests: int
    status_patches: int
    engine_warnings: int
    rss_before_mib: float
    rss_end_of_window_mib: float
    rss_after_shutdown_mib: float
    rss_peak_mib: float
    shutdown_s: float


@dataclass
class Measured:
    """What the engine phase measured, before it is turned into figures."""

    recorder: Recorder
    start_lags: list[float]
    cpu_s: float
    target_cpu_s: float
    target_requests: int
    status_patches: int
    rss_before_mib: float
    rss_end_of_window_mib: float
    shutdown_s: float


async def run_engine(args: argparse.Namespace, target: Target) -> EngineFigures:
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as store_dir:
        return await _run_engine(args, target, Path(store_dir))


async def _run_engine(args: argparse.Namespace, target: Target, files_dir: Path) -> EngineFigures:
    """The engine as ``build_engine`` makes it, over an SQLite file: a healthy target opens no
    incident, so the store sees only the runners' uptime reads."""
    clock = SystemClock()
    prober = HttpProber(
        clock, limit=max(1000, args.limit_per_host), limit_per_host=args.limit_per_host
    )
    gc.collect()
    rss_before = rss_now_mib()
    t0 = clock.now()
    recorder = Recorder(window_start=t0, window_end=t0 + timedelta(seconds=args.seconds))
    resources = CountingResources()
    engine = await build_engine(
        backend=await SqliteBackend.open(files_dir / "downtime.db"),
        resources=resources,
        log_files_dir=files_dir,
        observer=recorder,
        prober=prober,
    )
    stop = EventStopSignal()
    start_lags: list[float] = []

    async def monitor(i: int) -> None:
        snapshot = SpecSnapshot(spec=monitor_spec(args, f"{target.url}?m={i}"), generation=1)
        runner: MonitorRunner = engine.runner_for(MonitorRef(namespace="bench", name=f"m-{i}"))
        # Phases spread evenly over the first interval, as in a long-running operator.
        offset = timedelta(seconds=i * args.interval / args.monitors)
        await stop.sleep((t0 + offset - clock.now()).total_seconds())
        start_lags.append((clock.now() - (t0 + offset)).total_seconds())
        await runner.run(read_spec=lambda: snapshot, stop=stop)

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as control:
            requests_before = await target_requests(control, target)
            cpu_before, target_cpu_before = cpu_seconds(), target.cpu_seconds()
            tasks = [asyncio.create_task(monitor(i)) for i in range(args.monitors)]
            await _window(args, recorder, end=loop.time() + args.seconds)
            cpu_used = cpu_seconds() - cpu_before
            target_cpu = target.cpu_seconds() - target_cpu_before
            rss_end = rss_now_mib()
            # A check scheduled just before the end may still be starting: give it a moment.
            await asyncio.sleep(args.grace)
            stop.set()
            stopping = loop.time()
            await _finish(tasks, within=args.timeout + 5)
            await engine.close(drain_timeout=5.0)
            shutdown = loop.time() - stopping
            requests_during = await target_requests(control, target) - requests_before
    finally:  # on an error above: leave nothing running
        stop.set()
        await _finish(tasks, within=args.timeout + 5)
        await prober.close()
    gc.collect()
    measured = Measured(
        recorder=recorder,
        start_lags=start_lags,
        cpu_s=cpu_used,
        target_cpu_s=target_cpu,
        target_requests=requests_during,
        status_patches=resources.status_patches,
        rss_before_mib=rss_before,
        rss_end_of_window_mib=rss_end,
        shutdown_s=shutdown,
    )
    return figures(args, measured)


async def _window(args: argparse.Namespace, recorder: Recorder, *, end: float) -> None:
    """Wait out the measurement window, logging progress every 10 s."""
    loop = asyncio.get_running_loop()
    while (left := end - loop.time()) > 0:
        await asyncio.sleep(min(10.0, left))
        log.info(
            "%5.1fs: %d checks done, %d failed",
            args.seconds - max(0.0, end - loop.time()),
            recorder.completed,
            recorder.failed,
        )


async def _finish(tasks: list[asyncio.Task[None]], *, within: float) -> None:
    """Wait for stopped runners (a check in flight completes), then cancel stragglers."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def figures(args: argparse.Namespace, measured: Measured) -> EngineFigures:
    recorder = measured.recorder
    lags = sorted(recorder.lags)
    start_lags = sorted(measured.start_lags)
    latencies = sorted(recorder.latencies_ms)
    scheduled = scheduled_checks(
        monitors=args.monitors, interval=args.interval, seconds=args.seconds
    )
    achieved = len(lags)
    cpu = measured.cpu_s
    return EngineFigures(
        monitors=args.monitors,
        interval_s=args.interval,
        timeout_s=args.timeout,
        window_s=args.seconds,
        limit_per_host=args.limit_per_host,
        scheduled=scheduled,
        achieved=achieved,
        ratio=round(achieved / scheduled, 4) if scheduled else float("nan"),
        failed=recorder.failed,
        errors=dict(recorder.errors.most_common(5)),
        lag_p50_ms=_ms(percentile(lags, 0.50)),
        lag_p99_ms=_ms(percentile(lags, 0.99)),
        lag_max_ms=_ms(lags[-1] if lags else float("nan")),
        start_lag_p99_ms=_ms(percentile(start_lags, 0.99)),
        start_lag_max_ms=_ms(start_lags[-1] if start_lags else float("nan")),
        latency_p50_ms=round(percentile(latencies, 0.50), 2),
        latency_p99_ms=round(percentile(latencies, 0.99), 2),
        cpu_s=round(cpu, 2),
        cpu_percent_of_one_core=round(100 * cpu / args.seconds, 1),
        cpu_us_per_check=round(1e6 * cpu / achieved, 1) if achieved else float("nan"),
        target_cpu_s=round(measured.target_cpu_s, 2),
        target_requests=measured.target_requests,
        status_patches=measured.status_patches,
        engine_warnings=ENGINE_LOG.count,
        rss_before_mib=round(measured.rss_before_mib, 1),
        rss_end_of_window_mib=round(measured.rss_end_of_window_mib, 1),
        rss_after_shutdown_mib=round(rss_now_mib(), 1),
        rss_peak_mib=round(rss_peak_mib(), 1),
        shutdown_s=round(measured.shutdown_s, 2),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# -- report -----------------------------------------------------------------------------------


@dataclass
class Report:
    command: str
    nproc: int
    started: str
    target_mode: str
    baseline_before: Baseline
    engine: EngineFigures
    baseline_after: Baseline
    required_rate: float
    ratio_ok: bool
    lag_ok: bool


def summary(report: Report) -> str:
    e = report.engine
    before, after = report.baseline_before, report.baseline_after
    yes = {True: "met", False: "MISSED"}
    unexpected_failures = report.target_mode == "healthy" and e.failed > 0
    per_monitor_kib = 1024 * (e.rss_end_of_window_mib - e.rss_before_mib) / e.monitors
    lines = [
        f"check engine benchmark ({report.started}, nproc={report.nproc})",
        f"  command              {report.command}",
        f"  monitors             {e.monitors} every {e.interval_s:g}s, phases spread over one "
        f"interval, window {e.window_s:g}s, target mode {report.target_mode}, "
        f"limit_per_host={e.limit_per_host}",
        f"  raw aiohttp rate     {before.rate:.0f} req/s before, {after.rate:.0f} req/s after "
        f"({before.concurrency} workers, one session; errors {before.errors}+{after.errors})",
        f"  required check rate  {report.required_rate:.0f} checks/s "
        f"({100 * report.required_rate / max(1.0, min(before.rate, after.rate)):.1f}% of the "
        "lower raw rate)",
        f"  achieved/scheduled   {e.achieved}/{e.scheduled} = {e.ratio:.4f}  "
        f"(target >= {RATIO_TARGET}: {yes[report.ratio_ok]})",
        f"  scheduling lag       p50 {e.lag_p50_ms:.1f} ms, p99 {e.lag_p99_ms:.1f} ms, "
        f"max {e.lag_max_ms:.1f} ms  (target p99 < {LAG_TARGET_SECONDS * 1000:.0f} ms: "
        f"{yes[report.lag_ok]})",
        f"  first-wake lag       p99 {e.start_lag_p99_ms:.1f} ms, max {e.start_lag_max_ms:.1f} ms"
        " (staggered start vs. each monitor's phase; not in the runner's lag)",
        f"  latency (ok checks)  p50 {e.latency_p50_ms:.1f} ms, p99 {e.latency_p99_ms:.1f} ms; "
        f"failed checks {e.failed} {e.errors or ''}"
        + (" <- against a healthy target: the engine's fault" if unexpected_failures else ""),
        f"  target requests      {e.target_requests} during the engine phase",
        f"  CPU (engine process) {e.cpu_s:.1f} s = {e.cpu_percent_of_one_core:.1f}% of one core,"
        f" {e.cpu_us_per_check:.0f} us/check; target process {e.target_cpu_s:.1f} s",
        f"  RSS                  {e.rss_before_mib:.1f} MiB before, "
        f"{e.rss_end_of_window_mib:.1f} MiB at end of window, "
        f"{e.rss_after_shutdown_mib:.1f} MiB after shutdown, peak {e.rss_peak_mib:.1f} MiB; "
        f"{per_monitor_kib:.1f} KiB per monitor",
        f"  status patches       {e.status_patches} (to the fake API server); engine warnings "
        f"and errors logged: {e.engine_warnings}",
        f"  shutdown             {e.shutdown_s:.2f} s (stop signal -> runners done, pool closed)",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between checks")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    parser.add_argument(
        "--limit-per-host",
        type=int,
        default=1000,
        help="HttpProber limit_per_host (production default: 100)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="check timeout (default: min(5, interval/2))"
    )
    parser.add_argument("--target-mode", default="healthy", help="tests.support.target mode")
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="each raw phase")
    parser.add_argument("--concurrency", type=int, default=100, help="raw-rate workers")
    parser.add_argument(
        "--grace", type=float, default=1.0, help="seconds after the window before stopping"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.monitors < 1 or args.interval <= 0 or args.seconds <= 0:
        parser.error("--monitors, --interval and --seconds must be positive")
    if args.timeout is None:
        args.timeout = min(CHECK_TIMEOUT_SECONDS, args.interval / 2)
    try:  # the runners would only report an invalid spec, and check nothing
        parse_monitor_spec(monitor_spec(args, f"http://{HOST}:1/health"))
    except InvalidSpecError as exc:
        parser.error(f"these options make an invalid monitor spec: {exc}")
    return args


async def bench(args: argparse.Namespace, target: Target, command: str) -> Report:
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    log.info("raw aiohttp rate for %gs ...", args.baseline_seconds)
    before = await raw_rate(target.url, seconds=args.baseline_seconds, concurrency=args.concurrency)
    log.info(
        "%.0f req/s; engine: %d monitors for %gs ...", before.rate, args.monitors, args.seconds
    )
    engine = await run_engine(args, target)
    log.info("raw aiohttp rate again for %gs ...", args.baseline_seconds)
    after = await raw_rate(target.url, seconds=args.baseline_seconds, concurrency=args.concurrency)
    return Report(
        command=command,
        nproc=len(os.sched_getaffinity(0)),
        started=started,
        target_mode=args.target_mode,
        baseline_before=before,
        engine=engine,
        baseline_after=after,
        required_rate=args.monitors / args.interval,
        ratio_ok=engine.ratio >= RATIO_TARGET,
        lag_ok=engine.lag_p99_ms < LAG_TARGET_SECONDS * 1000,
    )


def _json_safe(value: Any) -> Any:
    """NaN (an empty sample) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    engine_logger = logging.getLogger("downtime_operator")
    engine_logger.setLevel(logging.WARNING)
    engine_logger.propagate = False
    engine_logger.addHandler(ENGINE_LOG)
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):  # ".venv/bin/python" when run from the repository
        python = python.relative_to(Path.cwd())
    command = " ".join(
        [str(python), "-m", "bench.engine", *(sys.argv[1:] if argv is None else argv)]
    )
    target = start_target(args.target_mode)
    try:
        report = asyncio.run(bench(args, target, command))
    finally:
        stop_target(target)
    if args.json:
        print(json.dumps(_json_safe(asdict(report)), indent=2))
    else:
        print(summary(report))


if __name__ == "__main__":
    main()
