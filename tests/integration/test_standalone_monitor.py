"""``downtime-operator monitor`` as a real process against a real target on 127.0.0.1.

The target (``tests/support/target.py``) goes down and comes back; the monitor checks it every
second and records the outage in the embedded SQLite file or, with DATABASE_URL, in PostgreSQL.
Times are taken from the target's own request log, so the expected duration is exact, not a
guess from sleeps.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from tests.conftest import DatabaseFactory
from tests.support.loki_server import LokiServer
from tests.support.monitor_process import MonitorProcess, monitor_env
from tests.support.target import TargetServer

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.domain.evidence import SnapshotStage
from downtime_operator.domain.models import Incident, IncidentStatus

T = TypeVar("T")
FAST = ["--interval", "1", "--timeout", "0.5"]
"""Three failed checks (the default threshold) open an incident about 2 s into an outage."""


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, what: str, monitor: MonitorProcess
) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await probe()
        if value is not None:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within}s waiting for {what}; log:\n{monitor.log}")


async def wait_for_checks(target: TargetServer, count: int, monitor: MonitorProcess) -> None:
    async def checked() -> bool | None:
        return True if target.requests >= count else None

    await eventually(checked, within=20, what=f"{count} checks", monitor=monitor)


async def outage(target: TargetServer, *, seconds: float) -> tuple[float, float]:
    """Fail for ``seconds``; return when the first failing and first healthy check arrived."""
    went_down = time.time()
    target.set_mode("failing")
    await asyncio.sleep(seconds)
    came_back = time.time()
    target.set_mode("healthy")
    await asyncio.sleep(1.5)  # at least one check after the recovery
    times = target.request_times
    first_failure = min(t for t in times if went_down <= t < came_back)
    first_success = min(t for t in times if t >= came_back)
    return first_failure, first_success


@pytest.fixture
async def sqlite_reader(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[list[Incident]]]]:
    """Reads the monitor's ``./downtime.db`` (opened once the monitor has created it)."""
    path = tmp_path / "downtime.db"
    opened: list[SqliteIncidentStore] = []

    async def incidents() -> list[Incident]:
        if not opened:
            if not path.exists():
                return []
            opened.append(await SqliteIncidentStore.open(path))
        return await opened[0].get_recent_incidents()

    yield incidents
    for store in opened:
        await store.close()


def resolved_one(incidents: list[Incident]) -> Incident | None:
    return incidents[0] if incidents and incidents[0].status is IncidentStatus.RESOLVED else None


def assert_duration(incident: Incident, *, first_failure: float, first_success: float) -> None:
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.started_at.timestamp() == pytest.approx(first_failure, abs=0.25)
    assert incident.ended_at is not None
    assert incident.ended_at.timestamp() == pytest.approx(first_success, abs=0.25)
    assert incident.duration_seconds == pytest.approx(first_success - first_failure, abs=0.25)


async def test_an_outage_is_one_resolved_incident_in_the_sqlite_file(
    target: TargetServer,
    start_monitor: Callable[..., MonitorProcess],
    sqlite_reader: Callable[[], Awaitable[list[Incident]]],
    tmp_path: Path,
) -> None:
    env = monitor_env()
    assert not {"DATABASE_URL", "SUPABASE_DB_URL"} & set(env)  # no database server to use
    monitor = start_monitor("--url", target.base_url, *FAST, env=env)
    await wait_for_checks(target, 2, monitor)

    first_failure, first_success = await outage(target, seconds=5)

    async def resolved() -> Incident | None:
        return resolved_one(await sqlite_reader())

    incident = await eventually(resolved, within=10, what="a resolved incident", monitor=monitor)
    assert await monitor.terminate() == 0
    assert len(await sqlite_reader()) == 1
    assert_duration(incident, first_failure=first_failure, first_success=first_success)
    assert 4.0 <= (incident.duration_seconds or 0) <= 6.0
    assert incident.health_endpoint == f"{target.base_url}/health"  # /health appended
    assert (incident.monitor.namespace, incident.error_message) == (
        "standalone",
        "HTTP 503 Service Unavailable",
    )
    assert f"incidents in SQLite {tmp_path / 'downtime.db'}" in monitor.log
    # The evidence is filled as by the operator: the server, and the checks around the outage.
    assert incident.server_info is not None
    assert incident.server_info.addresses == ("127.0.0.1",)
    assert incident.server_info.http_version == "HTTP/1.1"
    snapshot = incident.metrics_snapshot
    assert snapshot is not None and snapshot.stage is SnapshotStage.RESOLUTION
    assert snapshot.checks_before and all(c.ok for c in snapshot.checks_before)
    assert snapshot.during.failures == incident.failed_checks
    assert snapshot.during.checks == snapshot.during.failures + 1


