"""The operator as a process against the real control plane, real Postgres and real targets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import Env, eventually, monitor, parse_time, resolved_rows
from tests.support.target import TargetServer


async def test_healthy_monitor_reaches_up_and_opens_nothing(env: Env, target: TargetServer) -> None:
    env.apply(monitor("healthy", target.url))
    status = await eventually(
        lambda: (
            env.monitor_status("healthy").get("state") == "Up" and env.monitor_status("healthy")
        ),
        within=30,
        what="state Up",
    )
    assert status["lastCheck"]["ok"] is True
    assert status["lastCheck"]["statusCode"] == 200
    assert status["uptime"] == {"h24": 100.0, "d7": 100.0, "d30": 100.0}
    assert "UPTIME-30D" in env.cp.kubectl("get", "hm", "-n", env.namespace).stdout
    await asyncio.sleep(3)
    assert env.incidents() == []
    assert await env.rows() == []
    assert env.op.alive


async def test_outage_is_one_incident_in_both_places_and_resolves(
    env: Env, target: TargetServer
) -> None:
    env.apply(monitor("api", target.url))
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up")
    went_down = time.time()
    target.set_mode("failing")
    [incident] = await eventually(env.opened_incidents, within=20, what="a DowntimeIncident")
    first_failure = min(t for t in target.request_times if t >= went_down)
    started = parse_time(incident["spec"]["startedAt"]).timestamp()
    assert abs(started - first_failure) < 0.3, (started, first_failure)
    assert incident["status"]["status"] == "ongoing"
    assert incident["status"]["errorMessage"].startswith("HTTP 503")
    assert incident["status"]["httpStatusCode"] == 503
    [row] = await eventually(env.rows, within=20, what="the Postgres row")
    assert str(row["incident_id"]) == incident["spec"]["incidentId"]
    assert row["status"] == "ongoing"
    table = env.cp.kubectl("get", "downtimeincidents", "-n", env.namespace).stdout
    for column in ("MONITOR", "STATUS", "SEVERITY", "STARTED", "DURATION", "ERROR", "LOGS", "AGE"):
        assert column in table
    assert "api" in table and "ongoing" in table
    assert env.monitor_status("api")["currentIncident"] == incident["metadata"]["name"]

    await asyncio.sleep(4)
    came_back = time.time()
    target.set_mode("healthy")
    real_outage = came_back - first_failure

    def resolved() -> dict[str, Any] | None:
        items = env.incidents()
        return items[0] if items and items[0]["status"]["status"] == "resolved" else None

    done = await eventually(resolved, within=20, what="resolution on the CR")
    assert len(env.incidents()) == 1
    assert abs(done["status"]["durationSeconds"] - real_outage) <= 1.0 + 0.3
    [row] = await eventually(lambda: resolved_rows(env), within=20, what="resolution in Postgres")
    assert row["duration_seconds"] == pytest.approx(done["status"]["durationSeconds"], abs=0.01)
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=10, what="Up")
    events = env.cp.kubectl("get", "events", "-n", env.namespace).stdout
    assert "IncidentOpened" in events and "IncidentResolved" in events


async def test_uptime_in_status_counts_a_real_outage_from_postgres(
    env: Env, target: TargetServer
) -> None:
    env.op.stop()
    env.op.env["STATUS_SYNC_PERIOD_SECONDS"] = "2"  # uptime is refreshed once per sync period
    env.op.start()
    env.apply(monitor("api", target.url))
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=30, what="Up")
    target.set_mode("failing")
    await eventually(env.opened_incidents, within=20, what="a DowntimeIncident")
    await asyncio.sleep(2)
    target.set_mode("healthy")
    [row] = await eventually(lambda: resolved_rows(env), within=30, what="resolution in Postgres")
    seconds = row["duration_seconds"]
    body = env.cp.kubectl_json("get", "healthmonitor", "api", "-n", env.namespace)
    created = parse_time(body["metadata"]["creationTimestamp"])

    def judged_on_its_life() -> bool:
        """The monitor is minutes old: every window is judged on its life so far, not days."""
        uptime = env.monitor_status("api").get("uptime") or {}
        if len({uptime.get("h24"), uptime.get("d7"), uptime.get("d30")}) != 1:
            return False
        age = (row["ended_at"] - created).total_seconds()
        oldest = (datetime.now(UTC) - created).total_seconds()
        worst, best = 100 * (1 - seconds / age), 100 * (1 - seconds / oldest)
        return worst - 0.01 <= uptime["h24"] <= best + 0.01

    await eventually(judged_on_its_life, within=20, what="uptime over the monitor's life")


@pytest.mark.parametrize(
    ("mode", "error", "status_code"),
    [
        ("failing", "HTTP 503", 503),
        ("slow", "timeout after 500ms", None),
        ("unreachable", "connection refused", None),
    ],
)
async def test_each_failure_kind_opens_an_incident_with_its_reason(
    env: Env, target: TargetServer, mode: str, error: str, status_code: int | None
) -> None:
    target.set_mode(mode)
    env.apply(monitor("kind", target.url))
    [incident] = await eventually(env.opened_incidents, within=30, what=f"an incident for {mode}")
    assert incident["status"]["errorMessage"].startswith(error)
    assert incident["status"].get("httpStatusCode") == status_code
    [row] = await eventually(env.rows, within=20, what="the row")
    assert row["error_message"].startswith(error)
    assert row["http_status_code"] == status_code


async def test_flapping_below_the_threshold_opens_nothing(env: Env, target: TargetServer) -> None:
    env.apply(monitor("flappy", target.url, failureThreshold=3))
    await eventually(
        lambda: env.monitor_status("flappy").get("state") == "Up", within=30, what="Up"
    )
    for _ in range(6):
        target.set_mode("failing")
        await asyncio.sleep(1.5)
        target.set_mode("healthy")
        await asyncio.sleep(1.6)
    assert env.incidents() == []
    assert await env.rows() == []


async def test_kill_9_during_an_outage_keeps_one_incident(env: Env, target: TargetServer) -> None:
    env.apply(monitor("crashy", target.url))
    await eventually(
        lambda: env.monitor_status("crashy").get("state") == "Up", within=30, what="Up"
    )
    target.set_mode("failing")
    [before] = await eventually(env.rows, within=20, what="the row")
    env.op.kill9()
    await asyncio.sleep(2)
    env.op.start()
    await asyncio.sleep(6)
    assert len(env.incidents()) == 1
    assert len(await env.rows()) == 1
    target.set_mode("healthy")
    [row] = await eventually(lambda: resolved_rows(env), within=30, what="resolution")
    assert row["incident_id"] == before["incident_id"]
    [incident] = env.incidents()
    assert incident["status"]["status"] == "resolved"


async def test_two_namespaces_are_independent_and_deletion_stops_checks(
    env: Env, target: TargetServer, control_plane: ControlPlane, make_namespace: Callable[[], str]
) -> None:
    other = make_namespace()
    env.op.stop()
    env.op.env["WATCH_NAMESPACES"] = f"{env.namespace},{other}"
    env.op.start()
    with TargetServer() as second:
        env.apply(monitor("one", target.url))
        env.apply(monitor("two", second.url), namespace=other)
        await eventually(
            lambda: env.monitor_status("one").get("state") == "Up", within=30, what="one Up"
        )
        await eventually(
            lambda: env.monitor_status("two", other).get("state") == "Up", within=30, what="two Up"
        )
        second.set_mode("failing")
        await eventually(
            lambda: env.opened_incidents(other), within=20, what="incident in the other ns"
        )
        assert env.incidents() == []
        assert env.monitor_status("one")["state"] == "Up"
        control_plane.kubectl("delete", "healthmonitor", "two", "-n", other, "--wait=false")
        await eventually(
            lambda: resolved_rows(env), within=30, what="the deleted monitor's incident resolved"
        )
        [row] = await env.rows()
        assert "deleted" in row["notes"]
        await asyncio.sleep(2)
        seen = second.requests
        await asyncio.sleep(4)
        assert second.requests == seen
        assert target.requests > 0


async def test_escalation_raises_severity_in_both_places(env: Env, target: TargetServer) -> None:
    target.set_mode("failing")
    env.apply(
        monitor(
            "esc",
            target.url,
            severity="medium",
            escalation=[{"after": "4s", "severity": "critical"}],
        )
    )
    [incident] = await eventually(env.opened_incidents, within=30, what="incident")
    assert incident["status"]["severity"] == "medium"

    async def critical_row() -> list[asyncpg.Record]:
        rows = await env.rows()
        return rows if rows and rows[0]["severity"] == "critical" else []

    [row] = await eventually(critical_row, within=30, what="critical severity in Postgres")
    [change] = json.loads(row["severity_changes"])  # the one change, written once
    assert (change["from"], change["to"]) == ("medium", "critical")
    assert parse_time(change["at"]) - row["started_at"] >= timedelta(seconds=4)
    await eventually(
        lambda: env.incidents()[0]["status"]["severity"] == "critical",
        within=10,
        what="critical CR",
    )


async def test_a_manual_resolve_lets_a_later_failure_open_a_new_incident(
    env: Env, target: TargetServer
) -> None:
    """What the admin API does on resolve (row + CR status), seen by the running operator."""
    target.set_mode("failing")
    env.apply(monitor("manual", target.url))
    [incident] = await eventually(env.opened_incidents, within=30, what="the first incident")
    [row] = await eventually(env.rows, within=20, what="its row")
    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute(
            "UPDATE downtime_incidents SET status = 'resolved', ended_at = now(),"
            " duration_seconds = EXTRACT(EPOCH FROM now() - started_at) WHERE incident_id = $1",
            row["incident_id"],
        )
    finally:
        await conn.close()
    name = incident["metadata"]["name"]
    env.cp.api(
        "PATCH",
        f"/apis/monitoring.gatewayz.ai/v1/namespaces/{env.namespace}/downtimeincidents/{name}/status",
        {"status": {"status": "resolved", "notes": "resolved by hand"}},
        content_type="application/merge-patch+json",
    )
    items = await eventually(
        lambda: len(env.incidents()) == 2 and env.incidents(), within=30, what="a second incident"
    )
    assert sorted(i["status"]["status"] for i in items) == ["ongoing", "resolved"]
    rows = await eventually(lambda: _two(env), within=20, what="a second row")
    assert sorted(r["status"] for r in rows) == ["ongoing", "resolved"]


async def _two(env: Env) -> list[asyncpg.Record]:
    rows = await env.rows()
    return rows if len(rows) == 2 else []


async def test_headers_from_a_secret_are_sent_and_a_missing_one_invents_no_outage(
    env: Env, target: TargetServer
) -> None:
    env.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "api-token"},
            "stringData": {"token": "Bearer s3cret"},
        }
    )
    from_secret = [{"name": "Authorization", "secretKeyRef": {"name": "api-token", "key": "token"}}]
    env.apply(monitor("authed", target.url, headersFrom=from_secret))
    # Would be refused (connection refused) if it were checked: no Secret, so it must not be.
    missing = [{"name": "Authorization", "secretKeyRef": {"name": "absent", "key": "token"}}]
    env.apply(monitor("unauthed", "http://127.0.0.1:9/health", headersFrom=missing))

    await eventually(
        lambda: env.monitor_status("authed").get("state") == "Up", within=30, what="Up"
    )
    last = target.last_request
    assert last is not None and last.headers.get("Authorization") == "Bearer s3cret"

    def reported() -> dict[str, Any] | None:
        status = env.monitor_status("unauthed")
        conditions = status.get("conditions") or []
        return conditions[0] if conditions else None

    condition = await eventually(reported, within=30, what="the SecretUnavailable condition")
    assert (condition["status"], condition["reason"]) == ("False", "SecretUnavailable")
    assert f"Secret {env.namespace}/absent not found" in condition["message"]
    await asyncio.sleep(5)  # several intervals: still no check, so no incident
    assert env.incidents() == [] and await env.rows() == []
    assert env.monitor_status("unauthed")["state"] == "Unknown"


async def test_a_namespace_being_deleted_does_not_hold_up_the_others(
    env: Env, target: TargetServer, control_plane: ControlPlane, make_namespace: Callable[[], str]
) -> None:
    """A namespace that is terminating refuses new objects (403) for as long as it takes; the
    operator's Kubernetes writes are one ordered queue, and must not all wait behind it."""
    doomed = make_namespace()
    env.op.stop()
    env.op.env["WATCH_NAMESPACES"] = f"{env.namespace},{doomed}"
    env.op.start()
    with TargetServer() as second:
        env.apply(monitor("doomed", second.url), namespace=doomed)
        await eventually(
            lambda: env.monitor_status("doomed", doomed).get("state") == "Up",
            within=30,
            what="doomed Up",
        )
        # No controller-manager here: the namespace stays Terminating, objects inside remain.
        control_plane.kubectl("delete", "namespace", doomed, "--wait=false")
        second.set_mode("failing")  # its new incident's CR and Event are refused
        await eventually(
            lambda: "being terminated" in env.op.log_tail(2000), within=30, what="the refusal"
        )
        env.apply(monitor("alive", target.url))
        target.set_mode("failing")
        [incident] = await eventually(
            env.opened_incidents, within=30, what="the CR in the live namespace"
        )
        assert incident["spec"]["monitorRef"]["name"] == "alive"
