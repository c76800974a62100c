"""The Helm chart against the real kube-apiserver, and the operator under the chart's RBAC.

Acceptance 2: every mode's rendered manifests pass ``kubectl apply --dry-run=server``.
Acceptance 3: the main scenario (outage -> incident -> resolved) with the operator authenticated
by a TokenRequest token of the chart's ServiceAccount, and a forbidden action denied.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ApiError, ControlPlane, free_port
from tests.e2e.harness import Env, eventually, monitor, resolved_rows
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.workloads import Workload
from tests.support.helm import CHART, MODES, Helm, apply_peering_crds, helm_binary
from tests.support.prometheus import scrape
from tests.support.target import TargetServer

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
PEERING_KINDS = ("ClusterKopfPeering", "KopfPeering")


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(helm_binary())


@pytest.fixture(scope="module")
def peering_crds(control_plane: ControlPlane) -> None:
    apply_peering_crds(control_plane)


@pytest.fixture
def release(control_plane: ControlPlane) -> Iterator[str]:
    """A unique release name; its cluster-scoped objects are deleted after the test."""
    name = f"r{secrets.token_hex(3)}"
    yield name
    fullname = f"{name}-downtime-operator"
    for kind in ("clusterrolebinding", "clusterrole", "clusterkopfpeering"):
        control_plane.kubectl("delete", kind, fullname, "--ignore-not-found", check=False)


def mode_values(mode: str, watched: list[str]) -> dict[str, Any]:
    """The mode's values, with the namespaced mode watching namespaces that exist."""
    values = dict(MODES[mode])
    if "watchNamespaces" in values:
        values["watchNamespaces"] = watched
    return values


@pytest.mark.parametrize("mode", MODES)
def test_rendered_manifests_are_accepted_by_the_apiserver(
    *,
    control_plane: ControlPlane,
    helm: Helm,
    peering_crds: None,
    release: str,
    make_namespace: Callable[[], str],
    mode: str,
) -> None:
    home, team_a, team_b = make_namespace(), make_namespace(), make_namespace()
    text = helm.template_text(
        release=release, namespace=home, values=mode_values(mode, [team_a, team_b])
    )
    kinds = {doc["kind"] for doc in yaml.safe_load_all(text) if doc}
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds
    out = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=text).stdout
    accepted = [line for line in out.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len([doc for doc in yaml.safe_load_all(text) if doc]), out


def test_the_notes_apply_a_first_healthmonitor(
    control_plane: ControlPlane, helm: Helm, peering_crds: None, release: str, namespace: str
) -> None:
    """NOTES.txt's HealthMonitor is valid as written (minus its namespace, set to this test's)."""
    notes = helm_notes(control_plane, helm, release=release, namespace=namespace)
    match = re.search(r"^(\s+)apiVersion: monitoring\.gatewayz\.ai/v1\n(?:\1.*\n)+", notes, re.M)
    assert match, notes
    body = yaml.safe_load("\n".join(line[len(match[1]) :] for line in match[0].splitlines()))
    assert body["kind"] == "HealthMonitor"
    body["metadata"]["namespace"] = namespace
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body)
    ).stdout
    assert "healthmonitor.monitoring.gatewayz.ai/api created (server dry run)" in out


def helm_notes(cp: ControlPlane, helm: Helm, *, release: str, namespace: str) -> str:
    """``helm install --dry-run`` renders NOTES.txt; it needs a cluster to ask for its version."""
    out = helm.run(
        "install",
        release,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        namespace,
        "--kubeconfig",
        str(cp.kubeconfig),
    )
    return out.partition("NOTES:")[2]


def rendered(
    helm: Helm, *, release: str, namespace: str, values: dict[str, Any], kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    objects = helm.template(release=release, namespace=namespace, values=values)
    return [o for o in objects if o["kind"] in kinds]


def deployment_env(helm: Helm, *, release: str, namespace: str, values: dict[str, Any]) -> Any:
    [deployment] = rendered(
        helm, release=release, namespace=namespace, values=values, kinds=("Deployment",)
    )
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in operator["env"] if "value" in e}


def service_account_kubeconfig(
    cp: ControlPlane, *, name: str, namespace: str, path: Path
) -> tuple[Path, str]:
    """A TokenRequest token for the ServiceAccount (as kubelet would mount it), as a kubeconfig."""
    token = cp.kubectl("create", "token", name, "-n", namespace, "--duration", "2h").stdout
    return cp.write_kubeconfig(path, token.strip(), user=name), token.strip()


