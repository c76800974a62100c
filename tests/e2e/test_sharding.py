"""Issue 11, acceptance 4: ``sharding.shards: 2`` as two operator processes.

The processes get the environment of the chart's rendered StatefulSet (what Kubernetes would
resolve, the pod's index and name, is filled in as the kubelet would). Every monitor is checked
by exactly one process, counted at the target; an outage of all of them lands in the one
database once per monitor; killing one process stops only its share until it is back.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane, free_port
from tests.e2e.harness import Env, eventually, monitor
from tests.e2e.operator_process import OperatorProcess
from tests.support.helm import Helm, apply_peering_crds, helm_binary
from tests.support.prometheus import scrape, total
from tests.support.target import TargetServer

SHARDS = 2
MONITORS = 16
"""Enough that both shards own some (all on one shard: a chance of 2 in 65,536)."""
INTERVAL = 2


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(helm_binary())


class ShardProcess:
    def __init__(self, index: int, process: OperatorProcess, metrics_port: int) -> None:
        self.index = index
        self.process = process
        self.metrics_port = metrics_port

    def checks(self, label: str) -> float:
        return total(
            scrape(self.metrics_port), "gatewayz_health_check_duration_seconds_count", monitor=label
        )


@pytest.fixture
def shards() -> Iterator[list[ShardProcess]]:
    started: list[ShardProcess] = []
    yield started
    for shard in started:
        shard.process.stop()
        print(f"--- shard {shard.index} log ---\n{shard.process.log_tail(60)}")


def pod_environment(
    container: dict[str, Any], *, pod_name: str, pod_index: int, dsn: str
) -> dict[str, str]:
    """The container's env as the kubelet resolves it for one pod of the StatefulSet."""
    resolved: dict[str, str] = {}
    for variable in container["env"]:
        if "value" in variable:
            resolved[variable["name"]] = variable["value"]
            continue
        source = variable["valueFrom"]
        if "secretKeyRef" in source:
            resolved[variable["name"]] = dsn
            continue
        field = source["fieldRef"]["fieldPath"]
        by_field = {
            "metadata.name": pod_name,
            "metadata.labels['apps.kubernetes.io/pod-index']": str(pod_index),
        }
        resolved[variable["name"]] = by_field[field]
    return resolved


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def start_shards(
    control_plane: ControlPlane,
    helm: Helm,
    *,
    namespace: str,
    dsn: str,
    into: list[ShardProcess],
    logs: Path,
) -> None:
    """One operator process per pod of the chart's StatefulSet, with that pod's environment."""
    apply_peering_crds(control_plane)
    values = {
        "sharding": {"shards": SHARDS},
        "watchNamespaces": [namespace],
        "peering": {"lifetime": 10},
    }
    objects = helm.template(release="sh", namespace=namespace, values=values)
    [statefulset] = [o for o in objects if o["kind"] == "StatefulSet"]
    assert statefulset["spec"]["replicas"] == SHARDS
    for peering in [o for o in objects if o["kind"] == "KopfPeering"]:
        control_plane.apply(peering)
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    for index in range(SHARDS):
        env = pod_environment(
            container,
            pod_name=f"{statefulset['metadata']['name']}-{index}",
            pod_index=index,
            dsn=dsn,
        )
        # OperatorProcess sets these itself, to the same values.
        assert env.pop("WATCH_NAMESPACES") == namespace and env.pop("DATABASE_URL") == dsn
        assert env.pop("LOG_LEVEL") == "INFO"
        port = free_port()
        # Ports and the log directory are the pod's own in a cluster; here they are shared.
        env.update(METRICS_PORT=str(port), METRICS_HOST="127.0.0.1", LOG_FILES_DIR=str(logs))
        process = OperatorProcess(
            control_plane,
            database_url=dsn,
            namespaces=[namespace],
            log_path=logs / f"shard-{index}.log",
            extra_env=env,
        )
        process.start()
        into.append(ShardProcess(index, process, port))


