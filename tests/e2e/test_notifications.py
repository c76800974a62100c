"""Issue 12 on the real control plane: NotificationChannels, their Secrets, the real operator.

Acceptance 1: one outage, four channels (Slack, PagerDuty, email over a real SMTP server with
STARTTLS and AUTH, a signed webhook): each gets exactly one opened and one resolved; PagerDuty's
trigger and resolve share dedup_key = the incident id with the mapped severity; the webhook's
signatures verify (with the ``standardwebhooks`` package, in the receiver).
Acceptance 2: ``kill -9`` right after the incident opens, before anything could be delivered:
after the restart every channel gets it, one key per event.
Acceptance 5: a channel whose Secret is missing is Ready=False naming it; created later, the
pending notifications go out.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.controlplane import ControlPlane
from tests.e2e.harness import Env, eventually, monitor, operator_with_metrics
from tests.support.receivers import (
    PagerDutyReceiver,
    ResendReceiver,
    SlackReceiver,
    WebhookReceiver,
)
from tests.support.smtp_server import PASSWORD, USERNAME, SmtpServer, TlsFiles, make_tls_files
from tests.support.target import TargetServer

pytestmark = pytest.mark.filterwarnings(
    "ignore:Session.login_data is deprecated:DeprecationWarning",
)

ROUTING_KEY = "R" * 32
TLS_DIR = "smtp-tls"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp(TLS_DIR))


@pytest.fixture
def receivers(tls_files: TlsFiles) -> Iterator[dict[str, Any]]:
    with (
        SlackReceiver() as slack,
        PagerDutyReceiver() as pagerduty,
        ResendReceiver() as resend,
        WebhookReceiver() as webhook,
        SmtpServer(mode="starttls", tls_files=tls_files) as smtp,
    ):
        yield {
            "slack": slack,
            "pagerduty": pagerduty,
            "resend": resend,
            "webhook": webhook,
            "smtp": smtp,
        }


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def channel(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.gatewayz.ai/v1",
        "kind": "NotificationChannel",
        "metadata": {"name": name},
        "spec": spec,
    }


def ref(name: str, key: str) -> dict[str, str]:
    return {"name": name, "key": key}


def channels_for(rx: dict[str, Any], *, email: str) -> list[dict[str, Any]]:
    smtp: SmtpServer = rx["smtp"]
    mail: dict[str, Any] = {"from": "Downtime <downtime@example.com>", "to": ["sre@example.com"]}
    if email == "smtp":
        mail["smtp"] = {
            "host": "127.0.0.1",
            "port": smtp.port,
            "tls": "starttls",
            "usernameFrom": ref("smtp", "username"),
            "passwordFrom": ref("smtp", "password"),
        }
    else:
        mail["resend"] = {"apiKeyFrom": ref("resend", "key")}
    return [
        channel("slack", {"type": "slack", "slack": {"webhookUrlFrom": ref("slack", "url")}}),
        channel(
            "pagerduty",
            {"type": "pagerduty", "pagerduty": {"routingKeyFrom": ref("pagerduty", "key")}},
        ),
        channel("email", {"type": "email", "email": mail}),
        channel(
            "webhook",
            {
                "type": "webhook",
                "webhook": {"url": rx["webhook"].url, "secretFrom": ref("hook", "s")},
            },
        ),
    ]


def secrets_for(rx: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        secret("slack", url=rx["slack"].webhook_url),
        secret("pagerduty", key=ROUTING_KEY),
        secret("smtp", username=USERNAME, password=PASSWORD),
        secret("resend", key=rx["resend"].api_key),
        secret("hook", s=rx["webhook"].secret),
    ]


def operator_env(rx: dict[str, Any], tls: TlsFiles, **extra: str) -> dict[str, str]:
    return {
        "PAGERDUTY_EVENTS_URL": rx["pagerduty"].events_url,
        "RESEND_API_URL": rx["resend"].api_url,
        # The test SMTP server's self-signed certificate is the operator's trusted CA.
        "SSL_CERT_FILE": str(tls.cert),
        "POD_ID": "operator-0",
        **extra,
    }


def counts(rx: dict[str, Any], *, email: str) -> dict[str, int]:
    return {
        "slack": len(rx["slack"].messages),
        "pagerduty": len(rx["pagerduty"].events),
        "email": len(rx["smtp"].messages if email == "smtp" else rx["resend"].emails),
        "webhook": len(rx["webhook"].messages),
    }


async def all_told(rx: dict[str, Any], *, email: str, times: int) -> None:
    await eventually(
        lambda: all(n >= times for n in counts(rx, email=email).values()),
        within=60,
        what=f"{times} notifications on every channel (have {counts(rx, email=email)})",
    )


def incident_id(env: Env) -> str:
    [incident] = env.incidents()
    return str(incident["spec"]["incidentId"])


def webhook_events(rx: dict[str, Any]) -> list[str]:
    return [m.payload["event"] for m in rx["webhook"].messages]


async def up(env: Env) -> None:
    await eventually(lambda: env.monitor_status("api").get("state") == "Up", within=60, what="Up")


async def outage(env: Env, target: TargetServer) -> None:
    target.set_mode("failing")
    await eventually(env.opened_incidents, within=30, what="the incident")
    target.set_mode("healthy")

    def resolved() -> bool:
        return [i["status"]["status"] for i in env.incidents()] == ["resolved"]

    await eventually(resolved, within=30, what="its resolution")


async def test_one_outage_tells_four_channels_once_each(
    *,
    control_plane: ControlPlane,
    namespace: str,
    make_database: DatabaseFactory,
    target: TargetServer,
    receivers: dict[str, Any],
    tls_files: TlsFiles,
    tmp_path: Path,
) -> None:
    rx = receivers
    for body in [*secrets_for(rx), *channels_for(rx, email="smtp")]:
        control_plane.apply(body, namespace=namespace)
    dsn = await make_database()
    names = ["slack", "pagerduty", "email", "webhook"]
    with operator_with_metrics(
        control_plane,
        namespace,
        dsn=dsn,
        log_path=tmp_path / "operator.log",
        **operator_env(rx, tls_files),
    ) as (env, _):
        env.apply(monitor("api", target.url, notifications=[{"channel": n} for n in names]))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=60, what="Up"
        )
        await outage(env, target)
        await all_told(rx, email="smtp", times=2)
        await asyncio.sleep(3)  # nothing more comes
        assert counts(rx, email="smtp") == dict.fromkeys(names, 2)

        incident = incident_id(env)
        trigger, resolve = rx["pagerduty"].events
        assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
        assert trigger["dedup_key"] == resolve["dedup_key"] == incident
        assert trigger["payload"]["severity"] == "error"  # high -> error, the default map
        assert webhook_events(rx) == ["opened", "resolved"]
        mails = rx["smtp"].messages
        assert all(m.tls and m.authenticated_as == USERNAME for m in mails)
        assert "api" in rx["slack"].messages[0]["text"]
        assert rx["slack"].webhook_url not in env.op.log_tail(2000)  # a URL that is a secret

        def delivered(name: str) -> dict[str, Any] | None:
            body = control_plane.kubectl_json("get", "nch", name, "-n", namespace)
            status: dict[str, Any] = body.get("status") or {}
            last = status.get("lastDelivery") or {}
            return status if last.get("outcome") == "sent" and status.get("pending") == 0 else None

        for name in names:
            status = await eventually(lambda n=name: delivered(n), within=20, what=f"{name} status")
            [ready] = status["conditions"]
            assert (ready["type"], ready["status"]) == ("Ready", "True")


async def test_a_kill_before_delivery_loses_nothing_and_sends_each_key_once(
    *,
    control_plane: ControlPlane,
    namespace: str,
    make_database: DatabaseFactory,
    target: TargetServer,
    receivers: dict[str, Any],
    tls_files: TlsFiles,
    tmp_path: Path,
) -> None:
    rx = receivers
    for body in [*secrets_for(rx), *channels_for(rx, email="resend")]:
        control_plane.apply(body, namespace=namespace)
    for name in ("slack", "pagerduty", "resend", "webhook"):
        rx[name].fail_with(503, for_seconds=3600)  # nothing can be delivered yet
    dsn = await make_database()
    names = ["slack", "pagerduty", "email", "webhook"]
    with operator_with_metrics(
        control_plane,
        namespace,
        dsn=dsn,
        log_path=tmp_path / "operator.log",
        **operator_env(rx, tls_files),
    ) as (env, _):
        env.apply(monitor("api", target.url, notifications=[{"channel": n} for n in names]))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=60, what="Up"
        )
        target.set_mode("failing")

        async def owed() -> list[asyncpg.Record] | None:
            conn = await asyncpg.connect(dsn)
            try:
                rows = await conn.fetch("SELECT channel FROM downtime_notifications")
            except asyncpg.UndefinedTableError:
                return None
            finally:
                await conn.close()
            return rows if len(rows) >= len(names) else None

        await eventually(owed, within=30, what="the notifications owed for the incident")
        env.op.kill9()
        for name in ("slack", "pagerduty", "resend", "webhook"):
            rx[name].clear_failures()
        target.set_mode("healthy")
        env.op.start()
        await all_told(rx, email="resend", times=2)
        await asyncio.sleep(3)
        assert counts(rx, email="resend") == dict.fromkeys(names, 2)

        incident = incident_id(env)
        assert rx["pagerduty"].count(dedup_key=incident, action="trigger") == 1
        assert rx["pagerduty"].count(dedup_key=incident, action="resolve") == 1
        ids = [m.msg_id for m in rx["webhook"].messages]
        assert len(ids) == len(set(ids)) == 2
        assert webhook_events(rx) == ["opened", "resolved"]
        opened, resolved = (e["subject"].lower() for e in rx["resend"].emails)
        assert "resolved" not in opened and "resolved" in resolved


async def test_a_missing_secret_holds_notifications_until_it_exists(
    *,
    control_plane: ControlPlane,
    namespace: str,
    make_database: DatabaseFactory,
    target: TargetServer,
    receivers: dict[str, Any],
    tls_files: TlsFiles,
    tmp_path: Path,
) -> None:
    rx = receivers
    [_, _, _, hook] = channels_for(rx, email="resend")
    control_plane.apply(hook, namespace=namespace)
    dsn = await make_database()
    with operator_with_metrics(
        control_plane,
        namespace,
        dsn=dsn,
        log_path=tmp_path / "operator.log",
        **operator_env(rx, tls_files),
    ) as (env, _):
        env.apply(monitor("api", target.url, notifications=[{"channel": "webhook"}]))
        await eventually(
            lambda: env.monitor_status("api").get("state") == "Up", within=60, what="Up"
        )

        def not_ready() -> dict[str, Any] | None:
            status = (
                control_plane.kubectl_json("get", "nch", "webhook", "-n", namespace).get("status")
                or {}
            )
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            ready = conditions.get("Ready")
            return ready if ready and ready["status"] == "False" else None

        condition = await eventually(not_ready, within=30, what="Ready=False")
        assert condition["reason"] == "SecretMissing"
        assert "hook" in condition["message"]  # the Secret's name
        await outage(env, target)
        await asyncio.sleep(2)
        assert rx["webhook"].messages == []  # held, not lost

        control_plane.apply(secret("hook", s=rx["webhook"].secret), namespace=namespace)
        await eventually(lambda: len(rx["webhook"].messages) >= 2, within=60, what="delivery")
        assert webhook_events(rx) == ["opened", "resolved"]
        assert rx["webhook"].secret not in env.op.log_tail(2000)  # secrets are never logged