@dataclass(frozen=True)
class InstalledRbac:
    """The chart's RBAC objects applied, and what the operator needs to run under them."""

    control_plane: ControlPlane
    objects: list[dict[str, Any]]
    service_account: str
    kubeconfig: Path
    token: str
    watched: list[str]
    env: dict[str, str]
    log_path: Path

    def operator(self, *, database_url: str, metrics_port: int | None = None) -> OperatorProcess:
        extra_env = {"PEERING_NAME": self.env["PEERING_NAME"]}
        if metrics_port is not None:
            extra_env |= {"METRICS_PORT": str(metrics_port), "METRICS_HOST": "127.0.0.1"}
        return OperatorProcess(
            self.control_plane,
            database_url=database_url,
            namespaces=self.watched,
            log_path=self.log_path,
            kubeconfig=self.kubeconfig,
            extra_env=extra_env,
        )


def install_rbac(
    cp: ControlPlane, helm: Helm, *, release: str, home: str, watched: list[str], tmp_path: Path
) -> InstalledRbac:
    """Apply the chart's RBAC for ``watched`` (empty: cluster-wide) and log in as its account."""
    values: dict[str, Any] = {"watchNamespaces": watched} if watched else {}
    objects = rendered(
        helm, release=release, namespace=home, values=values, kinds=RBAC_KINDS + PEERING_KINDS
    )
    cp.apply("\n---\n".join(yaml.safe_dump(o) for o in objects))
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    sa = account["metadata"]["name"]
    kubeconfig, token = service_account_kubeconfig(
        cp, name=sa, namespace=home, path=tmp_path / "sa.kubeconfig"
    )
    env = deployment_env(helm, release=release, namespace=home, values=values)
    assert env.get("WATCH_NAMESPACES", "") == ",".join(watched)
    return InstalledRbac(
        control_plane=cp,
        objects=objects,
        service_account=sa,
        kubeconfig=kubeconfig,
        token=token,
        watched=watched,
        env=env,
        log_path=tmp_path / "operator.log",
    )


async def test_a_namespace_that_lost_its_rolebinding_does_not_hold_up_the_others(
    *,
    control_plane: ControlPlane,
    helm: Helm,
    peering_crds: None,
    release: str,
    namespace: str,
    make_namespace: Callable[[], str],
    make_database: DatabaseFactory,
    target: TargetServer,
    tmp_path: Path,
) -> None:
    """Namespaced mode, two teams; team-a's RoleBinding is deleted. Its writes are refused (403)
    until the binding is back, then applied; team-b's incident does not wait for them."""
    team_a = make_namespace()
    installed = install_rbac(
        control_plane,
        helm,
        release=release,
        home=make_namespace(),
        watched=[team_a, namespace],
        tmp_path=tmp_path,
    )
    metrics_port = free_port()
    op = installed.operator(database_url=await make_database(), metrics_port=metrics_port)
    env = Env(control_plane, namespace, op.env["DATABASE_URL"], op)
    stuck = ("gatewayz_operator_pending_writes", (("lane", team_a), ("queue", "kubernetes")))
    [binding] = [
        o
        for o in installed.objects
        if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == team_a
    ]
    op.start()
    try:
        with TargetServer() as team_a_target:
            env.apply(monitor("api", team_a_target.url), namespace=team_a)
            env.apply(monitor("api", target.url))
            for ns in (team_a, namespace):
                await eventually(
                    lambda ns=ns: env.monitor_status("api", ns).get("state") == "Up",
                    within=60,
                    what=f"Up in {ns}",
                )
            name = binding["metadata"]["name"]
            control_plane.kubectl("delete", "rolebinding", name, "-n", team_a)
            team_a_target.set_mode("failing")

            async def team_a_row() -> bool:
                return [r["monitor_namespace"] for r in await env.rows()] == [team_a]

            await eventually(team_a_row, within=30, what="team-a's row")
            await eventually(
                lambda: "forbidden" in op.log_tail(2000), within=30, what="team-a's refused write"
            )
            target.set_mode("failing")
            [incident] = await eventually(
                env.opened_incidents, within=30, what="team-b's CR while team-a's wait"
            )
            assert incident["spec"]["monitorRef"]["namespace"] == namespace
            assert len(await env.rows()) == 2
            assert scrape(metrics_port).get(stuck, 0) >= 1  # what an alert would see

            control_plane.apply(yaml.safe_dump(binding))
            [held] = await eventually(
                lambda: env.opened_incidents(team_a), within=60, what="team-a's CR once allowed"
            )
            rows = {str(r["incident_id"]): r for r in await env.rows()}
            assert held["spec"]["incidentId"] in rows
            assert rows[held["spec"]["incidentId"]]["monitor_namespace"] == team_a
            await eventually(
                lambda: stuck not in scrape(metrics_port), within=30, what="team-a's lane drained"
            )
            assert op.alive
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.log_tail(120)}")


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
async def test_main_scenario_as_the_charts_service_account(
    *,
    control_plane: ControlPlane,
    helm: Helm,
    peering_crds: None,
    release: str,
    namespace: str,
    make_namespace: Callable[[], str],
    make_database: DatabaseFactory,
    target: TargetServer,
    tmp_path: Path,
    mode: str,
) -> None:
    home = make_namespace()
    watched = [namespace] if mode == "namespaced" else []
    installed = install_rbac(
        control_plane, helm, release=release, home=home, watched=watched, tmp_path=tmp_path
    )
    sa, kubeconfig, token = installed.service_account, installed.kubeconfig, installed.token
    op = installed.operator(database_url=await make_database())
    # Behind the monitor, a Deployment: the incident's Kubernetes context is read as the
    # ServiceAccount too.
    Workload(control_plane, namespace, "api").roll_out(revision=1)
    op.start()
    try:
        env = Env(control_plane, namespace, op.env["DATABASE_URL"], op)
        await outage_is_recorded_and_resolved(
            env, target, targetRef={"kind": "Deployment", "name": "api"}
        )
        [incident] = env.incidents()
        assert incident["status"]["context"]["podsReady"] == "3/3"
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.log_tail(120)}")

    user = f"system:serviceaccount:{home}:{sa}"
    mine = control_plane.audit_events(username=user)
    assert any(
        e["verb"] == "create" and e["objectRef"]["resource"] == "downtimeincidents" for e in mine
    ), "the incident was not created with the ServiceAccount's token"
    refused = [e for e in mine if e.get("responseStatus", {}).get("code") == 403]
    assert refused == [], refused
    read = {(e["verb"], e["objectRef"]["resource"]) for e in mine}
    assert {
        ("list", "pods"),
        ("list", "replicasets"),
        ("list", "endpointslices"),
        ("list", "events"),
        ("get", "deployments"),
    } <= read, read
    assert "Forbidden" not in op.log_tail(100_000)

    # Denied: listing Secrets (it may only get one by name), touching monitors outside the
    # watched namespaces.
    denied = control_plane.kubectl(
        "auth", "can-i", "list", "secrets", "--all-namespaces", kubeconfig=kubeconfig, check=False
    )
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    with pytest.raises(ApiError) as forbidden:
        control_plane.api("GET", "/api/v1/secrets", token=token)
    assert forbidden.value.status == 403
    elsewhere = control_plane.kubectl(
        "auth", "can-i", "create", "healthmonitors", "-n", home, kubeconfig=kubeconfig, check=False
    )
    assert elsewhere.stdout.strip() == "no"
    if mode == "namespaced":
        other = control_plane.kubectl(
            "auth",
            "can-i",
            "list",
            "downtimeincidents",
            "-n",
            home,
            kubeconfig=kubeconfig,
            check=False,
        )
        assert other.stdout.strip() == "no"


