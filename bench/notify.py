"""Notification delivery benchmark: the outbox and delivery loop against a local webhook receiver.

What runs: the production ``NotificationDelivery`` (claims under a lease, one worker per channel,
pacing, recording every outcome) with the production ``HttpChannelTransport`` (rendering, Standard
Webhooks signing, one aiohttp session) over a real outbox: PostgreSQL when ``DATABASE_URL`` is
set (in a throw-away database of its own), else an SQLite file in a temporary directory. The
receiver is a minimal aiohttp server in its own process on 127.0.0.1 (so it does not share this
process's GIL or event loop); it answers 204 at once and does NOT verify signatures, so the
figures measure our side. The channels are webhooks with the highest ``rate`` allowed
(``MAX_RATE``, so the pacer runs but does not bind) and ``groupWindow: 0s`` (grouping off: every
notification is its own POST, as a throughput figure must count them).

Phases, all in one run so the figures are comparable on a busy machine:

1. raw aiohttp rate: back-to-back POSTs of a signed webhook body of the same size to the same
   receiver, by 1 worker (what one channel's sequential worker could do at best), by as many
   workers as phase 3 has channels, and by 64;
2. backlog, one channel: ``--notices`` pending notifications enqueued up front, then delivered;
   rate = notices / time from the loop's start to the last receipt (and the outbox empty);
3. backlog, ``--channels`` channels: the same, spread round-robin over that many channels
   (each channel's worker sends one message at a time, so one channel is sequential);
4. latency: ``--open-rate`` incidents a second for ``--open-seconds`` seconds go through
   ``NotificationSink.apply`` (outbox write, then a wake of the delivery loop), on one channel;
   the receiver records receipt time minus the notice's time (the incident's detection).

Run from the repository root::

    .venv/bin/python -m bench.notify                    # full size, ~1 min
    .venv/bin/python -m bench.notify --notices 2000     # quick run
    .venv/bin/python -m bench.notify --json             # machine-readable figures
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.capture import with_database
from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.notify.channels import HttpChannelTransport
from downtime_operator.adapters.notify.env_channels import StaticChannelDirectory
from downtime_operator.adapters.notify.webhook import sign
from downtime_operator.adapters.postgres.backend import PostgresBackend
from downtime_operator.adapters.sqlite.backend import SqliteBackend
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.models import Incident, MonitorRef, Severity
from downtime_operator.domain.notifications.channel import (
    MAX_RATE,
    SecretKeyRef,
    parse_channel_spec,
)
from downtime_operator.domain.notifications.notice import Notice, notice_for
from downtime_operator.domain.notifications.render import webhook_body
from downtime_operator.services.notifications.delivery import NotificationDelivery
from downtime_operator.services.notifications.ports import Channel
from downtime_operator.services.notifications.sink import NotificationSink
from downtime_operator.services.outbox import NewNotification, NotificationOutbox
from downtime_operator.services.stop import EventStopSignal

HOST = "127.0.0.1"
NAMESPACE = "bench"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_REF = SecretKeyRef(name="bench", key="webhook-secret")
RATIO_TARGET = 0.5
LATENCY_P99_TARGET_SECONDS = 1.0
READY_SECONDS = 20.0
ENQUEUE_CHUNK = 500
RAW_WIDE = 64

log = logging.getLogger("bench.notify")


# -- the receiver process ---------------------------------------------------------------------


class Received:
    """What the receiver saw: messages, distinct webhook-ids, and receipt - notice time."""

    def __init__(self) -> None:
        self.count = 0
        self.ids: set[str] = set()
        self.latencies: list[float] = []

    def record(self, body: bytes, msg_id: str | None, now: float) -> None:
        self.count += 1
        if msg_id is not None:
            self.ids.add(msg_id)
        try:
            document = json.loads(body)
            at = datetime.fromisoformat(document["timestamp"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        self.latencies.append(now - at.timestamp())

    def reset(self) -> None:
        self.count = 0
        self.ids.clear()
        self.latencies.clear()


async def serve(port: int) -> None:
    """POST /hook/{channel}: 204 (no signature check); GET /stats; POST /reset."""
    received = Received()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        received.record(body, request.headers.get("webhook-id"), time.time())
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        document = {
            "count": received.count,
            "unique": len(received.ids),
            "latencies": received.latencies if "latencies" in request.query else [],
        }
        return web.json_response(document)

    async def reset(request: web.Request) -> web.Response:
        received.reset()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook/{channel}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    await asyncio.Event().wait()


def cpu_seconds() -> float:
    """user + system CPU of this process so far (its threads included: SQLite's worker)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ReceiverProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def hook_url(self, channel: int) -> str:
        return f"{self.base_url}/hook/{channel}"


def start_receiver() -> ReceiverProcess:
    port = free_port()
    command = [sys.executable, "-m", "bench.notify", "--serve", str(port)]
    process = subprocess.Popen(command)
    receiver = ReceiverProcess(process=process, port=port)
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{receiver.base_url}/stats", timeout=1):
                return receiver
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_receiver(receiver)
                raise RuntimeError("the receiver did not start") from None
            time.sleep(0.05)


def stop_receiver(receiver: ReceiverProcess) -> None:
    receiver.process.terminate()
    try:
        receiver.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        receiver.process.kill()
        receiver.process.wait()


@dataclass(frozen=True)
class Stats:
    count: int
    unique: int
    latencies: list[float]


async def receiver_stats(
    session: aiohttp.ClientSession, receiver: ReceiverProcess, *, latencies: bool = False
) -> Stats:
    url = f"{receiver.base_url}/stats" + ("?latencies=1" if latencies else "")
    async with session.get(url) as response:
        document = await response.json()
    return Stats(document["count"], document["unique"], document["latencies"])


async def receiver_reset(session: aiohttp.ClientSession, receiver: ReceiverProcess) -> None:
    async with session.post(f"{receiver.base_url}/reset") as response:
        await response.read()


# -- the outbox -------------------------------------------------------------------------------

Backend = SqliteBackend | PostgresBackend


@contextlib.asynccontextmanager
async def open_backend() -> AsyncIterator[Backend]:
    """A fresh outbox: a throw-away PostgreSQL database, or an SQLite file in a temp dir."""
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        with tempfile.TemporaryDirectory(prefix="bench-notify-") as directory:
            backend = await SqliteBackend.open(Path(directory) / "downtime.db")
            try:
                await backend.migrate()
                yield backend
            finally:
                await backend.close()
        return
    database = f"bench_notify_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    try:
        postgres = await PostgresBackend.connect(with_database(dsn, database), max_size=10)
        try:
            await postgres.migrate()
            yield postgres
        finally:
            await postgres.close()
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


def webhook_channel(receiver: ReceiverProcess, index: int) -> Channel:
    spec = parse_channel_spec(
        {
            "type": "webhook",
            "webhook": {"url": receiver.hook_url(index), "secretFrom": SECRET_REF.model_dump()},
            "rate": MAX_RATE,
            "groupWindow": "0s",
        }
    )
    return Channel(key=f"{NAMESPACE}/hook-{index}", spec=spec, secrets={SECRET_REF: SECRET})


def incident(index: int, *, detected: datetime) -> Incident:
    name = f"svc-{index}"
    started = detected - timedelta(seconds=20)
    return Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace=NAMESPACE, name=name),
        k8s_name=f"{name}-{started:%Y%m%d-%H%M%S}",
        health_endpoint=f"https://{name}.example/health",
        environment="production",
        started_at=started,
        detected_at=detected,
        severity=Severity.HIGH,
        error_message="HTTP 503",
        http_status_code=503,
        failed_checks=3,
    )


