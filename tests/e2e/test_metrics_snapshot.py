"""Prometheus series in the incident's metrics snapshot, end to end: the operator process on the
real control plane and PostgreSQL, the real Prometheus (built from Go modules) scraping a test
exporter every second, whose gauge the test raises while the target fails.

The capture window is the log capture's (before 5s, after 8s here); the metrics capture polls
every 5 s like the log capture.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import Env, eventually, monitor, running_operator
from tests.support.prometheus_server import GaugeExporter, PrometheusServer, prometheus_binary
from tests.support.target import TargetServer

GAUGE = "app_queue_depth"
QUERY = f'{GAUGE}{{series="main"}}'
CALM, BUSY = 1.0, 9.0


@pytest.fixture
def exporter() -> Iterator[GaugeExporter]:
    with GaugeExporter(GAUGE) as found:
        found.set(CALM)
        yield found


@pytest.fixture
def prometheus(exporter: GaugeExporter, tmp_path: Path) -> Iterator[PrometheusServer]:
    with PrometheusServer(
        prometheus_binary(), tmp_path / "prometheus", targets=[exporter.target]
    ) as server:
        server.wait_for_value(QUERY, CALM)
        yield server


@pytest.fixture
async def metrics_env(
    control_plane: ControlPlane,
    namespace: str,
    make_database: DatabaseFactory,
    tmp_path: Path,
    prometheus: PrometheusServer,
) -> AsyncIterator[Env]:
    dsn = await make_database()
    with running_operator(
        control_plane,
        namespace,
        dsn=dsn,
        log_path=tmp_path / "operator.log",
        PROMETHEUS_URL=prometheus.url,
    ) as env:
        yield env


async def only_row(env: Env) -> asyncpg.Record | None:
    rows = await env.rows()
    return rows[0] if len(rows) == 1 else None


def prometheus_part(row: asyncpg.Record) -> dict[str, Any] | None:
    if row["metrics_snapshot"] is None:
        return None
    found: dict[str, Any] | None = json.loads(row["metrics_snapshot"]).get("prometheus")
    return found


def rfc3339(text: str) -> datetime:
    whole, fraction = text.rstrip("Z").split(".")
    return datetime.fromisoformat(whole).replace(tzinfo=UTC) + timedelta(
        microseconds=int(fraction[:6])
    )


async def test_the_series_around_an_outage_is_kept_once_across_a_restart(
    metrics_env: Env, exporter: GaugeExporter, target: TargetServer
) -> None:
    """Acceptance 2: the gauge rose during the outage; the operator is stopped between
    detection and the final capture and started after it is due."""
    env = metrics_env
    env.apply(
        monitor(
            "api",
            target.url,
            logCapture={"before": "5s", "after": "8s"},
            metrics=[{"name": "queue_depth", "query": QUERY}],
        )
    )
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up")
    await asyncio.sleep(6)  # calm samples before the outage, inside `before`
    exporter.set(BUSY)
    target.set_mode("failing")
    await eventually(env.opened_incidents, within=20, what="an incident")

    async def first_run() -> asyncpg.Record | None:
        row = await only_row(env)
        return row if row is not None and row["metrics_capture_runs"] == 1 else None

    row = await eventually(first_run, within=30, what="the capture at detection")
    first = prometheus_part(row)
    assert first is not None and first["final"] is False
    assert json.loads(row["metrics_snapshot"])["during"]["failures"] >= 1  # the runner's part

    exporter.set(CALM)
    target.set_mode("healthy")

    async def final_due() -> asyncpg.Record | None:
        row = await only_row(env)
        due = row is not None and row["status"] == "resolved"
        return row if due and row["metrics_capture_due_at"] is not None else None

    row = await eventually(final_due, within=30, what="the final capture scheduled")
    env.op.stop()
    due = row["metrics_capture_due_at"]
    assert datetime.now(UTC) < due, "stopped too late for this test to mean anything"
    assert due == row["ended_at"] + timedelta(seconds=8)
    await asyncio.sleep((due + timedelta(seconds=2) - datetime.now(UTC)).total_seconds())
    stopped = await only_row(env)
    assert stopped is not None and stopped["metrics_capture_runs"] == 1
    env.op.start()

    async def final_run() -> asyncpg.Record | None:
        row = await only_row(env)
        return row if row is not None and row["metrics_capture_runs"] == 2 else None

    row = await eventually(final_run, within=40, what="the final capture after the restart")
    await asyncio.sleep(6)  # more than a poll period: nothing runs it again
    row = await only_row(env)
    assert row is not None and row["metrics_capture_runs"] == 2

    final = prometheus_part(row)
    assert final is not None and final["final"] is True and final["error"] is None
    assert rfc3339(final["window_end"]) == due
    assert rfc3339(final["window_start"]) == row["started_at"] - timedelta(seconds=5)
    [query] = final["queries"]
    assert (query["name"], query["query"], query["error"]) == ("queue_depth", QUERY, None)
    [series] = query["series"]
    assert series["labels"]["series"] == "main"
    points = [(datetime.fromtimestamp(at, UTC), float(value)) for at, value in series["values"]]
    assert points[0][0] >= rfc3339(final["window_start"]) and points[-1][0] <= due
    values = [value for _, value in points]
    assert values[0] == CALM and values[-1] == CALM and BUSY in values  # it rose, and fell
    busy = [at for at, value in points if value == BUSY]
    # Scrapes every second: the raised gauge shows between the outage's start and its end
    # (give or take a scrape and the target's switch).
    assert row["started_at"] - timedelta(seconds=3) <= busy[0] <= row["ended_at"]
    assert busy[-1] <= row["ended_at"] + timedelta(seconds=3)
