"""Log capture end to end: operator process + real control plane + Postgres + test Loki.

The application's logs are written to the test Loki (its own thread) while the test runs: error
lines while the target fails, info lines otherwise, each stamped with the time it is written,
as a real application shipping its logs would. Windows are short (before 5s, after 3s or 8s) so
the tests stay quick; the capture loop polls every 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane, free_port
from tests.e2e.harness import Env, eventually, monitor, parse_time, running_operator
from tests.support.api import KEYS
from tests.support.loki_server import LokiServer
from tests.support.target import TargetServer

APP = {"app": "e2e-api"}
QUERY = '{app="e2e-api"}'
ERROR_MESSAGE = "ConnectionError: upstream db-{n} refused"


@pytest.fixture
def loki() -> Iterator[LokiServer]:
    with LokiServer() as server:
        yield server


@pytest.fixture
async def loki_env(
    control_plane: ControlPlane,
    namespace: str,
    make_database: DatabaseFactory,
    tmp_path: Path,
    loki: LokiServer,
) -> AsyncIterator[Env]:
    """Like ``env``, with the operator configured for the test Loki, and its admin API."""
    dsn = await make_database()
    with running_operator(
        control_plane,
        namespace,
        dsn=dsn,
        log_path=tmp_path / "operator.log",
        api_port=free_port(),
        LOKI_ENABLED="true",
        LOKI_QUERY_URL=loki.url,
        LOG_FILES_DIR=str(tmp_path / "captured"),
    ) as env:
        yield env


@contextlib.asynccontextmanager
async def application_logs(loki: LokiServer, target: TargetServer) -> AsyncIterator[None]:
    """Write the application's log lines, five a second, while the block runs."""

    async def write() -> None:
        n = 0
        while True:
            n += 1
            if target.mode == "healthy":
                line = {"level": "info", "logger": "app.http", "message": f"GET /items {n} 200"}
            else:
                line = {"level": "error", "logger": "app.db", "message": ERROR_MESSAGE.format(n=n)}
            loki.push(APP, [(time.time_ns(), json.dumps(line))])
            await asyncio.sleep(0.2)

    task = asyncio.create_task(write())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def capture_spec(after: str) -> dict[str, Any]:
    return {"logCapture": {"query": QUERY, "before": "5s", "after": after}}


async def only_row(env: Env) -> asyncpg.Record | None:
    rows = await env.rows()
    return rows[0] if len(rows) == 1 else None


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


