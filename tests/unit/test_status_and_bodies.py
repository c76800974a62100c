from datetime import UTC, datetime, timedelta
from uuid import UUID

from downtime_operator.adapters.kube.bodies import event_body, incident_body, incident_status
from downtime_operator.adapters.kube.incident_from_cr import incident_from_resource
from downtime_operator.domain.evidence import Certificate, ServerInfo
from downtime_operator.domain.models import (
    CheckResult,
    Incident,
    IncidentStatus,
    MonitorRef,
    MonitorState,
    Severity,
)
from downtime_operator.domain.slo import Timeline
from downtime_operator.domain.statistics import clipped_seconds
from downtime_operator.domain.status import (
    StatusFacts,
    StatusSync,
    uptime_percent,
    uptime_windows,
)

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
REF = MonitorRef(namespace="shop", name="api")
UP = StatusFacts(
    state=MonitorState.UP, consecutive_failures=0, current_incident=None, observed_generation=1
)


def ok(at: datetime) -> CheckResult:
    return CheckResult(at=at, ok=True, status_code=200, latency_ms=4.2)


def test_status_is_written_on_change_and_last_check_once_per_period() -> None:
    sync = StatusSync(sync_period=timedelta(seconds=60))
    first = sync.patch_for(UP, last_check=ok(T0), now=T0)
    assert first is not None and first.urgent
    assert first.body["state"] == "Up" and first.body["lastCheck"]["ok"] is True
    writes = [
        sync.patch_for(UP, last_check=ok(T0 + timedelta(seconds=s)), now=T0 + timedelta(seconds=s))
        for s in range(1, 121)
    ]
    assert [w.urgent for w in writes if w is not None] == [False, False]  # refreshes
    down = StatusFacts(
        state=MonitorState.DOWN,
        consecutive_failures=2,
        current_incident="api-x",
        observed_generation=1,
    )
    patch = sync.patch_for(down, last_check=None, now=T0 + timedelta(seconds=121))
    assert patch is not None and patch.urgent
    assert patch.body["state"] == "Down" and patch.body["currentIncident"] == "api-x"
    assert patch.body["lastTransitionTime"].startswith("2026-05-01T12:02:01")
    counting = StatusFacts(
        state=MonitorState.DOWN,
        consecutive_failures=3,
        current_incident="api-x",
        observed_generation=1,
    )
    more = sync.patch_for(counting, last_check=None, now=T0 + timedelta(seconds=131))
    assert more is not None and not more.urgent  # written, but within the budget


def test_forget_resends_everything() -> None:
    sync = StatusSync(sync_period=timedelta(seconds=60))
    assert sync.patch_for(UP, last_check=ok(T0), now=T0) is not None
    sync.forget()
    assert sync.patch_for(UP, last_check=ok(T0), now=T0) is not None


def test_uptime_windows_clip_each_incident_to_each_window() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    day = timedelta(days=1)
    spans = [
        (now - 20 * day, now - 20 * day + timedelta(hours=24)),  # only in d30
        (now - 3 * day - timedelta(hours=1), now - 3 * day + timedelta(hours=1)),  # d7, d30
        (now - timedelta(minutes=864 / 60), None),  # open: 864 s in every window
    ]
    timeline = Timeline(incidents=spans, maintenance=[], created_at=None, now=now)
    assert uptime_windows(timeline) == {
        "h24": 99.0,
        "d7": uptime_percent(downtime_seconds=7200 + 864, window=7 * day),
        "d30": uptime_percent(downtime_seconds=86400 + 7200 + 864, window=30 * day),
    }
    assert clipped_seconds((now + day, None), since=now - day, until=now) == 0.0


def test_uptime_leaves_maintenance_out_of_the_window() -> None:
    """Down for the last hour, of which the first half was maintenance (issue 15)."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    timeline = Timeline(
        incidents=[(now - timedelta(hours=1), None)],
        maintenance=[(now - timedelta(hours=1), now - timedelta(minutes=30))],
        created_at=None,
        now=now,
    )
    assert uptime_windows(timeline)["h24"] == uptime_percent(
        downtime_seconds=1800, window=timedelta(hours=23, minutes=30)
    )


def test_uptime_percent() -> None:
    assert uptime_percent(downtime_seconds=864, window=timedelta(days=1)) == 99.0
    assert uptime_percent(downtime_seconds=10**9, window=timedelta(days=1)) == 0.0


def incident() -> Incident:
    return Incident(
        incident_id=UUID("12345678-1234-5678-1234-567812345678"),
        monitor=REF,
        k8s_name="api-20260501-120000",
        health_endpoint="http://api/health",
        environment="production",
        started_at=T0,
        detected_at=T0 + timedelta(seconds=20),
        severity=Severity.HIGH,
        error_message="HTTP 503",
        http_status_code=503,
        failed_checks=3,
    )


def test_incident_body_has_label_owner_and_immutable_facts() -> None:
    body = incident_body(incident(), monitor_uid="uid-1")
    assert body["metadata"]["labels"] == {"monitoring.gatewayz.ai/monitor": "api"}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert body["spec"]["startedAt"] == "2026-05-01T12:00:00.000000Z"
    assert body["spec"]["incidentId"] == "12345678-1234-5678-1234-567812345678"
    assert "ownerReferences" not in incident_body(incident(), monitor_uid=None)["metadata"]


def test_incident_status_drops_unknowns_and_round_trips() -> None:
    resolved = incident()
    resolved.status = IncidentStatus.RESOLVED
    resolved.ended_at = T0 + timedelta(seconds=90)
    resolved.duration_seconds = 90.0
    status = incident_status(resolved)
    assert status["status"] == "resolved" and status["durationSeconds"] == 90.0
    assert "notes" not in status
    back = incident_from_resource({**incident_body(resolved, monitor_uid=None), "status": status})
    assert back == resolved


def test_the_root_cause_and_the_playbook_are_shown_and_read_back() -> None:
    annotated = incident()
    annotated.root_cause = "expired certificate"
    annotated.playbook = "https://runbooks.example/api"
    status = incident_status(annotated)
    assert status["rootCause"] == "expired certificate"
    assert status["playbook"] == "https://runbooks.example/api"
    back = incident_from_resource({**incident_body(annotated, monitor_uid=None), "status": status})
    assert back == annotated


def test_the_cr_shows_a_summary_of_the_server_info() -> None:
    described = incident()
    described.server_info = ServerInfo(
        addresses=tuple(f"10.0.0.{i}" for i in range(12)),
        http_version="HTTP/1.1",
        certificate=Certificate(subject="CN=a", issuer="CN=b", not_after=T0 + timedelta(days=9)),
        headers={"Server": "nginx"},
        operator_instance="op-0",
    )
    assert incident_status(described)["serverInfo"] == {
        "addresses": [f"10.0.0.{i}" for i in range(8)],
        "httpVersion": "HTTP/1.1",
        "certificateNotAfter": "2026-05-10T12:00:00.000000Z",
    }
    described.server_info = ServerInfo(problems=("address lookup failed",))
    assert "serverInfo" not in incident_status(described)  # nothing worth a field
    assert "serverInfo" not in incident_status(incident())


def test_event_body_names_the_monitor() -> None:
    body = event_body(
        monitor=REF, monitor_uid="u", reason="IncidentOpened", message="m", warning=True, now=T0
    )
    assert body["involvedObject"]["kind"] == "HealthMonitor"
    assert body["type"] == "Warning"
    assert body["metadata"]["generateName"] == "api."
