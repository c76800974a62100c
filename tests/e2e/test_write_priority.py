"""Incident records never wait behind status refreshes (issue 11), on the real operator process.

150 monitors checked every second with a 1 s sync period want ~150 status refreshes a second;
the operator is given a budget of 1, so the first round of refreshes alone keeps the writer's
queue full for two minutes whatever the machine's load (with a budget of 5 it drained within
the seconds a loaded machine took to write the row, and the race was not measured). With the
refreshes piled up against that budget, one more monitor fails: its DowntimeIncident must
appear within a second of its row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import Env, eventually, monitor, operator_with_metrics
from tests.support.prometheus import scrape, total
from tests.support.target import TargetServer

FLOOD = 150
BUDGET = 1


@pytest.fixture
async def flooded(
    control_plane: ControlPlane, namespace: str, make_database: DatabaseFactory, tmp_path: Path
) -> AsyncIterator[tuple[Env, int]]:
    dsn = await make_database()
    with operator_with_metrics(
        control_plane,
        namespace,
        dsn=dsn,
        log_path=tmp_path / "operator.log",
        STATUS_SYNC_PERIOD_SECONDS="1",
        STATUS_WRITES_PER_SECOND=str(BUDGET),
    ) as served:
        yield served


def pending_status_writes(port: int) -> float:
    return total(scrape(port), "gatewayz_operator_pending_writes", queue="status")


async def first_seen(probe: Any, *, within: float) -> float:
    """The monotonic time at which ``probe()`` first returned something true (polled at 20 Hz)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        # kubectl is a subprocess: in a thread, so the other probe keeps its pace meanwhile.
        found = (
            await probe() if asyncio.iscoroutinefunction(probe) else await asyncio.to_thread(probe)
        )
        if found:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"not seen within {within}s")


async def test_an_incident_cr_follows_its_row_within_a_second_while_refreshes_flood(
    flooded: tuple[Env, int], target: TargetServer
) -> None:
    env, port = flooded
    monitors = [monitor(f"m-{i}", f"{target.url}?m={i}") for i in range(FLOOD)]
    env.apply({"apiVersion": "v1", "kind": "List", "items": monitors})
    with TargetServer() as failing:
        env.apply(monitor("api", failing.url, failureThreshold=1))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=60, what="api Up"
        )
        await eventually(
            lambda: pending_status_writes(port) >= 50, within=60, what="refreshes piling up"
        )
        failing.set_mode("failing")

        backlog: list[float] = []

        async def row() -> bool:
            if not await env.rows():
                return False
            # The refreshes waiting when the incident's writes begin: the race being measured.
            backlog.append(await asyncio.to_thread(pending_status_writes, port))
            return True

        row_at, cr_at = await asyncio.gather(
            first_seen(row, within=30),
            first_seen(env.incidents, within=30),
        )
    assert backlog[0] >= 50, f"the refreshes were not flooding the budget: {backlog[0]:g}"
    assert cr_at - row_at < 1.0, f"DowntimeIncident {cr_at - row_at:.2f}s after its row"
