"""``downtime-operator monitor --slo --maintenance`` as a real process (issue 15): an outage in
its recurring maintenance window opens no incident and is recorded as maintenance in the SQLite
file; the SLA report judges the monitor's objective with the window left out."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from tests.integration.test_standalone_monitor import (
    AUTH,
    FAST,
    KEY,
    api_port,
    wait_for_checks,
)
from tests.support.monitor_process import MonitorProcess, monitor_env
from tests.support.target import TargetServer

from downtime_operator.standalone import monitor_ref_for


async def test_an_outage_in_a_maintenance_window_opens_nothing_and_is_left_out(
    target: TargetServer,
    start_monitor: Callable[..., MonitorProcess],
    tmp_path: Path,
) -> None:
    # Starts every minute, lasts an hour: the monitor is always in maintenance.
    monitor = start_monitor(
        "--url",
        target.base_url,
        *FAST,
        "--slo",
        "99.9",
        "--slo-window",
        "7d",
        "--maintenance",
        "* * * * */1h",
        "--time-zone",
        "Europe/Berlin",
        "--api-port",
        "0",
        env=monitor_env(ADMIN_API_KEYS=f"ops={KEY}"),
    )
    base = f"http://127.0.0.1:{await api_port(monitor)}/admin/downtime"
    await wait_for_checks(target, 2, monitor)
    target.set_mode("failing")
    await asyncio.sleep(5)  # five failed checks: above the threshold of three

    assert "is Maintenance" in monitor.log
    with sqlite3.connect(tmp_path / "downtime.db") as conn:
        assert conn.execute("SELECT count(*) FROM downtime_incidents").fetchone() == (0,)
        periods = conn.execute(
            "SELECT monitor_name, ended_at, reason FROM downtime_maintenance_periods"
        ).fetchall()
    assert len(periods) == 1 and periods[0][1] is None
    assert periods[0][2] == "--maintenance * * * * */1h"

    month = datetime.now(UTC).strftime("%Y-%m")
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/slo", params={"month": month}, headers=AUTH) as response,
    ):
        assert response.status == 200, await response.text()
        [row] = (await response.json())["monitors"]
    assert (row["objective"], row["incidents"], row["downtime_seconds"]) == ("99.9", 0, 0.0)
    assert row["maintenance_seconds"] > 0 and row["met"] is True
    assert await monitor.terminate() == 0


async def test_maintenance_start_puts_the_running_monitor_in_maintenance(
    target: TargetServer, start_monitor: Callable[..., MonitorProcess], tmp_path: Path
) -> None:
    """``downtime-operator maintenance start`` through the standalone monitor's admin API."""
    monitor = start_monitor(
        "--url",
        target.base_url,
        *FAST,
        "--api-port",
        "0",
        env=monitor_env(ADMIN_API_KEYS=f"ops={KEY}"),
    )
    port = await api_port(monitor)
    ref = monitor_ref_for(f"{target.base_url}/health")  # the monitor appends /health
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downtime_operator",
        "maintenance",
        "start",
        "--monitor",
        ref.name,
        "--namespace",
        ref.namespace,
        "--for",
        "30m",
        "--reason",
        "hotfix",
        env=monitor_env(DOWNTIME_API_URL=f"http://127.0.0.1:{port}", ADMIN_API_KEY=KEY),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await command.communicate()
    assert command.returncode == 0, err.decode()
    assert out.decode().startswith(f"{ref.namespace}/adhoc-")

    await wait_for_checks(target, 2, monitor)
    target.set_mode("failing")
    await asyncio.sleep(5)
    assert "is Maintenance" in monitor.log
    with sqlite3.connect(tmp_path / "downtime.db") as conn:
        assert conn.execute("SELECT count(*) FROM downtime_incidents").fetchone() == (0,)
        audited = conn.execute(
            "SELECT key_name FROM downtime_audit_log WHERE action = 'startMaintenance'"
        ).fetchall()
    assert audited == [("ops",)]
    assert await monitor.terminate() == 0
