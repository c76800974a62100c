"""Acceptance 5: after real outages, /metrics (parsed as Prometheus parses it) matches Postgres."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import Env, eventually, monitor, operator_with_metrics
from tests.support.prometheus import scrape, total
from tests.support.target import TargetServer


@pytest.fixture
async def metered(
    control_plane: ControlPlane, namespace: str, make_database: DatabaseFactory, tmp_path: Path
) -> AsyncIterator[tuple[Env, int]]:
    """The operator as a process serving its metrics on a free loopback port."""
    dsn = await make_database()
    with operator_with_metrics(
        control_plane, namespace, dsn=dsn, log_path=tmp_path / "operator.log"
    ) as served:
        yield served


def status_of(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


async def test_metrics_match_the_database_after_outages(
    metered: tuple[Env, int], target: TargetServer
) -> None:
    env, port = metered
    await eventually(lambda: status_of(port, "/readyz") == 200, within=30, what="/readyz 200")
    assert status_of(port, "/healthz") == 200
    env.apply(monitor("api", target.url, severity="critical"))
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up")
    label = f"{env.namespace}/api"
    assert scrape(port)[("gatewayz_health_check_up", (("monitor", label),))] == 1

    for outage in (1, 2):
        target.set_mode("failing")
        await eventually(
            lambda n=outage: len(env.incidents()) == n, within=20, what=f"incident {outage}"
        )
        samples = scrape(port)
        assert samples[("gatewayz_downtime_incidents_ongoing", (("monitor", label),))] == 1
        assert samples[("gatewayz_health_check_up", (("monitor", label),))] == 0
        await asyncio.sleep(2)
        target.set_mode("healthy")
        await eventually(
            lambda n=outage: resolved(env, n), within=30, what=f"outage {outage} resolved"
        )

    rows = await env.rows()
    assert len(rows) == 2
    samples = scrape(port)
    incidents = total(samples, "gatewayz_downtime_incidents_total", monitor=label)
    by_severity = total(samples, "gatewayz_downtime_incidents_total", severity="critical")
    downtime = total(samples, "gatewayz_downtime_duration_seconds_total", monitor=label)
    assert incidents == by_severity == len(rows)
    assert downtime == pytest.approx(sum(r["duration_seconds"] for r in rows), abs=1e-3)
    assert samples[("gatewayz_downtime_incidents_ongoing", (("monitor", label),))] == 0
    checks = samples[("gatewayz_health_check_duration_seconds_count", (("monitor", label),))]
    assert target.requests - 1 <= checks <= target.requests  # one may be in flight


async def resolved(env: Env, count: int) -> list[asyncpg.Record]:
    rows = await env.rows()
    return rows if len(rows) == count and all(r["status"] == "resolved" for r in rows) else []