async def test_with_database_url_the_incident_goes_to_postgres(
    target: TargetServer,
    start_monitor: Callable[..., MonitorProcess],
    make_database: DatabaseFactory,
    tmp_path: Path,
) -> None:
    dsn = await make_database()  # empty: the monitor applies the migrations itself
    monitor = start_monitor("--url", target.base_url, *FAST, env=monitor_env(DATABASE_URL=dsn))
    await wait_for_checks(target, 2, monitor)

    first_failure, first_success = await outage(target, seconds=3)

    store = await PostgresIncidentStore.connect(dsn, min_size=1, max_size=1)
    try:

        async def resolved() -> Incident | None:
            return resolved_one(await store.get_recent_incidents())

        incident = await eventually(
            resolved, within=10, what="a resolved incident in PostgreSQL", monitor=monitor
        )
        assert await monitor.terminate() == 0
        assert len(await store.get_recent_incidents()) == 1
    finally:
        await store.close()
    assert_duration(incident, first_failure=first_failure, first_success=first_success)
    assert not (tmp_path / "downtime.db").exists()
    assert "password" not in monitor.log.lower()


async def test_sigterm_during_an_outage_and_a_restart_keep_one_incident(
    target: TargetServer,
    start_monitor: Callable[..., MonitorProcess],
    sqlite_reader: Callable[[], Awaitable[list[Incident]]],
) -> None:
    args = ("--url", target.base_url, *FAST)
    first = start_monitor(*args)
    await wait_for_checks(target, 2, first)
    went_down = time.time()
    target.set_mode("failing")

    async def opened() -> Incident | None:
        found = await sqlite_reader()
        return found[0] if found else None

    incident = await eventually(opened, within=10, what="an open incident", monitor=first)
    assert await first.terminate() == 0
    [still_open] = await sqlite_reader()
    assert still_open.status is IncidentStatus.ONGOING  # shutdown does not resolve it
    assert still_open.ended_at is None

    second = start_monitor(*args)
    during = target.requests
    await wait_for_checks(target, during + 2, second)  # checked, still failing, after the restart
    came_back = time.time()
    target.set_mode("healthy")

    async def resolved() -> Incident | None:
        return resolved_one(await sqlite_reader())

    final = await eventually(resolved, within=10, what="the incident resolved", monitor=second)
    assert await second.terminate() == 0
    assert len(await sqlite_reader()) == 1
    assert final.incident_id == incident.incident_id
    times = target.request_times
    assert_duration(
        final,
        first_failure=min(t for t in times if went_down <= t < came_back),
        first_success=min(t for t in times if t >= came_back),
    )
    assert f"continuing open incident {incident.incident_id}" in second.log


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--interval", "0"], {}, "--interval"),
        (["--timeout", "abc"], {}, "--timeout"),
        ([], {"HEALTH_CHECK_INTERVAL": "-1"}, "HEALTH_CHECK_INTERVAL"),
        (["--url", "ftp://x"], {}, "--url"),
    ],
)
def test_bad_flags_and_variables_exit_2_naming_them(
    argv: list[str], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "downtime_operator", "monitor", *argv],
        cwd=tmp_path,
        env=monitor_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"downtime-operator monitor: {named}:" in result.stderr
    assert not (tmp_path / "downtime.db").exists()  # nothing started