def opened_notice(index: int, *, at: datetime) -> Notice:
    notice = notice_for(
        IncidentEvent(kind=IncidentEventKind.OPENED, incident=incident(index, detected=at)), at=at
    )
    assert notice is not None
    return notice


async def enqueue_backlog(
    outbox: NotificationOutbox, channels: Sequence[Channel], *, notices: int
) -> float:
    """``notices`` pending rows, round-robin over ``channels``; the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    for first in range(0, notices, ENQUEUE_CHUNK):
        rows = []
        for index in range(first, min(first + ENQUEUE_CHUNK, notices)):
            notice = opened_notice(index, at=now)
            rows.append(
                NewNotification(
                    incident_id=notice.incident_id,
                    channel=channels[index % len(channels)].key,
                    event=notice.event_key,
                    payload=notice.to_payload(),
                    created_at=now,
                )
            )
        await outbox.enqueue(rows)
    return time.perf_counter() - started


def new_delivery(
    outbox: NotificationOutbox, channels: Sequence[Channel], transport: HttpChannelTransport
) -> tuple[NotificationDelivery, StaticChannelDirectory]:
    directory = StaticChannelDirectory(channels)
    delivery = NotificationDelivery(
        outbox=outbox,
        directory=directory,
        transport=transport,
        clock=SystemClock(),
        owner="bench",
    )
    return delivery, directory


@contextlib.asynccontextmanager
async def running(delivery: NotificationDelivery) -> AsyncIterator[None]:
    stop = EventStopSignal()
    task = asyncio.create_task(delivery.run(stop=stop), name="bench delivery")
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


# -- phases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRate:
    concurrency: int
    seconds: float
    requests: int
    errors: int
    rate: float
    cpu_ms_each: float
    """This process's CPU per request."""


