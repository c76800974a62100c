"""Acceptance 4: the chart's HA mode, two operator processes with kopf peering.

Only one replica checks (counted at the target, and by each process's own metrics). When the
active one is killed with SIGKILL, the other resumes the checks within the peering lifetime plus
one interval, and carries on the outage already open: one outage, exactly one incident.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane, free_port
from tests.e2e.harness import Env, eventually, monitor, resolved_rows
from tests.e2e.operator_process import OperatorProcess
from tests.support.helm import Helm, apply_peering_crds, helm_binary
from tests.support.prometheus import scrape, total
from tests.support.target import TargetServer

LIFETIME = 10
"""peering.lifetime (seconds): how long a dead replica's keep-alive still counts."""
INTERVAL = 5
"""The monitor's interval while healthy; retryInterval is 1s while it is down."""


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(helm_binary())


class Replica:
    def __init__(self, identity: str, process: OperatorProcess, metrics_port: int) -> None:
        self.identity = identity
        self.process = process
        self.metrics_port = metrics_port

    def checks(self, monitor_label: str) -> float:
        """Checks this process made, from its own /metrics."""
        return total(
            scrape(self.metrics_port),
            "gatewayz_health_check_duration_seconds_count",
            monitor=monitor_label,
        )


@pytest.fixture
def replicas(control_plane: ControlPlane, tmp_path: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.process.stop()
        print(f"--- {replica.identity} log ---\n{replica.process.log_tail(80)}")


def peers(cp: ControlPlane, *, name: str, namespace: str) -> dict[str, Any]:
    body = cp.kubectl_json("get", "kopfpeering", name, "-n", namespace)
    status: dict[str, Any] = body.get("status") or {}
    return status


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_one_replica_checks_and_the_other_takes_over_one_incident(
    *,
    control_plane: ControlPlane,
    helm: Helm,
    namespace: str,
    make_database: DatabaseFactory,
    target: TargetServer,
    replicas: list[Replica],
    tmp_path: Path,
) -> None:
    apply_peering_crds(control_plane)
    values = {"replicas": 2, "watchNamespaces": [namespace], "peering": {"lifetime": LIFETIME}}
    objects = helm.template(release="ha", namespace=namespace, values=values)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    [peering] = [o for o in objects if o["kind"] == "KopfPeering"]
    control_plane.apply(yaml.safe_dump(peering))
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in operator["env"] if "value" in e}
    dsn = await make_database()
    for identity in ("replica-a", "replica-b"):
        port = free_port()
        process = OperatorProcess(
            control_plane,
            database_url=dsn,
            namespaces=[namespace],
            log_path=tmp_path / f"{identity}.log",
            extra_env={
                "PEERING_NAME": env["PEERING_NAME"],
                "PEERING_LIFETIME_SECONDS": env["PEERING_LIFETIME_SECONDS"],
                "POD_ID": identity,  # the chart sets it to the pod's name
                "METRICS_PORT": str(port),
                "METRICS_HOST": "127.0.0.1",
            },
        )
        process.start()
        replicas.append(Replica(identity, process, port))
    name = peering["metadata"]["name"]
    both = await eventually(
        lambda: (
            len(peers(control_plane, name=name, namespace=namespace)) == 2
            and peers(control_plane, name=name, namespace=namespace)
        ),
        within=60,
        what="both replicas in the peering object",
    )
    top = max(both, key=lambda identity: both[identity]["priority"])
    [active] = [r for r in replicas if r.identity == top]
    [standby] = [r for r in replicas if r.identity != top]

    world = Env(control_plane, namespace, dsn, active.process)
    world.apply(monitor("api", target.url, interval=f"{INTERVAL}s", retryInterval="1s"))
    label = f"{namespace}/api"
    await eventually(lambda: world.monitor_status("api").get("state") == "Up", within=60, what="Up")

    # One checker: consecutive checks are a full interval apart (two would interleave), and
    # only the active process's metrics count any.
    window_start = time.time()
    await asyncio.sleep(3 * INTERVAL + 1)
    window = [t for t in target.request_times if t >= window_start]
    assert len(window) >= 3 and min(gaps(window)) > INTERVAL - 1, gaps(window)
    assert active.checks(label) >= len(window)
    assert standby.checks(label) == 0

    target.set_mode("failing")
    [before] = await eventually(world.rows, within=30, what="the incident's row")
    killed_at = time.time()
    active.process.kill9()

    after_kill = await eventually(
        lambda: [t for t in target.request_times if t > killed_at],
        within=LIFETIME + INTERVAL + 10,
        what="checks from the standby",
    )
    resumed_after = after_kill[0] - killed_at
    assert resumed_after <= LIFETIME + INTERVAL, resumed_after
    assert standby.checks(label) > 0

    target.set_mode("healthy")
    [row] = await eventually(lambda: resolved_rows(world), within=30, what="resolution")
    assert row["incident_id"] == before["incident_id"]
    [incident] = world.incidents()
    assert incident["status"]["status"] == "resolved"
    assert incident["spec"]["incidentId"] == str(row["incident_id"])
    samples = scrape(standby.metrics_port)
    assert total(samples, "gatewayz_downtime_incidents_total") == 0  # resumed, not opened
    downtime = total(samples, "gatewayz_downtime_duration_seconds_total", monitor=label)
    assert downtime == pytest.approx(row["duration_seconds"], abs=1e-3)
    print(f"standby resumed checks {resumed_after:.1f}s after the kill")