# -- The admin API and log capture of the standalone monitor, over its SQLite file -------------

KEY = "ops-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def api_port(monitor: MonitorProcess) -> int:
    async def listening() -> int | None:
        found = re.search(r"admin API listening on 127\.0\.0\.1:(\d+)", monitor.log)
        return int(found.group(1)) if found else None

    return await eventually(listening, within=20, what="the admin API", monitor=monitor)


async def test_the_admin_api_serves_the_sqlite_file_and_the_monitor_follows_a_resolve(
    target: TargetServer,
    start_monitor: Callable[..., MonitorProcess],
    sqlite_reader: Callable[[], Awaitable[list[Incident]]],
) -> None:
    monitor = start_monitor(
        "--url",
        target.base_url,
        *FAST,
        "--api-port",
        "0",
        env=monitor_env(ADMIN_API_KEYS=f"ops={KEY}"),
    )
    base = f"http://127.0.0.1:{await api_port(monitor)}/admin/downtime"
    target.set_mode("failing")

    async def opened() -> Incident | None:
        found = await sqlite_reader()
        return found[0] if found else None

    first = await eventually(opened, within=10, what="an open incident", monitor=monitor)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/incidents/ongoing") as response:
            assert response.status == 401  # no key
        async with http.get(f"{base}/incidents/ongoing", headers=AUTH) as response:
            assert response.status == 200
            body = await response.json()
        assert [i["incident_id"] for i in body["incidents"]] == [str(first.incident_id)]
        async with http.post(
            f"{base}/incidents/{first.incident_id}/resolve",
            params={"notes": "fixed by hand"},
            headers=AUTH,
        ) as response:
            assert response.status == 200, await response.text()

        # Still failing: the monitor saw the resolve and opens a new incident, not the old one.
        async def second_opened() -> Incident | None:
            found = await sqlite_reader()
            return found[0] if len(found) == 2 and found[0].ended_at is None else None

        second = await eventually(
            second_opened, within=10, what="a new incident after the resolve", monitor=monitor
        )
        async with http.get(f"{base}/statistics", params={"days": 1}, headers=AUTH) as response:
            assert response.status == 200
            stats = (await response.json())["statistics"]
    assert await monitor.terminate() == 0
    resolved = next(i for i in await sqlite_reader() if i.incident_id == first.incident_id)
    assert resolved.status is IncidentStatus.RESOLVED and resolved.notes == "fixed by hand"
    assert second.incident_id != first.incident_id
    assert stats["total_incidents"] == 2 and stats["by_status"]["resolved"] == 1
    with sqlite3.connect(monitor.cwd / "downtime.db") as db:
        audited = db.execute("SELECT key_name, action, outcome FROM downtime_audit_log").fetchall()
    assert audited == [("ops", "resolveIncident", "success")]


