"""Dependencies failing and API economy, against the real control plane and Postgres."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter

from tests.e2e.harness import Env, eventually, monitor, resolved_rows
from tests.support.target import TargetServer


def postgres_cluster(action: str) -> None:
    """Stop or start the local PostgreSQL cluster that every test database lives in.

    pg_ctlcluster exits 2 when the cluster is already in the wanted state; the state is what
    counts, so it is checked afterwards rather than the exit code.
    """
    version, name = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout.split()[:2]
    subprocess.run(
        ["pg_ctlcluster", version, name, action, *(["-m", "fast"] if action == "stop" else [])],
        check=False,
        timeout=60,
    )
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing[3] == ("online" if action == "start" else "down"), listing


async def test_postgres_down_for_30s_during_an_outage_loses_nothing(
    env: Env, target: TargetServer
) -> None:
    env.apply(monitor("pgdown", target.url))
    await eventually(
        lambda: env.monitor_status("pgdown").get("state") == "Up", within=30, what="Up"
    )
    postgres_cluster("stop")
    try:
        stopped_at = time.monotonic()
        target.set_mode("failing")
        [incident] = await eventually(
            env.incidents, within=20, what="the CR while Postgres is down"
        )
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
        assert env.op.alive, env.op.log_tail()
    finally:
        postgres_cluster("start")
    [row] = await eventually(env.rows, within=60, what="the row once Postgres is back")
    assert str(row["incident_id"]) == incident["spec"]["incidentId"]
    assert row["started_at"].isoformat()[:19] == incident["spec"]["startedAt"][:19]
    target.set_mode("healthy")
    await eventually(lambda: resolved_rows(env), within=30, what="resolution in Postgres")
    assert env.op.alive
    assert len(env.incidents()) == 1


async def test_kill_9_while_postgres_is_down_keeps_the_incident(
    env: Env, target: TargetServer
) -> None:
    """The queued row dies with the process; the DowntimeIncident does not. The next start
    writes the row from it: same incident id and start, resolved later, nothing duplicated."""
    env.apply(monitor("killed", target.url))
    await eventually(
        lambda: env.monitor_status("killed").get("state") == "Up", within=30, what="Up"
    )
    postgres_cluster("stop")
    try:
        target.set_mode("failing")
        [incident] = await eventually(
            env.incidents, within=20, what="the CR while Postgres is down"
        )
        env.op.kill9()
    finally:
        postgres_cluster("start")
    env.op.start()
    [row] = await eventually(env.rows, within=60, what="the row written again from the CR")
    assert str(row["incident_id"]) == incident["spec"]["incidentId"]
    assert row["started_at"].isoformat()[:19] == incident["spec"]["startedAt"][:19]
    target.set_mode("healthy")
    await eventually(lambda: resolved_rows(env), within=30, what="resolution in Postgres")
    assert len(env.incidents()) == 1 and len(await env.rows()) == 1


async def test_healthy_monitors_write_status_rarely(env: Env, target: TargetServer) -> None:
    """50 monitors checked every second for 2 minutes: at most 3 status writes each."""
    names = [f"m{i:02d}" for i in range(50)]
    env.cp.apply(
        {"apiVersion": "v1", "kind": "List", "items": [monitor(n, target.url) for n in names]},
        namespace=env.namespace,
    )
    started = time.monotonic()

    def all_up() -> bool:
        items = env.cp.kubectl_json("get", "healthmonitors", "-n", env.namespace)["items"]
        return len(items) == 50 and all((i.get("status") or {}).get("state") == "Up" for i in items)

    await eventually(all_up, within=60, what="all 50 monitors Up")
    await asyncio.sleep(max(0.0, 120 - (time.monotonic() - started)))
    assert target.requests >= 50 * 100, target.requests
    await asyncio.sleep(1)  # audit lines land just after the response
    writes = Counter(
        event["objectRef"]["name"]
        for event in env.cp.audit_events(
            resource="healthmonitors", subresource="status", verb="patch", namespace=env.namespace
        )
    )
    print(f"status PATCHes per monitor: {sorted(Counter(writes.values()).items())}")
    assert set(writes) == set(names)
    assert max(writes.values()) <= 3, writes