async def raw_rate(receiver: ReceiverProcess, *, seconds: float, concurrency: int) -> RawRate:
    """Back-to-back POSTs of a signed webhook body by ``concurrency`` workers, one session."""
    notice = opened_notice(0, at=datetime.now(UTC))
    body = webhook_body([notice])
    msg_id = str(uuid.uuid4())
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "downtime-operator",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, msg_id=msg_id, timestamp=stamp, body=body),
    }
    answered = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu = cpu_seconds()
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(index: int) -> None:
            nonlocal answered, errors
            url = receiver.hook_url(index)
            while time.perf_counter() < deadline:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                    answered += 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
    return RawRate(
        concurrency=concurrency,
        seconds=round(elapsed, 2),
        requests=answered,
        errors=errors,
        rate=round(answered / elapsed, 1),
        cpu_ms_each=round(cpu / max(answered, 1) * 1000, 3),
    )


@dataclass(frozen=True)
class BacklogFigures:
    channels: int
    notices: int
    enqueue_seconds: float
    seconds: float
    rate: float
    received: int
    distinct_ids: int
    cpu_ms_each: float
    """This process's CPU per notification delivered (claim, render, sign, POST, record)."""


async def backlog(
    receiver: ReceiverProcess, session: aiohttp.ClientSession, *, notices: int, channels: int
) -> BacklogFigures:
    """Pre-enqueue ``notices`` rows over ``channels`` channels, then time their delivery."""
    await receiver_reset(session, receiver)
    hooks = [webhook_channel(receiver, i) for i in range(channels)]
    async with open_backend() as backend:
        outbox = backend.notifications
        enqueued = await enqueue_backlog(outbox, hooks, notices=notices)
        transport = HttpChannelTransport(request_timeout=15.0)
        await transport.start()
        try:
            delivery, _ = new_delivery(outbox, hooks, transport)
            cpu = cpu_seconds()
            started = time.perf_counter()
            async with running(delivery):
                while True:
                    stats = await receiver_stats(session, receiver)
                    if stats.count >= notices and await outbox.pending_count() == 0:
                        break
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - started
                cpu = cpu_seconds() - cpu
        finally:
            await transport.close()
    return BacklogFigures(
        channels=channels,
        notices=notices,
        enqueue_seconds=round(enqueued, 2),
        seconds=round(elapsed, 2),
        rate=round(notices / elapsed, 1),
        received=stats.count,
        distinct_ids=stats.unique,
        cpu_ms_each=round(cpu / notices * 1000, 3),
    )


