"""The post-mortem report as a pure function: its Markdown pinned by a golden file, its JSON
sections, and what it says when nothing was recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from downtime_operator.api.routes import OPERATIONS
from downtime_operator.domain import report
from downtime_operator.domain.kube_context import (
    ContextStage,
    NamespaceObjects,
    TargetKind,
    TargetObject,
    TargetRef,
    context_snapshot_json,
    take_snapshot,
)
from downtime_operator.domain.report import (
    AuditedCall,
    Delivery,
    IncidentFacts,
    build_report,
)
from downtime_operator.domain.report_markdown import render_markdown

GOLDEN = Path(__file__).parent / "golden" / "incident_report.md"
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
INCIDENT_ID = uuid.UUID("6f1c1e0e-0000-4000-8000-000000000013")


def _checkout_context(stage: ContextStage, *, at: datetime, ready: bool) -> dict[str, Any]:
    """The checkout Deployment rolled out to revision 14 at 09:55, its pods failing."""
    replicasets = [
        {
            "metadata": {
                "name": f"checkout-{revision}",
                "creationTimestamp": created,
                "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                "ownerReferences": [{"kind": "Deployment", "name": "checkout"}],
            }
        }
        for revision, created in ((13, "2026-11-20T08:00:00Z"), (14, "2026-11-29T09:55:00Z"))
    ]
    pods = [
        {
            "metadata": {
                "name": f"checkout-14-{index}",
                "labels": {"app": "checkout"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "checkout-14"}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [{"restartCount": 2}],
            },
        }
        for index in range(3)
    ]
    return context_snapshot_json(
        take_snapshot(
            stage=stage,
            target=TargetRef(kind=TargetKind.SERVICE, name="checkout", namespace="shop"),
            found=TargetObject(body={"spec": {"selector": {"app": "checkout"}}}),
            objects=NamespaceObjects(pods=pods, replicasets=replicasets),
            window_start=T0 - timedelta(minutes=5),
            window_end=at,
            first_failure_at=T0,
            taken_at=at,
        )
    )


PROMETHEUS = {
    "captured_at": "2026-11-29T10:17:30Z",
    "window_start": "2026-11-29T09:55:00.000000000Z",
    "window_end": "2026-11-29T10:17:30.000000000Z",
    "step_seconds": 5,
    "final": True,
    "error": None,
    "queries": [
        {
            "name": "db_pool_in_use",
            "query": 'max(db_pool_connections_in_use{app="checkout"})',
            "series": [
                {
                    "labels": {},
                    "values": [[1764410100, "12"], [1764410400, "50"], [1764411450, "9"]],
                }
            ],
            "truncated": False,
            "error": None,
        },
        {
            "name": "errors | by pod",
            "query": "sum by (pod) (rate(http_requests_total{code=~'5..'}[1m]))",
            "series": [],
            "truncated": False,
            "error": "HTTP 422 execution: query timed out",
        },
    ],
}


KUBE_CONTEXT = {
    "detection": _checkout_context(
        ContextStage.DETECTION, at=T0 + timedelta(seconds=20), ready=False
    ),
    "resolution": _checkout_context(
        ContextStage.RESOLUTION, at=T0 + timedelta(minutes=12, seconds=30), ready=True
    ),
}


def details(**changes: Any) -> dict[str, Any]:
    """An incident record as ``incident_details`` gives it (every column)."""
    row: dict[str, Any] = {
        "incident_id": INCIDENT_ID,
        "monitor_namespace": "shop",
        "monitor_name": "checkout",
        "k8s_name": "checkout-20261129-100000",
        "health_endpoint": "https://checkout.shop.svc/health",
        "environment": "production",
        "severity": "critical",
        "status": "resolved",
        "started_at": T0,
        "detected_at": T0 + timedelta(seconds=20),
        "ended_at": T0 + timedelta(minutes=12, seconds=30),
        "duration_seconds": 750.0,
        "failed_checks": 41,
        "error_message": "HTTP 503 | upstream connect error\nor disconnect",
        "http_status_code": 503,
        "response_body": "<h1>503</h1>",
        "notes": "[2026-11-29T10:05:00Z alice] paged the database team",
        "root_cause": "Connection pool exhausted after the 09:55 deploy (pool size 5, was 50).",
        "logs_capture_status": "captured",
        "logs_count": 1234,
        "logs_truncated": False,
        "logs_capture_due_at": None,
        "logs_capture_error": None,
        "logs_file_path": None,
        "logs_captured": None,
        "log_analysis": {
            "total_logs": 1234,
            "error_count": 45,
            "warning_count": 12,
            "error_types": {"TimeoutError": 15, "ConnectionError": 20},
            "top_errors": [["Database connection timeout", 15], ["Redis | connection failed", 10]],
        },
        "metrics_snapshot": {
            "latency_ms": {"p50": 41.0, "p95": 180.5},
            "checks_before": [{"at": "2026-11-29T09:59:40Z", "ok": True, "status": 200}],
            "prometheus": PROMETHEUS,
        },
        "server_info": None,
        "kube_context": KUBE_CONTEXT,
        "playbook": "https://runbooks.example.com/shop/checkout-down",
        "severity_changes": [
            {"at": "2026-11-29T10:03:00+00:00", "from": "high", "to": "critical"},
            {"at": "2026-11-29T10:01:00+00:00", "from": "medium", "to": "high"},
        ],
        "created_at": T0,
        "updated_at": T0,
    }
    row.update(changes)
    return row


def call(
    minutes: float, actor: str, action: str, outcome: str = "success", **asked: str
) -> AuditedCall:
    return AuditedCall(
        at=T0 + timedelta(minutes=minutes),
        actor=actor,
        action=action,
        parameters=asked,
        outcome=outcome,
    )


CALLS = [
    call(2, "alice", report.ACKNOWLEDGE, notes="looking"),
    call(3, "mallory", report.ACKNOWLEDGE, outcome="unauthorized"),
    call(5, "alice", report.ANNOTATE, notes="paged the database team"),
    call(12.5, "bob", report.RESOLVE),
    call(40, "bob", report.ANNOTATE, root_cause="Connection pool exhausted"),
]
DELIVERIES = [
    Delivery(channel="shop/oncall", event="opened", state="sent", at=T0 + timedelta(seconds=21)),
    Delivery(channel="shop/email", event="opened", state="failed", at=T0 + timedelta(minutes=1)),
    Delivery(channel="shop/slack", event="resolved", state="pending", at=T0),
]


def the_report(**changes: Any) -> report.IncidentReport:
    return build_report(
        facts=IncidentFacts.from_details(details(**changes)), calls=CALLS, deliveries=DELIVERIES
    )


def test_the_markdown_of_a_fixed_incident_is_pinned() -> None:
    # To accept a deliberate change: write render_markdown(the_report()) to GOLDEN and review it.
    assert render_markdown(the_report()) == GOLDEN.read_text(encoding="utf-8")


def test_the_json_has_every_section() -> None:
    out = the_report().to_dict()
    assert list(out) == [
        "incident_id",
        "summary",
        "impact",
        "timeline",
        "evidence",
        "playbook",
        "root_cause",
        "notes",
    ]
    assert out["summary"] == {
        "monitor": "shop/checkout",
        "incident": "checkout-20261129-100000",
        "endpoint": "https://checkout.shop.svc/health",
        "environment": "production",
        "severity": "critical",
        "status": "resolved",
    }
    assert out["impact"]["duration_seconds"] == 750.0 and out["impact"]["failed_checks"] == 41
    assert out["impact"]["severity_changes"] == [
        {"at": T0 + timedelta(minutes=1), "from": "medium", "to": "high"},
        {"at": T0 + timedelta(minutes=3), "from": "high", "to": "critical"},
    ]
    assert [e["event"] for e in out["timeline"]] == [
        "First failed check",
        "Detected: failure threshold reached, incident opened",
        "Notification opened sent to shop/oncall",
        "Escalated from medium to high",
        "Notification opened to shop/email failed",
        "Acknowledged by alice",
        "Escalated from high to critical",
        "Note added by alice",
        "Resolved by bob after 12m 30s",
        "Root cause set by bob",
    ]
    evidence = out["evidence"]
    assert evidence["server_info"] is None
    assert evidence["metrics_snapshot"]["latency_ms"] == {"p50": 41.0, "p95": 180.5}
    assert evidence["log_analysis"]["top_errors"][0] == {
        "message": "Database connection timeout",
        "count": 15,
    }
    assert evidence["log_capture"]["summary"] == "captured, 1234 lines"
    context = evidence["kubernetes_context"]
    assert context["top_cause"] == (
        "Deployment checkout rolled out to revision 14, 5 min before the first failed check"
    )
    assert [c["rule"] for c in context["probable_causes"]] == ["rollout", "noReadyPods"]
    assert set(context["snapshots"]) == {"detection", "resolution"}
    assert out["playbook"] == "https://runbooks.example.com/shop/checkout-down"
    assert out["root_cause"].startswith("Connection pool exhausted")


def test_what_was_not_recorded_says_so() -> None:
    ongoing = build_report(
        facts=IncidentFacts.from_details(
            details(
                status="ongoing",
                ended_at=None,
                duration_seconds=None,
                notes=None,
                root_cause=None,
                metrics_snapshot=None,
                kube_context=None,
                log_analysis=None,
                logs_capture_status="pending",
                logs_count=None,
                logs_capture_due_at=T0 + timedelta(seconds=20),
                monitor_namespace=None,
                monitor_name=None,
                k8s_name=None,
                playbook=None,
                severity_changes=None,
            )
        ),
        calls=[],
        deliveries=[],
    )
    text = render_markdown(ongoing)
    assert f"# Incident report: {INCIDENT_ID}" in text
    assert "- Monitor: none (recorded before the operator)" in text
    assert "- Duration: ongoing since 2026-11-29 10:00:00 UTC" in text
    assert "- Severity changes: none" in text
    assert "### Metrics snapshot\n\nnot recorded" in text
    assert "### Server info\n\nnot recorded" in text
    assert "### Kubernetes context and probable causes\n\nnot recorded" in text
    assert "Log capture: pending, due 2026-11-29 10:00:20 UTC." in text
    assert "Log analysis: not recorded." in text
    assert "## Playbook\n\nnone" in text
    assert "## Root cause\n\nnot recorded" in text
    assert text.endswith("## Notes\n\nnone\n")
    assert [e.event for e in ongoing.timeline][-1] == "Log capture due"
    assert ongoing.to_dict()["summary"]["monitor"] is None


@pytest.mark.parametrize(
    ("state", "error", "truncated", "said"),
    [
        (None, None, None, "not planned"),
        ("captured", None, True, "captured, 1234 lines, truncated at the line limit"),
        ("failed", "parse error at line 1", None, "failed: parse error at line 1"),
        ("disabled", None, None, "disabled"),
    ],
)
def test_the_capture_state_in_words(
    state: str | None, error: str | None, truncated: bool | None, said: str
) -> None:
    found = the_report(
        logs_capture_status=state, logs_capture_error=error, logs_truncated=truncated
    )
    assert found.log_capture.startswith(said)


def test_recorded_text_cannot_break_the_layout() -> None:
    text = render_markdown(
        the_report(root_cause="see ```code``` here", metrics_snapshot={"note": "````"})
    )
    assert "`````json\n" in text and "````text\nsee ```code``` here\n````" in text
    assert "| 10 | Redis \\| connection failed |" in text


@pytest.mark.parametrize(
    ("playbook", "shown"),
    [
        ("https://wiki.example/checkout", "<https://wiki.example/checkout>"),
        ("Page #db-oncall\n# then restart", "```text\nPage #db-oncall\n# then restart\n```"),
        ("https://wiki.example/a>b", "```text\nhttps://wiki.example/a>b\n```"),
    ],
)
def test_a_playbook_is_a_link_or_text(playbook: str, shown: str) -> None:
    assert f"## Playbook\n\n{shown}\n\n## Root cause" in render_markdown(
        the_report(playbook=playbook)
    )


def test_the_timeline_knows_the_audited_actions_by_their_routes() -> None:
    audited = {op.operation_id for op in OPERATIONS if op.method in ("POST", "PATCH")}
    assert {report.ACKNOWLEDGE, report.RESOLVE, report.CAPTURE_LOGS, report.ANNOTATE} <= audited