async def test_logs_are_captured_into_the_sqlite_file_and_the_final_capture_survives_sigterm(
    target: TargetServer, start_monitor: Callable[..., MonitorProcess]
) -> None:
    with LokiServer() as loki:
        now_ns = time.time_ns()
        lines = [f'level=error msg="ConnectionError: db {i}"' for i in range(300)]
        loki.push({"app": "api"}, [(now_ns + i * 10**8, text) for i, text in enumerate(lines)])
        args = ("--url", target.base_url, *FAST, "--loki-query", '{app="api"}')
        args += ("--capture-before", "10", "--capture-after", "4")
        env = monitor_env(LOKI_ENABLED="true", LOKI_QUERY_URL=loki.url)
        first = start_monitor(*args, env=env)
        await wait_for_checks(target, 2, first)
        target.set_mode("failing")
        path = first.cwd / "downtime.db"

        def row() -> dict[str, object] | None:
            if not path.exists():
                return None
            with sqlite3.connect(path) as db:
                db.row_factory = sqlite3.Row
                found = db.execute(
                    "SELECT status, logs_capture_status, logs_capture_runs, logs_count,"
                    " log_analysis FROM downtime_incidents"
                ).fetchone()
            return None if found is None else dict(found)

        async def first_capture() -> dict[str, object] | None:
            found = row()
            return found if found and found["logs_capture_runs"] == 1 else None

        captured = await eventually(
            first_capture, within=20, what="the first capture", monitor=first
        )
        assert captured["logs_capture_status"] == "captured"
        target.set_mode("healthy")

        async def final_pending() -> dict[str, object] | None:
            found = row()
            return found if found and found["status"] == "resolved" else None

        resolved = await eventually(final_pending, within=10, what="the resolve", monitor=first)
        assert resolved["logs_capture_status"] == "pending"  # due 4 s after the end
        assert await first.terminate() == 0
        assert row() == resolved  # nothing ran meanwhile: the capture waits in the file

        second = start_monitor(*args, env=env)

        async def final_capture() -> dict[str, object] | None:
            found = row()
            return found if found and found["logs_capture_runs"] == 2 else None

        done = await eventually(final_capture, within=30, what="the final capture", monitor=second)
        assert await second.terminate() == 0
    assert done["logs_capture_status"] == "captured" and done["logs_count"]
    analysis = json.loads(str(done["log_analysis"]))
    assert analysis["error_types"] == {"ConnectionError": done["logs_count"]}
    assert "logs of incident" in second.log


async def test_the_admin_api_serves_postgres_too(
    target: TargetServer,
    start_monitor: Callable[..., MonitorProcess],
    make_database: DatabaseFactory,
) -> None:
    dsn = await make_database()
    monitor = start_monitor(
        "--url",
        target.base_url,
        *FAST,
        "--api-port",
        "0",
        env=monitor_env(DATABASE_URL=dsn, ADMIN_API_KEYS=f"ops={KEY}"),
    )
    base = f"http://127.0.0.1:{await api_port(monitor)}/admin/downtime"
    target.set_mode("failing")
    async with aiohttp.ClientSession(headers=AUTH) as http:

        async def listed() -> list[dict[str, object]] | None:
            async with http.get(f"{base}/incidents/ongoing") as response:
                if response.status == 503:  # the monitor is still applying the migrations
                    return None
                assert response.status == 200, await response.text()
                found: list[dict[str, object]] = (await response.json())["incidents"]
            return found or None

        [ongoing] = await eventually(listed, within=15, what="an ongoing incident", monitor=monitor)
        async with http.post(f"{base}/incidents/{ongoing['incident_id']}/acknowledge") as response:
            assert response.status == 200, await response.text()
    assert await monitor.terminate() == 0
    store = await PostgresIncidentStore.connect(dsn, min_size=1, max_size=1)
    try:
        [incident] = await store.get_recent_incidents()
        audited = await store.pool.fetchval("SELECT count(*) FROM downtime_audit_log")
    finally:
        await store.close()
    assert str(incident.incident_id) == ongoing["incident_id"]
    assert incident.status is IncidentStatus.INVESTIGATING and audited == 1


def test_an_api_port_in_use_ends_with_one_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "downtime_operator",
                "monitor",
                "--url",
                "http://127.0.0.1:9",
                *FAST,
                "--api-port",
                str(port),
            ],
            cwd=tmp_path,
            env=monitor_env(ADMIN_API_KEYS=f"ops={KEY}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1  # not 2: systemd may retry, the port can be free then
    assert (
        f"downtime-operator monitor: admin API: cannot listen on 127.0.0.1:{port}:" in result.stderr
    )
    assert "Traceback" not in result.stderr
