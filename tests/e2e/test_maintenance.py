"""Issue 15 on the real control plane, acceptance 3: an outage inside a MaintenanceWindow opens
no incident, sends nothing and shows ``Maintenance``; the same outage outside it opens an
incident and notifies as before; the SLO status leaves the window out; the period is recorded
in PostgreSQL and closed when the window goes away."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.e2e.harness import Env, eventually, monitor
from tests.support.receivers import SlackReceiver
from tests.support.target import TargetServer

pytestmark = pytest.mark.filterwarnings(
    "ignore:Session.login_data is deprecated:DeprecationWarning",
)

SLO = {"objective": "99", "window": "1d"}
NOTIFY = [{"channel": "slack"}]


def window(name: str, *, monitors: list[str], start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.gatewayz.ai/v1",
        "kind": "MaintenanceWindow",
        "metadata": {"name": name},
        "spec": {
            "monitors": monitors,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "reason": "database upgrade",
        },
    }


def slack_channel(url: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "slack"},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        },
        {
            "apiVersion": "monitoring.gatewayz.ai/v1",
            "kind": "NotificationChannel",
            "metadata": {"name": "slack"},
            "spec": {
                "type": "slack",
                "slack": {"webhookUrlFrom": {"name": "slack", "key": "url"}},
                "groupWindow": "0s",
            },
        },
    ]


async def periods(env: Env) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(env.dsn)
    try:
        return list(
            await conn.fetch("SELECT * FROM downtime_maintenance_periods ORDER BY period_id")
        )
    finally:
        await conn.close()


def incidents_of(env: Env, name: str) -> list[dict[str, Any]]:
    return [i for i in env.opened_incidents() if i["spec"]["monitorRef"]["name"] == name]


async def test_an_outage_inside_a_window_opens_nothing_and_is_left_out_of_the_slo(
    env: Env, target: TargetServer
) -> None:
    env.op.stop()
    env.op.env["STATUS_SYNC_PERIOD_SECONDS"] = "1"  # status.slo is refreshed once per period
    env.op.start()
    with SlackReceiver() as slack:
        for body in slack_channel(slack.webhook_url):
            env.apply(body)
        now = datetime.now(UTC)
        env.apply(window("upgrade", monitors=["api"], start=now, end=now + timedelta(hours=1)))
        for name in ("api", "web"):
            env.apply(monitor(name, target.url, slo=SLO, notifications=NOTIFY))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Maintenance",
            within=30,
            what="api in Maintenance",
        )
        await eventually(
            lambda: env.monitor_status("web").get("state") == "Up", within=30, what="web Up"
        )

        target.set_mode("failing")
        await eventually(lambda: incidents_of(env, "web"), within=20, what="web's incident")
        await eventually(lambda: slack.messages, within=20, what="web's notification")
        await asyncio.sleep(3)  # api failed as long, and more

        assert incidents_of(env, "api") == []
        shown = await eventually(
            lambda: env.cp.kubectl_json("get", "mw", "upgrade", "-n", env.namespace).get("status"),
            within=30,
            what="the window's status",
        )
        assert (shown["active"], shown["monitors"]) == (True, 1)
        assert shown["currentPeriod"]["end"] == (now + timedelta(hours=1)).isoformat(
            timespec="seconds"
        ).replace("+00:00", "Z")
        assert "nextStart" not in shown  # a one-off window that has begun starts no more
        assert {r["monitor_name"] for r in await env.rows()} == {"web"}
        assert all("web" in m["text"] and "api" not in m["text"] for m in slack.messages)
        assert env.monitor_status("api")["state"] == "Maintenance"
        [period] = await periods(env)
        assert (period["monitor_name"], period["ended_at"]) == ("api", None)
        assert period["reason"] == "database upgrade"

        def slo_of(name: str, *, spent: bool) -> dict[str, Any] | None:
            slo: dict[str, Any] | None = env.monitor_status(name).get("slo")
            return slo if slo and (slo["availability"] < 100) == spent else None

        web = await eventually(lambda: slo_of("web", spent=True), within=20, what="web's SLO")
        assert web["budgetRemaining"] < 100
        api = await eventually(lambda: slo_of("api", spent=False), within=20, what="api's SLO")
        assert api["budgetRemaining"] == 100.0

        # The window goes: api is judged again, and its outage opens an incident from now.
        left_at = datetime.now(UTC)
        env.cp.kubectl("delete", "mw", "upgrade", "-n", env.namespace)
        [opened] = await eventually(lambda: incidents_of(env, "api"), within=20, what="api's")
        started = datetime.fromisoformat(opened["spec"]["startedAt"].replace("Z", "+00:00"))
        assert started >= left_at - timedelta(seconds=1)
        [period] = await eventually(
            lambda: _closed(env), within=20, what="the maintenance period closed"
        )
        assert period["ended_at"] >= period["started_at"]


async def _closed(env: Env) -> list[asyncpg.Record]:
    found = await periods(env)
    return found if found and all(p["ended_at"] is not None for p in found) else []