async def assert_one_checker_each(
    target: TargetServer, shards: list[ShardProcess], *, owner: dict[str, int], namespace: str
) -> None:
    """Counted at the target, a full interval between a monitor's checks (two processes would
    interleave); and only its owner's /metrics count checks of it, under the owner's label."""
    window_start = time.time()
    await asyncio.sleep(3 * INTERVAL + 1)
    by_path = target.times_by_path()
    for name in sorted(owner):
        window = [t for t in by_path[f"/{name}"] if t >= window_start]
        assert len(window) >= 3 and min(gaps(window)) > INTERVAL - 0.5, (name, gaps(window))
        label = f"{namespace}/{name}"
        counted = {shard.index: shard.checks(label) for shard in shards}
        assert (
            counted[owner[name]] >= len(window) and sum(counted.values()) == counted[owner[name]]
        ), (name, counted)
    assert all(
        dict(labels).get("shard") == str(shard.index)
        for shard in shards
        for (_, labels) in scrape(shard.metrics_port)
    )


async def test_two_shards_split_the_monitors_and_record_each_incident_once(
    *,
    control_plane: ControlPlane,
    helm: Helm,
    namespace: str,
    make_database: DatabaseFactory,
    target: TargetServer,
    shards: list[ShardProcess],
    tmp_path: Path,
) -> None:
    dsn = await make_database()
    start_shards(control_plane, helm, namespace=namespace, dsn=dsn, into=shards, logs=tmp_path)
    world = Env(control_plane, namespace, dsn, shards[0].process)
    names = [f"m{i:02d}" for i in range(MONITORS)]
    for name in names:
        world.apply(
            monitor(name, f"{target.base_url}/{name}", interval=f"{INTERVAL}s", retryInterval="1s")
        )

    def owners() -> dict[str, int] | None:
        items = control_plane.kubectl_json("get", "healthmonitors", "-n", namespace)["items"]
        statuses = {item["metadata"]["name"]: item.get("status") or {} for item in items}
        if len(statuses) < MONITORS or any(
            s.get("state") != "Up" or "shard" not in s for s in statuses.values()
        ):
            return None
        return {name: status["shard"] for name, status in statuses.items()}

    owner = await eventually(owners, within=90, what="every monitor Up with its shard")
    assert set(owner.values()) == set(range(SHARDS)), owner

    await assert_one_checker_each(target, shards, owner=owner, namespace=namespace)

    # Every monitor down at once: one row and one DowntimeIncident each, whoever checks it.
    target.set_mode("failing")

    async def one_open_incident_each() -> list[Any] | None:
        rows = await world.rows()
        crs = world.opened_incidents()
        return rows if len(rows) >= MONITORS and len(crs) >= MONITORS else None

    rows = await eventually(one_open_incident_each, within=60, what="an incident per monitor")
    target.set_mode("healthy")

    async def all_resolved() -> list[Any] | None:
        rows = await world.rows()
        return (
            rows if len(rows) >= MONITORS and all(r["status"] == "resolved" for r in rows) else None
        )

    rows = await eventually(all_resolved, within=60, what="every incident resolved")
    assert sorted(r["monitor_name"] for r in rows) == names  # exactly one each
    crs = world.incidents()
    assert len(crs) == MONITORS and all(cr["status"]["status"] == "resolved" for cr in crs)

    await kill_and_restart(target, shards[1], owner=owner)


async def kill_and_restart(
    target: TargetServer, killed: ShardProcess, *, owner: dict[str, int]
) -> None:
    """Its monitors wait for its restart; the other shard's go on."""
    killed.process.kill9()
    killed_at = time.time()
    await asyncio.sleep(3 * INTERVAL + 1)
    by_path = target.times_by_path()
    for name in sorted(owner):
        after = [t for t in by_path[f"/{name}"] if t > killed_at + 1]  # 1 s for one in flight
        if owner[name] == killed.index:
            assert after == [], name
        else:
            assert len(after) >= 2, name
    restarted_at = time.time()
    killed.process.start()

    def checked_again() -> bool:
        times = target.times_by_path()
        return all(
            any(t > restarted_at for t in times[f"/{name}"])
            for name in sorted(owner)
            if owner[name] == killed.index
        )

    await eventually(checked_again, within=60, what="the restarted shard's checks")
    back = time.time() - restarted_at
    print(f"shard {killed.index} checked its monitors again {back:.1f}s after its restart")
