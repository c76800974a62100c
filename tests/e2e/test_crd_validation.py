"""The CRDs against a real kube-apiserver: invalid specs are refused at ``kubectl apply`` time
with a message naming the field, defaults are filled in, printer columns, categories and
DowntimeIncident spec immutability work (docs/crds.md)."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import pytest

from .controlplane import ControlPlane

API_VERSION = "monitoring.gatewayz.ai/v1"
GROUP_PATH = "/apis/monitoring.gatewayz.ai/v1"
VALID_URL = "http://127.0.0.1:9/healthz"


def monitor(name: str = "web", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"url": VALID_URL}
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "HealthMonitor",
        "metadata": {"name": name},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def incident(name: str, monitor_name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DowntimeIncident",
        "metadata": {"name": name, "labels": {"monitoring.gatewayz.ai/monitor": monitor_name}},
        "spec": {
            "incidentId": str(uuid.uuid4()),
            "monitorRef": {"name": monitor_name, "namespace": namespace},
            "healthEndpoint": VALID_URL,
            "environment": "production",
            "startedAt": "2026-01-01T00:00:00Z",
            "detectedAt": "2026-01-01T00:00:30Z",
        },
    }


# (test id, spec fields to set (None removes), text every error output must contain)
INVALID_MONITORS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("missing-url", {"url": None}, ["spec.url", "Required value"]),
    ("ftp-url", {"url": "ftp://example.com/health"}, ["spec.url"]),
    ("url-with-space", {"url": "http://exa mple.com/"}, ["spec.url"]),
    ("url-too-long", {"url": "http://x.example/" + "a" * 2048}, ["spec.url"]),
    ("interval-0s", {"interval": "0s"}, ["spec.interval", "at least 1s"]),
    ("interval-500ms", {"interval": "500ms", "timeout": "100ms"}, ["spec.interval", "1s"]),
    ("interval-not-duration", {"interval": "10 seconds"}, ["spec.interval"]),
    (
        "timeout-longer-than-interval",
        {"interval": "10s", "timeout": "30s"},
        ["spec.timeout", "spec.timeout must be shorter than spec.interval"],
    ),
    (
        "timeout-equals-interval",
        {"interval": "1m", "timeout": "60s"},
        ["spec.timeout", "must be shorter than spec.interval"],
    ),
    ("timeout-not-duration", {"timeout": "5"}, ["spec.timeout"]),
    ("retry-interval-500ms", {"retryInterval": "500ms"}, ["spec.retryInterval", "1s"]),
    ("failure-threshold-0", {"failureThreshold": 0}, ["spec.failureThreshold"]),
    ("failure-threshold-101", {"failureThreshold": 101}, ["spec.failureThreshold"]),
    ("failure-threshold-string", {"failureThreshold": "three"}, ["spec.failureThreshold"]),
    ("success-threshold-0", {"successThreshold": 0}, ["spec.successThreshold"]),
    ("unknown-severity", {"severity": "urgent"}, ["spec.severity"]),
    ("method-delete", {"method": "DELETE"}, ["spec.method"]),
    ("expect-status-600", {"expect": {"status": ["600"]}}, ["spec.expect.status[0]"]),
    ("expect-status-abc", {"expect": {"status": ["abc"]}}, ["spec.expect.status[0]"]),
    ("expect-status-6xx", {"expect": {"status": ["2xx", "6xx"]}}, ["spec.expect.status[1]"]),
    ("expect-status-empty", {"expect": {"status": []}}, ["spec.expect.status"]),
    ("expect-max-latency", {"expect": {"maxLatency": "fast"}}, ["spec.expect.maxLatency"]),
    (
        "escalation-unknown-severity",
        {"escalation": [{"after": "10m", "severity": "urgent"}]},
        ["spec.escalation[0].severity"],
    ),
    (
        "escalation-missing-after",
        {"escalation": [{"severity": "critical"}]},
        ["spec.escalation[0].after"],
    ),
    ("max-lines-negative", {"logCapture": {"maxLines": -1}}, ["spec.logCapture.maxLines"]),
    ("max-lines-10001", {"logCapture": {"maxLines": 10001}}, ["spec.logCapture.maxLines"]),
    ("storage-s3", {"logCapture": {"storage": "s3"}}, ["spec.logCapture.storage"]),
    ("log-before-not-duration", {"logCapture": {"before": "5"}}, ["spec.logCapture.before"]),
    ("environment-spaces", {"environment": "Prod Env"}, ["spec.environment"]),
    ("paused-string", {"paused": "yes"}, ["spec.paused"]),
    (
        "headers-from-without-secret",
        {"headersFrom": [{"name": "Authorization"}]},
        ["spec.headersFrom[0].secretKeyRef"],
    ),
    ("headers-not-strings", {"headers": {"X-Retries": 3}}, ["spec.headers.X-Retries"]),
    ("unknown-field-typo", {"intervall": "30s"}, ["spec.intervall"]),
    (
        "target-ref-pod",
        {"targetRef": {"kind": "Pod", "name": "api"}},
        ["spec.targetRef.kind", "Unsupported value"],
    ),
    (
        "target-ref-bad-name",
        {"targetRef": {"kind": "Service", "name": "API_v1"}},
        ["spec.targetRef.name"],
    ),
    ("target-ref-without-name", {"targetRef": {"kind": "Deployment"}}, ["spec.targetRef.name"]),
    ("metrics-without-query", {"metrics": [{"name": "queue"}]}, ["spec.metrics[0].query"]),
    (
        "metrics-bad-name",
        {"metrics": [{"name": "queue depth", "query": "up"}]},
        ["spec.metrics[0].name"],
    ),
    (
        "metrics-repeated-name",
        {"metrics": [{"name": "q", "query": "up"}, {"name": "q", "query": "down"}]},
        ["spec.metrics[1]", "Duplicate value"],
    ),
    (
        "metrics-too-many",
        {"metrics": [{"name": f"q{n}", "query": "up"} for n in range(11)]},
        ["spec.metrics", "must have at most 10 items"],
    ),
    ("playbook-too-long", {"playbook": "x" * 2001}, ["spec.playbook", "Too long"]),
    ("playbook-empty", {"playbook": ""}, ["spec.playbook"]),
    ("playbook-not-text", {"playbook": {"url": "https://wiki"}}, ["spec.playbook"]),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [pytest.param(spec, expected, id=case_id) for case_id, spec, expected in INVALID_MONITORS],
)
def test_invalid_monitor_is_refused_naming_the_field(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], expected: list[str]
) -> None:
    proc = control_plane.apply(monitor(**spec), namespace=namespace, check=False)

    assert proc.returncode != 0, proc.stdout
    for text in expected:
        assert text in proc.stderr, proc.stderr
    stored = control_plane.api("GET", f"{GROUP_PATH}/namespaces/{namespace}/healthmonitors")
    assert stored["items"] == []


def test_minimal_monitor_gets_defaults(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(monitor("minimal"), namespace=namespace)

    spec = control_plane.kubectl_json("get", "healthmonitor", "minimal", "-n", namespace)["spec"]
    assert spec == {
        "url": VALID_URL,
        "method": "GET",
        "interval": "60s",
        "timeout": "10s",
        "retryInterval": "10s",
        "expect": {"status": ["2xx"]},
        "failureThreshold": 3,
        "successThreshold": 1,
        "severity": "high",
        "environment": "production",
        "paused": False,
        "logCapture": {"before": "5m", "after": "5m", "maxLines": 10000, "storage": "auto"},
    }


def test_full_monitor_is_accepted_as_written(control_plane: ControlPlane, namespace: str) -> None:
    spec: dict[str, Any] = {
        "method": "POST",
        "headers": {"X-Probe": "downtime-operator"},
        "headersFrom": [
            {"name": "Authorization", "secretKeyRef": {"name": "api-token", "key": "header"}}
        ],
        "body": '{"ping": true}',
        "interval": "1m30s",
        "timeout": "2.5s",
        "retryInterval": "1s",
        "expect": {"status": ["200", "3xx"], "bodyContains": "ok", "maxLatency": "750ms"},
        "failureThreshold": 100,
        "successThreshold": 2,
        "severity": "critical",
        "escalation": [{"after": "15m", "severity": "critical"}],
        "environment": "staging-eu.1",
        "paused": True,
        "logCapture": {
            "enabled": True,
            "query": '{app="gatewayz-api"}',
            "before": "1m",
            "after": "2h",
            "maxLines": 1,
            "storage": "file",
        },
        "notifications": [{"channel": "oncall"}],
        "playbook": "https://runbooks.example.com/api\n" + "p" * 1960,
    }
    control_plane.apply(monitor("full", **spec), namespace=namespace)

    stored = control_plane.kubectl_json("get", "hmon", "full", "-n", namespace)["spec"]
    assert stored == {"url": VALID_URL, **spec}


def _header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_printer_columns_and_status_subresource(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(monitor("web"), namespace=namespace)
    path = f"{GROUP_PATH}/namespaces/{namespace}/healthmonitors/web/status"
    control_plane.api(
        "PATCH",
        path,
        {
            "status": {
                "state": "Down",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "lastCheck": {
                    "time": "2026-01-01T00:00:30Z",
                    "ok": False,
                    "statusCode": 503,
                    "latencyMs": 12.5,
                    "error": "unexpected status 503",
                },
                "consecutiveFailures": 3,
                "currentIncident": "web-20260101-000000",
                "uptime": {"h24": 99.0, "d7": 99.9, "d30": 99.95},
                "slo": {
                    "availability": 99.95,
                    "budgetRemaining": 50.0,
                    "budgetRemainingSeconds": 1296.0,
                    "burnRates": {"h1": 0.0, "h6": 0.0, "d3": 1.5},
                },
                "observedGeneration": 1,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Checking",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
        content_type="application/merge-patch+json",
    )

    plain = control_plane.kubectl("get", "hm", "-n", namespace).stdout
    assert _header(plain) == [
        "NAME", "URL", "STATE", "LATENCY", "UPTIME-30D", "BUDGET", "INCIDENT", "AGE",
    ]  # fmt: skip
    row = plain.splitlines()[1].split()
    assert row[:7] == ["web", VALID_URL, "Down", "12.5", "99.95", "50", "web-20260101-000000"]

    wide = control_plane.kubectl("get", "healthmonitors", "-o", "wide", "-n", namespace).stdout
    header = _header(wide)
    for column in ("NAME", "URL", "STATE", "LATENCY", "UPTIME-30D", "INCIDENT", "AGE"):
        assert column in header, wide
    assert header.index("URL") < header.index("STATE") < header.index("AGE")

    # The status subresource is the only way to write status; spec writes ignore it.
    control_plane.apply({**monitor("web"), "status": {"state": "Up"}}, namespace=namespace)
    got = control_plane.kubectl_json("get", "hm", "web", "-n", namespace)
    assert got["status"]["state"] == "Down"
    assert got["metadata"]["generation"] == 1

    refused = control_plane.kubectl(
        "patch", "hm", "web", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", '{"status": {"state": "Flapping"}}',
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "status.state" in refused.stderr


def test_status_patches_are_in_the_audit_log(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(monitor("audited"), namespace=namespace)
    for state in ("Up", "Down", "Up"):
        control_plane.kubectl(
            "patch", "hm", "audited", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", f'{{"status": {{"state": "{state}"}}}}',
        )  # fmt: skip

    deadline = time.monotonic() + 5
    while True:
        patches = control_plane.audit_events(
            resource="healthmonitors", subresource="status", verb="patch", namespace=namespace
        )
        if len(patches) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(patches) == 3
    assert {e["objectRef"]["name"] for e in patches} == {"audited"}
    assert {e["user"]["username"] for e in patches} == {"admin"}
    creates = control_plane.audit_events(
        resource="healthmonitors", subresource="", namespace=namespace, verb="create"
    )
    assert len(creates) == 1


def test_downtime_category_lists_both_kinds(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(monitor("api"), namespace=namespace)
    control_plane.apply(incident("api-20260101-000000", "api", namespace), namespace=namespace)

    listed = control_plane.kubectl("get", "downtime", "-n", namespace, "-o", "name").stdout
    assert sorted(listed.split()) == [
        "downtimeincident.monitoring.gatewayz.ai/api-20260101-000000",
        "healthmonitor.monitoring.gatewayz.ai/api",
    ]


def test_incident_columns_and_immutable_spec(control_plane: ControlPlane, namespace: str) -> None:
    body = incident("web-20260101-000000", "web", namespace)
    control_plane.apply(body, namespace=namespace)
    control_plane.api(
        "PATCH",
        f"{GROUP_PATH}/namespaces/{namespace}/downtimeincidents/web-20260101-000000/status",
        {
            "status": {
                "status": "resolved",
                "severity": "high",
                "endedAt": "2026-01-01T00:05:00Z",
                "durationSeconds": 300,
                "httpStatusCode": 503,
                "errorMessage": "unexpected-status-503",
                "failedChecks": 7,
                "logs": {
                    "state": "captured",
                    "lines": 42,
                    "storage": "database",
                    "truncated": False,
                    "window": {"start": "2025-12-31T23:55:00Z", "end": "2026-01-01T00:10:00Z"},
                },
                "analysis": {
                    "errorCount": 5,
                    "warningCount": 1,
                    "topErrors": [{"message": "upstream timeout", "count": 4}],
                },
                "notes": "",
                "playbook": "https://runbooks.example.com/web",
            }
        },
        content_type="application/merge-patch+json",
    )

    out = control_plane.kubectl("get", "dti", "-n", namespace).stdout
    assert _header(out) == [
        "NAME", "MONITOR", "STATUS", "SEVERITY", "STARTED", "DURATION", "ERROR", "LOGS", "CAUSE",
        "AGE",
    ]  # fmt: skip
    row = out.splitlines()[1].split()
    assert row[:4] == ["web-20260101-000000", "web", "resolved", "high"]
    assert row[5:8] == ["300", "unexpected-status-503", "captured"]  # no cause: CAUSE is blank

    changed = copy.deepcopy(body)
    changed["spec"]["environment"] = "staging"
    refused = control_plane.apply(changed, namespace=namespace, check=False)
    assert refused.returncode != 0
    assert "spec" in refused.stderr
    assert "spec is immutable" in refused.stderr

    patched = control_plane.kubectl(
        "patch", "downtimeincident", "web-20260101-000000", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"startedAt": "2026-01-01T00:01:00Z"}}',
        check=False,
    )  # fmt: skip
    assert patched.returncode != 0
    assert "spec is immutable" in patched.stderr
    stored = control_plane.kubectl_json("get", "dti", "web-20260101-000000", "-n", namespace)
    assert stored["spec"] == body["spec"]
    assert stored["status"]["playbook"] == "https://runbooks.example.com/web"  # not pruned


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("incidentId", "not-a-uuid"),
        ("startedAt", "yesterday"),
        ("monitorRef", {"namespace": "default"}),
    ],
)
def test_invalid_incident_is_refused(
    control_plane: ControlPlane, namespace: str, field: str, value: Any
) -> None:
    body = incident("bad", "web", namespace)
    body["spec"][field] = value

    proc = control_plane.apply(body, namespace=namespace, check=False)

    assert proc.returncode != 0
    assert f"spec.{field}" in proc.stderr, proc.stderr