@dataclass(frozen=True)
class LatencyFigures:
    open_rate: float
    seconds: float
    opened: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def latency(
    receiver: ReceiverProcess, session: aiohttp.ClientSession, *, rate: float, seconds: float
) -> LatencyFigures:
    """Open ``rate`` incidents a second through the sink; receipt time minus detection time."""
    await receiver_reset(session, receiver)
    hook = webhook_channel(receiver, 0)
    total = round(rate * seconds)
    async with open_backend() as backend:
        outbox = backend.notifications
        transport = HttpChannelTransport(request_timeout=15.0)
        await transport.start()
        try:
            delivery, directory = new_delivery(outbox, [hook], transport)
            sink = NotificationSink(
                outbox=outbox, directory=directory, clock=SystemClock(), wake=delivery.wake
            )
            channels = (hook.key.partition("/")[2],)
            async with running(delivery):
                started = time.perf_counter()
                for index in range(total):
                    due = started + index / rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    event = IncidentEvent(
                        kind=IncidentEventKind.OPENED,
                        incident=incident(index, detected=datetime.now(UTC)),
                        channels=channels,
                    )
                    await sink.apply(event)
                deadline = time.perf_counter() + 30.0
                while time.perf_counter() < deadline:
                    stats = await receiver_stats(session, receiver)
                    if stats.count >= total:
                        break
                    await asyncio.sleep(0.05)
                stats = await receiver_stats(session, receiver, latencies=True)
        finally:
            await transport.close()
    values = stats.latencies
    return LatencyFigures(
        open_rate=rate,
        seconds=seconds,
        opened=total,
        received=stats.count,
        p50_ms=round(percentile(values, 0.50) * 1000, 1),
        p99_ms=round(percentile(values, 0.99) * 1000, 1),
        max_ms=round(max(values, default=float("nan")) * 1000, 1),
    )


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    command: str
    started: str
    nproc: int
    store: str
    raw_one: RawRate
    raw_channels: RawRate
    raw_wide: RawRate
    one_channel: BacklogFigures
    many_channels: BacklogFigures
    latency: LatencyFigures
    ratio_one: float
    """One channel's delivery rate / raw rate with one worker."""
    ratio_many: float
    """``--channels`` channels' delivery rate / raw rate with as many workers."""
    ratio_wide: float
    """``--channels`` channels' delivery rate / raw rate with 64 workers."""
    ratio_ok: bool
    latency_ok: bool


