"""Captured logs and response bodies encrypted at rest, with key rotation (issue 14).

On both stores (SQLite, PostgreSQL) and both capture storages (the row, a log file): nothing
captured is readable at rest (the SQLite file's bytes, ``pg_dump``, the log files), the admin API
answers as without keys, ciphertext that is tampered, moved or under a missing key is refused
with 503 while everything else is served, a key added back to the Secret is used without a
restart, and ``rotate-keys`` moves everything to the new key, also after a SIGTERM half-way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from tests.conftest import DatabaseFactory
from tests.support.loki_server import LokiServer
from tests.support.monitor_process import MonitorProcess, monitor_env
from tests.support.target import TargetServer
from tests.unit.fakes import FakeClock, FakeLogSource, RecordingResources

from downtime_operator.adapters.clock import SystemClock
from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.log_keys import log_key_ring, reloading_log_keys
from downtime_operator.adapters.metrics import OperatorMetrics
from downtime_operator.adapters.postgres.backend import PostgresBackend
from downtime_operator.adapters.sqlite.backend import SqliteBackend
from downtime_operator.adapters.stores import open_store_backend
from downtime_operator.admin_server import serve_admin_api
from downtime_operator.assembly import resource_pipeline
from downtime_operator.domain.evidence import ServerInfo
from downtime_operator.domain.log_capture import CapturePlan
from downtime_operator.domain.log_entries import LogEntry
from downtime_operator.domain.models import Incident, LogStorage, MonitorRef, Severity
from downtime_operator.domain.window import to_unix_ns
from downtime_operator.services.log_capture import LogCaptureDeps, LogCaptureService
from downtime_operator.services.retention import RetentionService
from downtime_operator.settings import ApiSettings, LogEncryptionSettings, load_settings
from downtime_operator.settings.sources import SettingsError

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RAW_A, RAW_B = bytes(range(32)), bytes(range(100, 132))
KEY_A, KEY_B = base64.b64encode(RAW_A).decode(), base64.b64encode(RAW_B).decode()
SECRET_LINE = "SECRETLINE-4111-1111"
SECRET_BODY = "SECRETBODY alice@example.com"
SECRET_HEADER = "SECRETHEADER-7f3a"
SECRETS = (SECRET_LINE, SECRET_BODY, SECRET_HEADER)
API_KEY = "ops-key-0123456789abcdef"
BATCH_10 = ("--batch-size", "10")
AUTH = {"Authorization": f"Bearer {API_KEY}"}
Backend = PostgresBackend | SqliteBackend


def ring(*key_ids: str) -> LogKeyRing:
    raw = {"A": RAW_A, "B": RAW_B}
    return LogKeyRing({key_id: raw[key_id] for key_id in key_ids})


def entries(count: int) -> list[LogEntry]:
    """Every fourth line an error naming the secret; the rest warnings and info."""
    found = []
    for i in range(count):
        at = to_unix_ns(T0 + timedelta(seconds=i * 0.1))
        if i % 4 == 0:
            message = f"ConnectionError: {SECRET_LINE} refused by db-{i}"
            found.append(LogEntry(timestamp_ns=at, message=message, level="ERROR", logger="app.db"))
        elif i % 4 == 1:
            found.append(
                LogEntry(
                    timestamp_ns=at, message=f"slow request {i}", level="WARNING", logger="app.http"
                )
            )
        else:
            found.append(
                LogEntry(
                    timestamp_ns=at,
                    message=f"served {i} for {SECRET_LINE}",
                    level="INFO",
                    logger="app",
                )
            )
    return found


@dataclass
class Place:
    """Where one store lives: a fresh SQLite file or PostgreSQL database, and its log files."""

    dsn: str | None
    path: Path
    files: Path

    async def open(self, keys: LogKeyRing) -> Backend:
        backend = await open_store_backend(dsn=self.dsn, db_path=self.path, keys=keys)
        await backend.migrate()
        return backend

    def command_env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("LOG_ENCRYPTION", "DATABASE"))
        }
        if self.dsn is not None:
            env["DATABASE_URL"] = self.dsn
        return {**env, "LOG_FILES_DIR": str(self.files), **extra}

    @property
    def db_args(self) -> list[str]:
        return [] if self.dsn is not None else ["--db-path", str(self.path)]


@pytest.fixture
def places(databases: DatabaseFactory | None, tmp_path: Path) -> Any:
    async def make(name: str = "a") -> Place:
        dsn = None if databases is None else await databases()
        return Place(dsn=dsn, path=tmp_path / f"{name}.db", files=tmp_path / f"{name}-logs")

    return make


async def record_outage(
    backend: Backend, files: Path, *, storage: LogStorage, lines: int = 40
) -> Incident:
    """An incident whose failing answer and captured logs carry the secrets."""
    incident = Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace="default", name=f"api-{uuid.uuid4().hex[:6]}"),
        k8s_name="api-20260310-120000",
        health_endpoint="https://api.example/health",
        environment="production",
        started_at=T0 + timedelta(seconds=1),
        detected_at=T0 + timedelta(seconds=2),
        severity=Severity.HIGH,
        error_message="HTTP 503",
        http_status_code=503,
        response_body=SECRET_BODY,
        server_info=ServerInfo(headers={"X-Request-Id": SECRET_HEADER}, http_version="HTTP/1.1"),
    )
    await backend.incidents.create_incident(incident)
    plan = CapturePlan(
        enabled=True, query='{app="api"}', before=timedelta(seconds=60), storage=storage
    )
    await backend.captures.schedule_log_capture(
        incident.incident_id, plan=plan, due_at=incident.detected_at
    )
    events = resource_pipeline(RecordingResources())
    events.start()
    service = LogCaptureService(
        LogCaptureDeps(
            store=backend.captures,
            files=backend.capture_files(files),
            events=events,
            clock=FakeClock(T0 + timedelta(seconds=lines)),
            source=FakeLogSource(entries(lines)),
        )
    )
    assert await service.run_due() == 1
    await events.close(drain_timeout=5)
    return incident


@contextlib.asynccontextmanager
async def api_over(
    backend: Backend, files: Path, *, metrics: OperatorMetrics | None = None
) -> AsyncIterator[str]:
    settings = load_settings(
        ApiSettings, {"ADMIN_API_KEYS": f"ops={API_KEY}", "API_HOST": "127.0.0.1", "API_PORT": "0"}
    )
    async with serve_admin_api(
        settings,
        backend=backend,
        resources=RecordingResources(),
        log_files_dir=files,
        clock=SystemClock(),
        source=None,
        metrics_text=None if metrics is None else metrics.text,
    ) as port:
        yield f"http://127.0.0.1:{port}/admin/downtime"


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    headers = {**AUTH, "Accept": "application/json"}  # the report's JSON form
    async with http.get(url, headers=headers) as response:
        return response.status, await response.json()


async def answers(base: str, incident: Incident) -> dict[str, Any]:
    """What the API says about the incident and its logs, without what differs per row."""
    path = f"{base}/incidents/{incident.incident_id}"
    asked = {
        "logs": f"{path}/logs",
        "errors": f"{path}/logs?level=ERROR&search=refused",
        "logger": f"{path}/logs?logger_name=app.http",
        "analysis": f"{path}/analysis",
        "detail": path,
        "report": f"{path}/report",
    }
    found = {}
    async with aiohttp.ClientSession() as http:
        for name, url in asked.items():
            status, body = await get(http, url)
            assert status == 200, (name, body)
            found[name] = _without_identity(body)
    return found


def _without_identity(value: Any) -> Any:
    if isinstance(value, dict):
        skip = {
            "incident_id",
            "created_at",
            "updated_at",
            "logs_file_path",
            "monitor_name",
            "monitor",
            "generated_at",
        }
        return {k: _without_identity(v) for k, v in value.items() if k not in skip}
    if isinstance(value, list):
        return [_without_identity(v) for v in value]
    return value


def pg_dump(dsn: str) -> bytes:
    """The database as ``pg_dump`` writes it, with the dump tool of the server the tests run."""
    tools = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), key=_version)
    assert tools, "pg_dump not found beside the PostgreSQL server"
    parts = urlsplit(dsn)
    env = {**os.environ, "PGPASSWORD": parts.password or ""}
    result = subprocess.run(
        [
            tools[-1],
            "--host",
            parts.hostname or "127.0.0.1",
            "--port",
            str(parts.port or 5432),
            "--username",
            parts.username or "",
            "--data-only",
            parts.path.lstrip("/"),
        ],
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    )
    return result.stdout


def _version(path: str) -> float:
    return float(Path(path).parent.parent.name)


def sqlite_bytes(path: Path) -> list[bytes]:
    """The SQLite file, and its write-ahead log while the store is open."""
    files = (Path(f"{path}{suffix}") for suffix in ("", "-wal"))
    return [file.read_bytes() for file in files if file.exists()]


def bytes_at_rest(place: Place) -> bytes:
    """Everything the store and its log files hold on disk (or in ``pg_dump``)."""
    found = [p.read_bytes() for p in place.files.glob("*") if p.is_file()]
    if place.dsn is not None:
        found.append(pg_dump(place.dsn))
    else:
        found.extend(sqlite_bytes(place.path))
    return b"\n".join(found)


async def test_nothing_captured_is_readable_at_rest_and_the_api_answers_as_without_keys(
    places: Any,
) -> None:
    """Acceptance 1: both stores (the fixture), both storages (row and file)."""
    said: dict[str, list[dict[str, Any]]] = {}
    for keys in ("sealed", "plain"):
        place = await places(keys)
        backend = await place.open(ring("A") if keys == "sealed" else LogKeyRing())
        try:
            in_row = await record_outage(backend, place.files, storage=LogStorage.DATABASE)
            in_file = await record_outage(backend, place.files, storage=LogStorage.FILE)
            async with api_over(backend, place.files) as base:
                said[keys] = [await answers(base, in_row), await answers(base, in_file)]
            at_rest = await asyncio.to_thread(bytes_at_rest, place)
        finally:
            await backend.close()
        at_rest += await asyncio.to_thread(bytes_at_rest, place)
        assert list(place.files.glob("*.json")), "the file capture wrote no file"
        for secret in SECRETS:
            # Plain, each secret is there: the search below would find a leak.
            assert (secret.encode() in at_rest) is (keys == "plain"), (keys, secret)
        if keys == "sealed":
            assert b"dtenc1:A:" in at_rest
    assert said["sealed"] == said["plain"]
    row_logs, file_logs = said["sealed"][0]["logs"], said["sealed"][1]["logs"]
    assert row_logs["total_logs"] == file_logs["total_logs"] == 40
    assert SECRET_LINE in row_logs["logs"][0]["message"]  # served in clear, to a caller
    assert said["sealed"][0]["detail"]["incident"]["response_body"] == SECRET_BODY


async def _corrupt(place: Place, sql: str, *params: Any) -> None:
    """Run an UPDATE straight on the database, as someone with write access to it could."""
    if place.dsn is not None:
        conn = await asyncpg.connect(place.dsn)
        try:
            await conn.execute(sql.replace("?", "$1", 1).replace("?", "$2", 1), *params)
        finally:
            await conn.close()
        return
    with sqlite3.connect(place.path) as db:
        db.execute(sql, [str(p) if isinstance(p, uuid.UUID) else p for p in params])


def _flip_one_byte(sealed: str) -> str:
    middle = len(sealed) - 20
    flipped = "B" if sealed[middle] != "B" else "C"
    return sealed[:middle] + flipped + sealed[middle + 1 :]


async def _raw(place: Place, column: str, incident: Incident) -> str:
    sql = f"SELECT {column}{'::text' if column == 'logs_captured' and place.dsn else ''}"
    sql += " FROM downtime_incidents WHERE incident_id = "
    if place.dsn is not None:
        conn = await asyncpg.connect(place.dsn)
        try:
            return str(await conn.fetchval(sql + "$1", incident.incident_id))
        finally:
            await conn.close()
    with sqlite3.connect(place.path) as db:
        return str(db.execute(sql + "?", (str(incident.incident_id),)).fetchone()[0])


def _refused(body: Any, key_id: str) -> str:
    assert body["status"] == "error"
    [error] = body["errors"]
    assert error["field"] == "logs"
    assert error["message"].startswith(f"encryption key {key_id} is not available")
    return str(error["message"])


async def test_tampered_or_moved_ciphertext_is_refused_and_everything_else_is_served(
    places: Any,
) -> None:
    """Acceptance 3: one byte flipped, a row's ciphertext copied onto another row, a log file
    of another incident: 503 naming the problem, never the data; the rest answers."""
    place = await places()
    backend = await place.open(ring("A"))
    try:
        flipped, moved_to, moved_from, healthy = [
            await record_outage(backend, place.files, storage=LogStorage.DATABASE) for _ in range(4)
        ]
        file_of, file_to = [
            await record_outage(backend, place.files, storage=LogStorage.FILE) for _ in range(2)
        ]
        sealed = await _raw(place, "logs_captured", flipped)
        assert sealed.strip('"').startswith("dtenc1:A:")
        await _corrupt(
            place,
            f"UPDATE downtime_incidents SET logs_captured = ?{'::text::jsonb' if place.dsn else ''}"
            " WHERE incident_id = ?",
            _flip_one_byte(sealed),
            flipped.incident_id,
        )
        await _corrupt(
            place,
            "UPDATE downtime_incidents SET logs_captured = (SELECT logs_captured FROM"
            " downtime_incidents WHERE incident_id = ?) WHERE incident_id = ?",
            moved_from.incident_id,
            moved_to.incident_id,
        )
        await _corrupt(
            place,
            "UPDATE downtime_incidents SET logs_file_path = (SELECT logs_file_path FROM"
            " downtime_incidents WHERE incident_id = ?) WHERE incident_id = ?",
            file_of.incident_id,
            file_to.incident_id,
        )
        async with api_over(backend, place.files) as base, aiohttp.ClientSession() as http:
            for refused in (flipped, moved_to, file_to):
                status, body = await get(http, f"{base}/incidents/{refused.incident_id}/logs")
                assert status == 503, body
                assert "tampered" in _refused(body, "A")
                assert SECRET_LINE not in json.dumps(body)
            status, body = await get(http, f"{base}/incidents/{flipped.incident_id}")
            assert status == 503 and "tampered" in _refused(body, "A")
            for served in (moved_from, healthy, file_of):
                status, body = await get(http, f"{base}/incidents/{served.incident_id}/logs")
                assert status == 200 and body["total_logs"] == 40
            status, body = await get(http, f"{base}/incidents?limit=50")
            assert status == 200 and len(body["incidents"]) == 6
        # The runners read incidents as before: the damage is in the captured logs only.
        assert (await backend.incidents.get_incident(flipped.incident_id)) is not None
    finally:
        await backend.close()


async def test_a_missing_key_is_named_and_adding_it_back_needs_no_restart(
    places: Any, tmp_path: Path
) -> None:
    """Acceptance 4: data under A, the Secret holds B only; then A is added back."""
    place = await places()
    writer = await place.open(ring("A"))
    try:
        incident = await record_outage(writer, place.files, storage=LogStorage.DATABASE)
        in_file = await record_outage(writer, place.files, storage=LogStorage.FILE)
    finally:
        await writer.close()
    secret = tmp_path / "log-keys"
    secret.mkdir()
    (secret / "B").write_text(KEY_B + "\n")
    settings = load_settings(
        LogEncryptionSettings,
        {"LOG_ENCRYPTION_KEYS_FILE": str(secret), "LOG_ENCRYPTION_KEYS_RELOAD_SECONDS": "0.1"},
    )
    keys = log_key_ring(settings)
    assert keys.ids == ["B"]
    async with reloading_log_keys(keys, settings):
        backend = await place.open(keys)
        try:
            async with api_over(backend, place.files) as base, aiohttp.ClientSession() as http:
                for refused in (incident, in_file):
                    status, body = await get(http, f"{base}/incidents/{refused.incident_id}/logs")
                    assert status == 503
                    assert _refused(body, "A") == "encryption key A is not available"
                status, _ = await get(http, f"{base}/incidents/{incident.incident_id}/analysis")
                assert status == 503
                status, _ = await get(http, f"{base}/incidents?limit=5")
                assert status == 200  # the rest keeps working

                (secret / "A").write_text(KEY_A)  # the Secret gains A: no restart
                deadline = time.monotonic() + 10
                while (await get(http, f"{base}/incidents/{incident.incident_id}/logs"))[0] != 200:
                    assert time.monotonic() < deadline, "the added key was never used"
                    await asyncio.sleep(0.05)
                status, body = await get(http, f"{base}/incidents/{in_file.incident_id}/logs")
                assert status == 200 and body["total_logs"] == 40
            assert keys.active_id == "A"  # a directory's keys in name order: A first now
        finally:
            await backend.close()


async def test_retention_removes_sealed_incidents_and_their_files(places: Any) -> None:
    """Retention reads what it needs in clear (times, status, the file's path) and removes
    sealed rows and files as it removes plain ones."""
    place = await places()
    backend = await place.open(ring("A"))
    try:
        old = [
            await record_outage(backend, place.files, storage=storage)
            for storage in (LogStorage.DATABASE, LogStorage.FILE)
        ]
        for incident in old:
            await backend.incidents.resolve_incident(
                incident.incident_id, ended_at=T0 + timedelta(minutes=10)
            )
        assert len(list(place.files.glob("*.json"))) == 1
        retention = RetentionService(
            store=backend.incidents,
            resources=RecordingResources(),
            log_files=backend.capture_files(place.files),
            clock=FakeClock(T0 + timedelta(days=100)),
        )
        report = await retention.cleanup(days=90, keep_critical=False)
        assert sorted(report.removed) == sorted(i.incident_id for i in old)
        assert report.files_removed == 1 and not list(place.files.glob("*.json"))
        assert await backend.incidents.get_incident(old[0].incident_id) is None
    finally:
        await backend.close()


# -- rotate-keys ---------------------------------------------------------------------------------


def rotate_keys(place: Place, *args: str, keys: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "downtime_operator", "rotate-keys", *place.db_args, *args],
        env=place.command_env(LOG_ENCRYPTION_KEYS=keys),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def per_key(output: str) -> dict[str, int]:
    found = {}
    for line in output.splitlines():
        key_id, colon, rest = line.partition(": ")
        if colon and rest.endswith(" rows"):
            found[key_id] = int(rest.removesuffix(" rows"))
    return found


async def fill(place: Place, *, sealed: int, files_every: int, plain: int) -> list[Incident]:
    """``sealed`` incidents under A (every ``files_every``-th captured into a file), then
    ``plain`` written before there were keys."""
    made = []
    backend = await place.open(LogKeyRing())
    try:
        for _ in range(plain):
            made.append(await record_outage(backend, place.files, storage=LogStorage.DATABASE))
    finally:
        await backend.close()
    backend = await place.open(ring("A"))
    try:
        for i in range(sealed):
            storage = LogStorage.FILE if i % files_every == 0 else LogStorage.DATABASE
            made.append(await record_outage(backend, place.files, storage=storage))
    finally:
        await backend.close()
    return made


async def assert_all_readable(place: Place, keys: LogKeyRing, made: list[Incident]) -> None:
    backend = await place.open(keys)
    try:
        service = LogCaptureService(
            LogCaptureDeps(
                store=backend.captures,
                files=backend.capture_files(place.files),
                events=resource_pipeline(RecordingResources()),
                clock=FakeClock(T0),
            )
        )
        expected = [e.to_record() for e in entries(40)]
        for incident in made:
            assert await service.get_filtered_logs(incident.incident_id) == expected
            found = await backend.incidents.get_incident(incident.incident_id)
            assert found is not None and found.response_body == SECRET_BODY
            assert found.server_info is not None
            assert found.server_info.headers == {"X-Request-Id": SECRET_HEADER}
    finally:
        await backend.close()


async def test_rotation_moves_everything_to_the_new_key(places: Any) -> None:
    """Acceptance 2: A, then the ring B,A and rotate-keys, then B alone."""
    place = await places()
    made = await fill(place, sealed=12, files_every=4, plain=3)
    both = f"B={KEY_B},A={KEY_A}"
    before = rotate_keys(place, "--dry-run", keys=both)
    assert before.returncode == 0, before.stderr
    assert per_key(before.stdout) == {"A": 12, "plain": 3}
    assert "active key B" in before.stdout

    rotated = rotate_keys(place, "--batch-size", "5", keys=both)
    assert rotated.returncode == 0, rotated.stderr
    assert "15 re-sealed under B (3 log files)" in rotated.stdout
    assert "15/15 incidents" in rotated.stderr  # the bar's last line

    after = rotate_keys(place, "--dry-run", keys=f"B={KEY_B}")
    assert per_key(after.stdout) == {"B": 15}
    again = rotate_keys(place, keys=f"B={KEY_B}")
    assert again.returncode == 0 and "0 re-sealed" in again.stdout  # nothing left to do
    assert len(list(place.files.glob("*.json"))) == 3  # the old files are gone
    await assert_all_readable(place, ring("B"), made)
    assert SECRET_LINE.encode() not in await asyncio.to_thread(bytes_at_rest, place)


async def test_rotation_interrupted_by_sigterm_finishes_when_run_again(places: Any) -> None:
    """Acceptance 2: SIGTERM half-way stops between rows; the next run completes the rest,
    nothing lost, nothing sealed twice."""
    place = await places()
    made = await fill(place, sealed=150, files_every=2, plain=0)
    both = f"B={KEY_B},A={KEY_A}"
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "downtime_operator", "rotate-keys", *place.db_args, *BATCH_10],
        env=place.command_env(LOG_ENCRYPTION_KEYS=both),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    first = await asyncio.to_thread(process.stderr.readline)  # the bar after 50 rows
    assert "50/150 incidents" in first, first
    process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 1, stderr
    assert "interrupted: run again to finish" in stdout
    counted = per_key(rotate_keys(place, "--dry-run", keys=both).stdout)
    assert counted["B"] >= 50 and counted.get("A", 0) > 0, counted  # half-way
    assert counted["B"] + counted["A"] == 150

    finished = rotate_keys(place, keys=both)
    assert finished.returncode == 0, finished.stderr
    assert per_key(rotate_keys(place, "--dry-run", keys=f"B={KEY_B}").stdout) == {"B": 150}
    assert len(list(place.files.glob("*.json"))) == 75
    await assert_all_readable(place, ring("B"), made)


# -- keys never show -----------------------------------------------------------------------------


def key_forms() -> Iterator[str]:
    """Each key as configured (base64) and as bytes might be printed."""
    for key, raw in ((KEY_A, RAW_A), (KEY_B, RAW_B)):
        yield key
        yield key[:16]
        yield raw.hex()
        yield repr(raw)[2:20]


async def test_keys_never_appear_in_logs_metrics_status_audit_or_errors(
    places: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Acceptance 5: a run with keys, reloads, refusals and a rotation; then grep it all."""
    caplog.set_level(logging.DEBUG)
    place = await places()
    secret = tmp_path / "log-keys"
    secret.mkdir()
    (secret / "A").write_text(KEY_A)
    settings = load_settings(
        LogEncryptionSettings,
        {"LOG_ENCRYPTION_KEYS_FILE": str(secret), "LOG_ENCRYPTION_KEYS_RELOAD_SECONDS": "0.05"},
    )
    seen: list[str] = [repr(settings), str(settings), repr(log_key_ring(settings))]
    metrics = OperatorMetrics()
    keys = log_key_ring(settings)
    async with reloading_log_keys(keys, settings):
        backend = await place.open(keys)
        try:
            incident = await record_outage(backend, place.files, storage=LogStorage.FILE)
            async with (
                api_over(backend, place.files, metrics=metrics) as base,
                aiohttp.ClientSession() as http,
            ):
                (secret / "A").unlink()
                (secret / "B").write_text(KEY_B)
                await asyncio.sleep(0.3)  # reloaded: A is gone
                for path in ("logs", "analysis", "report", ""):
                    url = f"{base}/incidents/{incident.incident_id}/{path}".rstrip("/")
                    async with http.get(url, headers=AUTH) as response:
                        seen.append(await response.text())
                async with http.post(
                    f"{base}/incidents/{incident.incident_id}/resolve", headers=AUTH
                ) as response:
                    seen.append(await response.text())
                (secret / "broken").write_text(KEY_A[:-4])  # invalid: reported, not shown
                await asyncio.sleep(0.3)
                async with http.get(
                    f"{base.removesuffix('/admin/downtime')}/metrics", headers=AUTH
                ) as response:
                    seen.append(await response.text())
            seen.append(metrics.text().decode())
            audit = await backend.audit.for_incident(incident.incident_id)
            seen.append(repr(audit))
        finally:
            await backend.close()
    for variable, value in (
        ("LOG_ENCRYPTION_KEYS", f"A={KEY_A[:-4]}"),
        ("LOG_ENCRYPTION_KEYS", f"A={KEY_A},A={KEY_B}"),
        ("LOG_ENCRYPTION_ACTIVE_KEY", "C"),
    ):
        with pytest.raises(SettingsError) as refused:
            load_settings(
                LogEncryptionSettings, {"LOG_ENCRYPTION_KEYS": f"A={KEY_A}", variable: value}
            )
        seen.append(str(refused.value))
    rotation = rotate_keys(place, keys=f"B={KEY_B},A={KEY_A}")
    seen += [rotation.stdout, rotation.stderr]
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "encryption key A is not available" in everything  # the refusals are in there
    assert "log encryption keys not reloaded" in everything
    for form in key_forms():
        assert form not in everything, f"a key ({form[:4]}...) was shown"


# -- standalone mode -----------------------------------------------------------------------------


async def test_the_standalone_monitor_seals_its_captures_in_the_sqlite_file(
    target: TargetServer, start_monitor: Callable[..., MonitorProcess]
) -> None:
    """``monitor`` with LOG_ENCRYPTION_KEYS: the capture in its SQLite file is ciphertext, its
    admin API serves it in clear, and the key is in none of its output."""
    with LokiServer() as loki:
        now_ns = time.time_ns()
        lines = [f'level=error msg="ConnectionError: {SECRET_LINE} {i}"' for i in range(300)]
        loki.push({"app": "api"}, [(now_ns + i * 10**8, text) for i, text in enumerate(lines)])
        monitor = start_monitor(
            *("--url", target.base_url, "--interval", "1", "--timeout", "0.5"),
            *("--loki-query", '{app="api"}', "--capture-before", "10", "--api-port", "0"),
            env=monitor_env(
                LOKI_ENABLED="true",
                LOKI_QUERY_URL=loki.url,
                LOG_ENCRYPTION_KEYS=f"A={KEY_A}",
                ADMIN_API_KEYS=f"ops={API_KEY}",
            ),
        )
        path = monitor.cwd / "downtime.db"
        deadline = time.monotonic() + 30
        while target.requests < 2:
            assert time.monotonic() < deadline, monitor.log
            await asyncio.sleep(0.1)
        target.set_mode("failing")

        def captured() -> str | None:
            if not path.exists():
                return None
            with sqlite3.connect(path) as db:
                found = db.execute(
                    "SELECT incident_id FROM downtime_incidents"
                    " WHERE logs_capture_status = 'captured'"
                ).fetchone()
            return None if found is None else str(found[0])

        while (incident_id := captured()) is None:
            assert time.monotonic() < deadline + 30, monitor.log
            await asyncio.sleep(0.2)
        port = int(re.findall(r"admin API listening on 127\.0\.0\.1:(\d+)", monitor.log)[0])
        async with aiohttp.ClientSession() as http:
            status, body = await get(
                http, f"http://127.0.0.1:{port}/admin/downtime/incidents/{incident_id}/logs"
            )
        at_rest = b"".join(await asyncio.to_thread(sqlite_bytes, path))
        assert await monitor.terminate() == 0
    assert status == 200 and SECRET_LINE in body["logs"][0]["message"]
    assert SECRET_LINE.encode() not in at_rest and b"dtenc1:A:" in at_rest
    assert "log encryption: captured data sealed with key A" in monitor.log
    assert KEY_A not in monitor.log and KEY_A[:16] not in monitor.log


async def test_a_row_written_while_rotating_is_not_overwritten_and_left_for_the_next_run(
    places: Any,
) -> None:
    """Safe beside a running operator: a row changed between rotate-keys reading and writing
    it keeps the change (the compare-and-set refuses), and the next run re-seals it."""
    place = await places()
    made = await fill(place, sealed=4, files_every=2, plain=0)
    operator = await place.open(ring("A"))  # an operator still sealing with A
    rotating = await place.open(ring("B", "A"))
    try:
        rotation = rotating.key_rotation(place.files)
        rows = rotation._rows  # the store's, read with a write slipped in after the read
        read_page = rows.page

        async def page_then_a_write(*, after: uuid.UUID | None, limit: int) -> list[Any]:
            found = await read_page(after=after, limit=limit)
            if after is None:
                await operator.incidents.update_incident(
                    made[0].incident_id, {"response_body": "written meanwhile"}
                )
            return found

        rows.page = page_then_a_write  # type: ignore[method-assign]
        report = await rotation.rotate(batch=10)
        assert (report.rows, report.resealed, report.changed) == (4, 3, 1)
        found = await rotating.incidents.get_incident(made[0].incident_id)
        assert found is not None and found.response_body == "written meanwhile"
        counted = per_key(rotate_keys(place, "--dry-run", keys=f"B={KEY_B},A={KEY_A}").stdout)
        assert counted == {"A": 1, "B": 3}

        again = await rotating.key_rotation(place.files).rotate(batch=10)
        assert (again.resealed, again.changed) == (1, 0)
        assert per_key(rotate_keys(place, "--dry-run", keys=f"B={KEY_B}").stdout) == {"B": 4}
        assert len(list(place.files.glob("*.json"))) == 2  # no file left behind
    finally:
        await rotating.close()
        await operator.close()


async def test_rotation_leaves_what_it_cannot_open_and_says_so(places: Any) -> None:
    """A row whose value fails authentication is listed and left as it is; the rest rotates."""
    place = await places()
    made = await fill(place, sealed=3, files_every=9, plain=0)
    sealed = await _raw(place, "response_body", made[1])
    await _corrupt(
        place,
        "UPDATE downtime_incidents SET response_body = ? WHERE incident_id = ?",
        _flip_one_byte(sealed),
        made[1].incident_id,
    )
    both = f"B={KEY_B},A={KEY_A}"
    rotated = rotate_keys(place, keys=both)
    assert rotated.returncode == 1
    assert "2 re-sealed under B" in rotated.stdout and "1 unreadable" in rotated.stdout
    assert f"not re-sealed, {made[1].incident_id}: encryption key A" in rotated.stderr
    assert "tampered" in rotated.stderr
    assert per_key(rotate_keys(place, "--dry-run", keys=both).stdout) == {"A": 1, "B": 2}
