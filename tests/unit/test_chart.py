"""The Helm chart in manifests/: lint, render and the promises of the rendered objects.

Acceptance 1 of the "Ship it" issue: ``helm lint`` and ``helm template`` for default values,
namespaced mode and HA mode, with helm built from Go modules (scripts/build-helm.sh). What the
real apiserver says about the same objects is in tests/e2e/test_chart.py.
"""

from __future__ import annotations

import base64
import json
import re
import tarfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from downtime_operator.adapters.metrics import OperatorMetrics
from downtime_operator.services.retry_queue import OrderedRetryQueue
from downtime_operator.settings import OperatorSettings, load_settings
from tests.support.helm import CHART, MODES, REPO, Helm, helm_binary

RELEASE = "dto"
NAMESPACE = "ops"
FULLNAME = f"{RELEASE}-downtime-operator"
OUR_GROUP = "monitoring.gatewayz.ai"
EVERYTHING_ON: dict[str, Any] = {
    "serviceMonitor": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "logFiles": {"persistence": {"enabled": True}},
    "podDisruptionBudget": {"enabled": True},
    "adminApi": {"existingSecret": "api-keys"},
    "logEncryption": {"existingSecret": "log-keys", "activeKey": "k2"},
    "loki": {"enabled": True, "queryUrl": "https://loki.example", "existingSecret": "loki"},
    "prometheus": {
        "url": "http://prometheus-operated.monitoring:9090",
        "orgId": "team-a",
        "existingSecret": "prometheus",
        "usernameKey": "user",
        "passwordKey": "password",
    },
}

# Exactly what the operator does with each resource (see the rules' comment in _helpers.tpl).
EXPECTED_RULES = {
    (OUR_GROUP, "healthmonitors"): {"get", "list", "watch", "patch"},
    (OUR_GROUP, "healthmonitors/status"): {"patch"},
    (OUR_GROUP, "downtimeincidents"): {"get", "list", "watch", "create", "patch", "delete"},
    (OUR_GROUP, "downtimeincidents/status"): {"patch"},
    (OUR_GROUP, "notificationchannels"): {"list", "watch"},
    (OUR_GROUP, "notificationchannels/status"): {"patch"},
    (OUR_GROUP, "maintenancewindows"): {"get", "list", "watch", "create"},
    (OUR_GROUP, "maintenancewindows/status"): {"patch"},
    ("", "events"): {"create"},
    ("", "secrets"): {"get"},
}
# The incidents' Kubernetes context (kubernetesContext.enabled, on by default): read only.
CONTEXT_RULES = {
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"get", "list", "watch"},
    ("apps", "replicasets"): {"get", "list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"},
    ("", "services"): {"get"},
    ("apps", "deployments"): {"get"},
    ("apps", "statefulsets"): {"get"},
}


def with_context(rules: dict[tuple[str, str], set[str]]) -> dict[tuple[str, str], set[str]]:
    granted = {key: set(verbs) for key, verbs in rules.items()}
    for key, verbs in CONTEXT_RULES.items():
        granted.setdefault(key, set()).update(verbs)
    return granted


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(helm_binary())


def render(helm: Helm, values: dict[str, Any]) -> list[dict[str, Any]]:
    return helm.template(release=RELEASE, namespace=NAMESPACE, values=values)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = of_kind(objects, "Deployment")
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = operator
    return result


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_the_charts_crds_are_the_operators_crds() -> None:
    """One source of truth: crds/ is copied into the chart (helm packages no symlinks)."""
    source = sorted((REPO / "crds").glob("*.yaml"))
    assert source
    for path in source:
        copy = CHART / "crds" / path.name
        assert copy.is_file(), f"missing {copy}: cp crds/*.yaml manifests/crds/"
        assert copy.read_bytes() == path.read_bytes(), f"{copy} drifted: cp {path} {copy}"
    chart_only = {p.name for p in (CHART / "crds").glob("*")} - {p.name for p in source}
    assert chart_only == {"kopf-peering.yaml"}