async def test_an_outage_ends_with_its_logs_and_analysis_attached(
    loki_env: Env, loki: LokiServer, target: TargetServer
) -> None:
    """Acceptance 4."""
    env = loki_env
    async with application_logs(loki, target):
        env.apply(monitor("api", target.url, **capture_spec("3s")))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up"
        )
        target.set_mode("failing")
        [incident] = await eventually(env.opened_incidents, within=20, what="an incident")
        await eventually(
            lambda: _logs(env).get("state") == "captured", within=30, what="the first capture"
        )
        target.set_mode("healthy")

        def final() -> dict[str, Any] | None:
            [item] = env.incidents()
            status = item["status"]
            if (
                status.get("status") != "resolved"
                or status.get("logs", {}).get("state") != "captured"
            ):
                return None
            window_end = parse_time(status["logs"]["window"]["end"])
            ended = parse_time(status["endedAt"])
            return status if abs((window_end - ended).total_seconds() - 3) < 0.01 else None

        status = await eventually(final, within=40, what="the final capture on the CR")

    logs, analysis = status["logs"], status["analysis"]
    assert logs["lines"] > 0 and logs["truncated"] is False and logs["storage"] == "database"
    started = parse_time(incident["spec"]["startedAt"])
    assert parse_time(logs["window"]["start"]) == started - timedelta(seconds=5)
    assert analysis["errorCount"] > 0
    assert analysis["topErrors"][0] == {
        "message": "ConnectionError: upstream db-<n> refused",
        "count": analysis["errorCount"],
    }
    assert "captured" in env.cp.kubectl("get", "dti", "-n", env.namespace).stdout  # LOGS column

    row = await only_row(env)
    assert row is not None
    assert row["logs_capture_status"] == "captured" and row["logs_capture_runs"] == 2
    assert row["logs_count"] == logs["lines"] == row["logs_available"]
    stored = json.loads(row["logs_captured"])
    start_ns, end_ns = ns(row["logs_window_start"]), ns(row["logs_window_end"])
    stamps = [_stamp_ns(e["timestamp"]) for e in stored]
    assert stamps == sorted(stamps) and all(start_ns <= s < end_ns for s in stamps)
    analysis_row = json.loads(row["log_analysis"])
    assert analysis_row["error_count"] == analysis["errorCount"]
    assert analysis_row["error_types"] == {"ConnectionError": analysis["errorCount"]}
    assert analysis_row["top_errors"][0] == [
        "ConnectionError: upstream db-<n> refused",
        analysis["errorCount"],
    ]
    assert analysis_row["total_logs"] == logs["lines"]

    # The same capture through the admin API served by this operator process.
    base = f"{env.api_url}/admin/downtime/incidents/{incident['spec']['incidentId']}"
    auth = {"Authorization": f"Bearer {KEYS['ops']}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(f"{base}/analysis") as response:
            assert response.status == 200
            body = await response.json()
        assert body["analysis"] == analysis_row
        async with http.get(f"{base}/logs", params={"level": "ERROR"}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["status"] == "success"
        assert len(body["logs"]) == analysis["errorCount"]


async def test_the_final_capture_happens_once_across_a_restart(
    loki_env: Env, loki: LokiServer, target: TargetServer
) -> None:
    """Acceptance 5: stopped before ended_at + after, started after it."""
    env = loki_env
    async with application_logs(loki, target):
        env.apply(monitor("api", target.url, **capture_spec("8s")))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up"
        )
        target.set_mode("failing")
        await eventually(env.opened_incidents, within=20, what="an incident")
        await eventually(
            lambda: _logs(env).get("state") == "captured", within=30, what="the first capture"
        )
        target.set_mode("healthy")

        async def final_due() -> asyncpg.Record | None:
            row = await only_row(env)
            pending = row is not None and row["status"] == "resolved"
            return row if pending and row["logs_capture_status"] == "pending" else None

        row = await eventually(final_due, within=20, what="the final capture scheduled")
        env.op.stop()
        due = row["logs_capture_due_at"]
        assert datetime.now(UTC) < due, "stopped too late for this test to mean anything"
        assert row["logs_capture_runs"] == 1
        assert due == row["ended_at"] + timedelta(seconds=8)

        await asyncio.sleep((due + timedelta(seconds=2) - datetime.now(UTC)).total_seconds())
        stopped = await only_row(env)
        assert stopped is not None and stopped["logs_capture_status"] == "pending"
        env.op.start()

        async def captured() -> asyncpg.Record | None:
            row = await only_row(env)
            return row if row is not None and row["logs_capture_status"] == "captured" else None

        done = await eventually(captured, within=40, what="the final capture after the restart")
        await asyncio.sleep(6)  # more than a poll period: nothing runs it again

    final_end = str(ns(due))
    finals = [r for r in loki.requests if r.params.get("end") == final_end]
    assert len(finals) == 1
    assert (await only_row(env))["logs_capture_runs"] == 2  # type: ignore[index]
    assert done["logs_window_end"] == due
    assert await eventually(
        lambda: _logs(env).get("state") == "captured" and _logs(env), within=20, what="CR"
    )


def _logs(env: Env) -> dict[str, Any]:
    items = env.incidents()
    logs: dict[str, Any] = items[0].get("status", {}).get("logs", {}) if items else {}
    return logs


def _stamp_ns(text: str) -> int:
    whole, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    return ns(moment) + int(fraction.ljust(9, "0"))