def summary(report: Report) -> str:
    one, many, lat = report.one_channel, report.many_channels, report.latency
    mark = {True: "ok", False: "MISSED"}
    lines = [
        f"notification delivery benchmark ({report.started}, nproc={report.nproc})",
        f"  command: {report.command}",
        f"  outbox: {report.store}",
        "  raw aiohttp POST rate (same receiver, signed body of the same size):",
    ]
    for raw in (report.raw_one, report.raw_channels, report.raw_wide):
        lines.append(
            f"    {raw.concurrency:>3} worker(s): {raw.rate:>8.1f} req/s"
            f" ({raw.requests} in {raw.seconds}s, {raw.errors} errors,"
            f" {raw.cpu_ms_each} ms CPU each here)"
        )
    for figures, raw, ratio in (
        (one, report.raw_one, report.ratio_one),
        (many, report.raw_channels, report.ratio_many),
    ):
        lines.append(
            f"  backlog {figures.notices} over {figures.channels} channel(s):"
            f" {figures.rate:.1f}/s in {figures.seconds}s = {ratio:.0%} of raw"
            f" ({raw.concurrency} worker(s)); received {figures.received},"
            f" distinct webhook-ids {figures.distinct_ids}; {figures.cpu_ms_each} ms CPU each"
            f" here; enqueue {figures.enqueue_seconds}s"
        )
    lines += [
        f"  {many.channels} channels vs raw with {RAW_WIDE} workers: {report.ratio_wide:.0%}",
        f"  target >= {RATIO_TARGET:.0%} of raw (same concurrency): {mark[report.ratio_ok]}",
        f"  latency at {lat.open_rate:g} incidents/s for {lat.seconds:g}s: received"
        f" {lat.received}/{lat.opened}, p50 {lat.p50_ms} ms, p99 {lat.p99_ms} ms,"
        f" max {lat.max_ms} ms (target p99 < {LATENCY_P99_TARGET_SECONDS * 1000:.0f} ms:"
        f" {mark[report.latency_ok]})",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=10_000, help="backlog size")
    parser.add_argument("--channels", type=int, default=8, help="channels of phase 3")
    parser.add_argument("--raw-seconds", type=float, default=5.0, help="each raw-rate phase")
    parser.add_argument("--open-rate", type=float, default=100.0, help="incidents a second")
    parser.add_argument("--open-seconds", type=float, default=10.0, help="latency phase")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.notices < 1 or args.channels < 1 or args.open_rate <= 0 or args.open_seconds <= 0:
        parser.error("--notices, --channels, --open-rate and --open-seconds must be positive")
    return args


async def bench(args: argparse.Namespace, receiver: ReceiverProcess, command: str) -> Report:
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    log.info("raw aiohttp POST rate, %gs per concurrency ...", args.raw_seconds)
    raws = [
        await raw_rate(receiver, seconds=args.raw_seconds, concurrency=concurrency)
        for concurrency in (1, args.channels, RAW_WIDE)
    ]
    async with aiohttp.ClientSession() as session:
        log.info("backlog of %d on one channel ...", args.notices)
        one = await backlog(receiver, session, notices=args.notices, channels=1)
        log.info("backlog of %d on %d channels ...", args.notices, args.channels)
        many = await backlog(receiver, session, notices=args.notices, channels=args.channels)
        log.info("latency: %g incidents/s for %gs ...", args.open_rate, args.open_seconds)
        lat = await latency(receiver, session, rate=args.open_rate, seconds=args.open_seconds)
    async with open_backend() as backend:
        store = backend.description.split(" ", 1)[0]
    ratio_one = one.rate / raws[0].rate
    ratio_many = many.rate / raws[1].rate
    return Report(
        command=command,
        started=started,
        nproc=len(os.sched_getaffinity(0)),
        store=store,
        raw_one=raws[0],
        raw_channels=raws[1],
        raw_wide=raws[2],
        one_channel=one,
        many_channels=many,
        latency=lat,
        ratio_one=round(ratio_one, 3),
        ratio_many=round(ratio_many, 3),
        ratio_wide=round(many.rate / raws[2].rate, 3),
        ratio_ok=max(ratio_one, ratio_many) >= RATIO_TARGET,
        latency_ok=lat.p99_ms < LATENCY_P99_TARGET_SECONDS * 1000,
    )


def _json_safe(value: Any) -> Any:
    """NaN (an empty sample) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("downtime_operator").setLevel(logging.WARNING)
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):  # ".venv/bin/python" when run from the repository
        python = python.relative_to(Path.cwd())
    command = " ".join(
        [str(python), "-m", "bench.notify", *(sys.argv[1:] if argv is None else argv)]
    )
    receiver = start_receiver()
    try:
        report = asyncio.run(bench(args, receiver, command))
    finally:
        stop_receiver(receiver)
    if args.json:
        print(json.dumps(_json_safe(asdict(report)), indent=2))
    else:
        print(summary(report))


if __name__ == "__main__":
    main()