def test_the_peering_crds_are_kopfs() -> None:
    docs = list(yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text()))
    scopes = {doc["spec"]["names"]["kind"]: doc["spec"]["scope"] for doc in docs}
    assert scopes == {"ClusterKopfPeering": "Cluster", "KopfPeering": "Namespaced"}
    assert {doc["spec"]["group"] for doc in docs} == {"kopf.dev"}


@pytest.mark.parametrize("mode", [*MODES, "everything-on"])
def test_helm_lint_is_clean(helm: Helm, mode: str) -> None:
    values = EVERYTHING_ON if mode == "everything-on" else MODES[mode]
    out = helm.run("lint", "--strict", str(CHART), values=values)
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("mode", MODES)
def test_the_deployment_is_locked_down(helm: Helm, mode: str) -> None:
    objects = render(helm, MODES[mode])
    [deployment] = of_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(objects)
    assert deployment["spec"]["replicas"] == MODES[mode].get("replicas", 1)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == FULLNAME
    security = operator["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["args"] == ["run"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    mounts = {m["mountPath"] for m in operator["volumeMounts"]}
    assert {"/tmp", "/var/lib/downtime-operator/logs"} <= mounts


def test_secrets_are_referenced_never_created(helm: Helm) -> None:
    objects = render(helm, EVERYTHING_ON)
    assert of_kind(objects, "Secret") == []
    operator = container(objects)
    env = {e["name"]: e for e in operator["env"]}
    for name, secret in [
        ("DATABASE_URL", f"{FULLNAME}-database"),
        ("GRAFANA_LOKI_USERNAME", "loki"),
        ("GRAFANA_LOKI_API_KEY", "loki"),
        ("PROMETHEUS_USERNAME", "prometheus"),
        ("PROMETHEUS_PASSWORD", "prometheus"),
    ]:
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret
    assert "PROMETHEUS_BEARER_TOKEN" not in env  # its key was left empty: not read
    assert env["PROMETHEUS_URL"]["value"] == "http://prometheus-operated.monitoring:9090"
    assert env["PROMETHEUS_ORG_ID"]["value"] == "team-a"
    [deployment] = of_kind(objects, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"] == {"secretName": "api-keys"}
    [mount] = [m for m in operator["volumeMounts"] if m["name"] == "api-keys"]
    assert mount["readOnly"] is True
    assert env["ADMIN_API_KEYS_FILE"]["value"] == mount["mountPath"]


def test_the_log_encryption_keys_are_a_mounted_secret_the_operator_reads(
    helm: Helm, tmp_path: Path
) -> None:
    """``logEncryption.existingSecret``: mounted read-only, named by LOG_ENCRYPTION_KEYS_FILE;
    the operator's settings read such a directory (one file per key id) as its key ring."""
    objects = render(helm, EVERYTHING_ON)
    operator = container(objects)
    env = {e["name"]: e.get("value") for e in operator["env"]}
    [deployment] = of_kind(objects, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["log-keys"]["secret"] == {"secretName": "log-keys"}
    [mount] = [m for m in operator["volumeMounts"] if m["name"] == "log-keys"]
    assert mount["readOnly"] is True
    assert env["LOG_ENCRYPTION_KEYS_FILE"] == mount["mountPath"]
    assert env["LOG_ENCRYPTION_ACTIVE_KEY"] == "k2"

    secret = tmp_path / "log-keys"  # as the kubelet mounts a Secret
    secret.mkdir()
    (secret / "..data").mkdir()
    for key_id, raw in (("k1", bytes(32)), ("k2", bytes(range(32)))):
        (secret / key_id).write_text(base64.b64encode(raw).decode() + "\n")
    literal = {
        name: value
        for name, value in env.items()
        if value is not None and name != "ADMIN_API_KEYS_FILE"  # not mounted here
    }
    settings = load_settings(
        OperatorSettings,
        {**literal, "DATABASE_URL": "postgresql://u@h/db", "LOG_ENCRYPTION_KEYS_FILE": str(secret)},
    )
    assert list(settings.encryption.keys) == ["k1", "k2"]
    assert settings.encryption.active_key == "k2"

    plain = {e["name"] for e in container(render(helm, {}))["env"]}
    assert not {"LOG_ENCRYPTION_KEYS_FILE", "LOG_ENCRYPTION_ACTIVE_KEY"} & plain


def test_optional_objects_render_when_enabled(helm: Helm) -> None:
    kinds = {o["kind"] for o in render(helm, EVERYTHING_ON)}
    assert {"ServiceMonitor", "ConfigMap", "PersistentVolumeClaim", "PodDisruptionBudget"} <= kinds
    defaults = {o["kind"] for o in render(helm, {})}
    assert not defaults & {"ServiceMonitor", "ConfigMap", "PersistentVolumeClaim"}


def test_cluster_wide_mode_grants_exactly_what_the_operator_uses(helm: Helm) -> None:
    objects = render(helm, {})
    assert of_kind(objects, "Role") == [] and of_kind(objects, "RoleBinding") == []
    [role] = of_kind(objects, "ClusterRole")
    peering = {("kopf.dev", "clusterkopfpeerings"): {"list", "watch", "patch"}}
    assert rules_of(role) == with_context(EXPECTED_RULES | peering)
    [binding] = of_kind(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    [peer] = of_kind(objects, "ClusterKopfPeering")
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["PEERING_NAME"] == peer["metadata"]["name"]
    assert "WATCH_NAMESPACES" not in env


def test_without_kubernetes_context_nothing_is_read_for_it(helm: Helm) -> None:
    """``kubernetesContext.enabled: false`` turns the context off and its reads out of RBAC."""
    for mode in ({}, MODES["namespaced"]):
        objects = render(helm, {**mode, "kubernetesContext": {"enabled": False}})
        for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
            granted = rules_of(role)
            assert granted[("", "events")] == {"create"}
            assert not {key for key in CONTEXT_RULES if key != ("", "events")} & set(granted)
        env = {e["name"]: e.get("value") for e in container(objects)["env"]}
        assert env["KUBERNETES_CONTEXT_ENABLED"] == "false"
        settings = load_settings(
            OperatorSettings,
            {"KUBERNETES_CONTEXT_ENABLED": "false", "DATABASE_URL": "postgresql://u@h/db"},
        )
        assert settings.kubernetes.context_enabled is False


def test_namespaced_mode_grants_nothing_cluster_wide(helm: Helm) -> None:
    objects = render(helm, MODES["namespaced"])
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    peering = {("kopf.dev", "kopfpeerings"): {"list", "watch", "patch"}}
    for role in roles:
        assert rules_of(role) == with_context(EXPECTED_RULES | peering)
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    peers = of_kind(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peers) == ["team-a", "team-b"]
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["WATCH_NAMESPACES"] == "team-a,team-b"


def test_the_operator_understands_the_charts_environment(helm: Helm) -> None:
    """The literal env values of the Deployment, read by the operator's own settings loader."""
    objects = render(helm, {**MODES["namespaced"], "peering": {"lifetime": 15}})
    env = {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}
    settings = load_settings(OperatorSettings, {**env, "DATABASE_URL": "postgresql://u@h/db"})
    assert settings.api.port == 8080
    assert settings.kubernetes.watch_namespaces == ("team-a", "team-b")
    assert settings.kubernetes.peering_name == FULLNAME
    assert settings.kubernetes.peering_lifetime == 15
    assert settings.metrics.port == 9090
    assert settings.capture.log_files_dir == Path("/var/lib/downtime-operator/logs")
    assert settings.retention.days == 90
    assert settings.kubernetes.status_sync_period == timedelta(seconds=60)
    assert settings.loki.enabled is False
    assert settings.logging.as_json is False


def values_lines() -> Iterator[tuple[int, str, str]]:
    """(line number, line, previous line) of every key in values.yaml."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z][\w.-]*:", line):
            yield number + 1, line, lines[number - 1] if number else ""


def test_values_are_documented_line_by_line() -> None:
    keys = list(values_lines())
    assert len(keys) > 50
    undocumented = [
        f"{n}: {line}" for n, line, before in keys if not before.strip().startswith("#")
    ]
    assert undocumented == []


def test_the_dashboard_is_built_on_the_operators_metrics() -> None:
    dashboard = json.loads((CHART / "dashboards" / "downtime-operator.json").read_text())
    metrics = OperatorMetrics()
    metrics.watch_queues(OrderedRetryQueue(name="postgres"))
    exported = {
        sample_name
        for family in metrics.registry.collect()
        for sample_name in (
            family.name,
            f"{family.name}_total",
            f"{family.name}_bucket",
            f"{family.name}_count",
            f"{family.name}_sum",
        )
    }
    used: set[str] = set()
    titles = []
    for panel in dashboard["panels"]:
        titles.append(panel["title"])
        for target in panel["targets"]:
            used.update(re.findall(r"\bgatewayz_\w+", target["expr"]))
    assert used and used <= exported, used - exported
    wanted = ["incidents over time", "downtime by monitor", "check latency", "up / down"]
    assert all(any(w in t.lower() for t in titles) for w in wanted), titles
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))


def test_the_chart_packages_with_real_crd_files(helm: Helm, tmp_path: Path) -> None:
    helm.run("package", str(CHART), "--destination", str(tmp_path))
    [package] = tmp_path.glob("downtime-operator-*.tgz")
    with tarfile.open(package) as archive:
        members = {m.name: m for m in archive.getmembers()}
        for name in (
            "healthmonitors.yaml",
            "downtimeincidents.yaml",
            "maintenancewindows.yaml",
            "kopf-peering.yaml",
        ):
            member = members[f"downtime-operator/crds/{name}"]
            assert member.isfile()
        assert "downtime-operator/dashboards/downtime-operator.json" in members


SHARDED = {"sharding": {"shards": 3}}


def test_shards_run_as_a_statefulset_of_the_same_pod(helm: Helm) -> None:
    """``sharding.shards: 3``: one pod per shard, each told its index by Kubernetes."""
    sharded = render(helm, SHARDED)
    assert not of_kind(sharded, "Deployment")
    [statefulset] = of_kind(sharded, "StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    [operator] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in operator["env"]}
    assert env["SHARD_COUNT"]["value"] == "3"
    index_from = env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index_from == "metadata.labels['apps.kubernetes.io/pod-index']"
    # Apart from the shard's variables, the very pod the Deployment runs.
    [deployment] = of_kind(render(helm, {}), "Deployment")
    pod = dict(spec["template"]["spec"])
    operator = {
        **operator,
        "env": [e for e in operator["env"] if not e["name"].startswith("SHARD")],
    }
    assert {**pod, "containers": [operator]} == deployment["spec"]["template"]["spec"]
    peerings = [o["metadata"]["name"] for o in of_kind(sharded, "ClusterKopfPeering")]
    assert peerings == [f"{FULLNAME}-shard-{i}" for i in range(3)]


def test_a_shards_environment_gives_the_operator_its_share(helm: Helm) -> None:
    [statefulset] = of_kind(render(helm, SHARDED), "StatefulSet")
    [operator] = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in operator["env"] if "value" in e}
    settings = load_settings(
        OperatorSettings, {**env, "SHARD_INDEX": "2", "DATABASE_URL": "postgresql://u@h/db"}
    )
    shard = settings.kubernetes.shard
    assert shard is not None and (shard.index, shard.count) == (2, 3)
    assert shard.peering_name(env["PEERING_NAME"]) == f"{FULLNAME}-shard-2"


def test_replicas_per_shard_are_refused_naming_the_value(helm: Helm) -> None:
    with pytest.raises(AssertionError, match=r"replicas: must be 1 when sharding\.shards"):
        render(helm, {**SHARDED, "replicas": 2})