async def outage_is_recorded_and_resolved(env: Env, target: TargetServer, **spec: Any) -> None:
    """The e2e main scenario: one outage -> one incident (CR + row) -> resolved in both."""
    env.apply(monitor("api", target.url, **spec))
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=60, what="Up")
    target.set_mode("failing")
    [incident] = await eventually(env.opened_incidents, within=30, what="a DowntimeIncident")
    [row] = await eventually(env.rows, within=20, what="the Postgres row")
    assert str(row["incident_id"]) == incident["spec"]["incidentId"]
    await asyncio.sleep(2)
    came_back = time.time()
    target.set_mode("healthy")
    [row] = await eventually(lambda: resolved_rows(env), within=30, what="resolution in Postgres")
    [done] = await eventually(
        lambda: [i for i in env.incidents() if i["status"]["status"] == "resolved"],
        within=30,
        what="resolution on the CR",
    )
    assert done["status"]["durationSeconds"] == pytest.approx(row["duration_seconds"], abs=0.01)
    assert row["ended_at"].timestamp() == pytest.approx(came_back, abs=1.5)
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=20, what="Up")
    events = env.cp.kubectl("get", "events", "-n", env.namespace).stdout
    assert "IncidentOpened" in events and "IncidentResolved" in events


def test_the_log_encryption_key_ring_mount_is_accepted_by_the_apiserver(
    *,
    control_plane: ControlPlane,
    helm: Helm,
    peering_crds: None,
    release: str,
    make_namespace: Callable[[], str],
) -> None:
    """``logEncryption.existingSecret`` renders a Secret volume the API server accepts."""
    home = make_namespace()
    values = {"logEncryption": {"existingSecret": "log-keys", "activeKey": "k1"}}
    text = helm.template_text(release=release, namespace=home, values=values)
    [deployment] = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "log-keys", "secret": {"secretName": "log-keys"}} in pod["volumes"]
    out = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=text).stdout
    assert f"deployment.apps/{release}-downtime-operator created (server dry run)" in out, out
