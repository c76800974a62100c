"""The README's demo, run by ``bash scripts/demo.sh`` (which prepares the venv and PostgreSQL).

A throw-away control plane (etcd + kube-apiserver, the e2e tests' ``ControlPlane``), a demo
HTTP endpoint (``TargetServer``) that logs to a Loki-protocol server (the tests' ``LokiServer``),
a webhook receiver that verifies Standard Webhooks signatures, and the operator as a process
(``OperatorProcess``) over a fresh ``downtime_demo`` database, with log capture, the admin API
and a NotificationChannel. ``examples/healthmonitor.yaml`` is applied with its URL pointed at
the endpoint; the endpoint then fails for a few seconds and recovers. Prints ``kubectl get
healthmonitors,downtimeincidents`` before, during and after the outage, the PostgreSQL rows,
the namespace's Events, the captured log lines and their analysis, the admin API's incident list
and statistics (with ``curl`` and a key generated for the demo) and the notifications the
webhook received. Every wait is bounded: a step that times out ends the demo with exit status 1
and the tail of the operator log.

    .venv/bin/python scripts/demo.py --admin-database-url postgresql://...
"""

# ruff: noqa: E402  (the repository root must be on sys.path before importing tests.*)
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg
import yaml
from tests.e2e.controlplane import ControlPlane, ControlPlaneError, KubectlError, free_port, tail
from tests.e2e.operator_process import OperatorProcess
from tests.support.loki_server import LokiServer
from tests.support.receivers.webhook import WebhookReceiver
from tests.support.target import TargetServer

EXAMPLE = ROOT / "examples" / "healthmonitor.yaml"
NAMESPACE = "demo"
DATABASE = "downtime_demo"
API = f"/apis/monitoring.gatewayz.ai/v1/namespaces/{NAMESPACE}"
OUTAGE_SECONDS = 8.0  # how long the endpoint stays down, counted from the switch to failing
POLL_SECONDS = 0.5
ROW_COLUMNS = (
    "incident_id",
    "monitor_name",
    "status",
    "severity",
    "started_at",
    "ended_at",
    "duration_seconds",
    "error_message",
)

LOG_LABELS = {"app": "demo-api", "namespace": NAMESPACE}
CHANNEL = "demo-webhook"
API_KEY = f"demo-{secrets.token_urlsafe(24)}"
"""A fresh admin API key for this run only."""

T = TypeVar("T")
_T0 = time.monotonic()


class DemoError(RuntimeError):
    """A demo step failed or timed out."""


def step(title: str) -> None:
    print(f"\n== [{time.monotonic() - _T0:5.1f}s] {title}", flush=True)


def with_database(dsn: str, database: str) -> str:
    """The same DSN with another database name (as tests/conftest.py, which needs pytest)."""
    base, _, _ = dsn.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}"


async def recreate_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def fetch_rows(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        records = await conn.fetch(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM downtime_incidents ORDER BY started_at"
        )
    except asyncpg.UndefinedTableError:  # the operator has not migrated yet
        return []
    finally:
        await conn.close()
    return [dict(r) for r in records]


def rows(dsn: str) -> list[dict[str, Any]]:
    return asyncio.run(fetch_rows(dsn))


def print_rows(dsn: str) -> None:
    print(f"$ SELECT {', '.join(ROW_COLUMNS)} FROM downtime_incidents  -- {DATABASE}")
    table = [list(ROW_COLUMNS)]
    for row in rows(dsn):
        cells = []
        for column in ROW_COLUMNS:
            value = row[column]
            if value is None:
                cells.append("")
            elif column == "duration_seconds":
                cells.append(f"{value:.3f}")
            elif hasattr(value, "isoformat"):
                cells.append(value.isoformat(timespec="milliseconds"))
            else:
                cells.append(str(value))
        table.append(cells)
    widths = [max(len(line[i]) for line in table) for i in range(len(ROW_COLUMNS))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def show(cp: ControlPlane, *args: str) -> None:
    print(f"$ kubectl {' '.join(args)}")
    proc = cp.kubectl(*args, check=False)
    print((proc.stdout + proc.stderr).rstrip(), flush=True)


def wait_for(probe: Callable[[], T | None], *, within: float, what: str, op: OperatorProcess) -> T:
    """Poll ``probe`` until it returns something truthy; DemoError after ``within`` seconds."""
    print(f"   waiting for {what} (at most {within:.0f}s)", flush=True)
    started = time.monotonic()
    deadline = started + within
    while True:
        value = probe()
        if value:
            print(f"   ... after {time.monotonic() - started:.1f}s", flush=True)
            return value
        if not op.alive:
            raise DemoError(f"the operator exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(POLL_SECONDS)


def monitor_state(cp: ControlPlane, name: str) -> str | None:
    body = cp.api("GET", f"{API}/healthmonitors/{name}")
    state: str | None = (body.get("status") or {}).get("state")
    return state


def incidents(cp: ControlPlane) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.api("GET", f"{API}/downtimeincidents")["items"]
    return items


def incident_with_status(cp: ControlPlane, status: str) -> dict[str, Any] | None:
    for item in incidents(cp):
        if (item.get("status") or {}).get("status") == status:
            return item
    return None


def load_example(url: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["url"] = url
    # Its logs around the outage, and a notification of each event. The final capture comes
    # 5 s after the recovery (the default, 5 minutes, would outlast the demo).
    manifest["spec"]["logCapture"] = {"query": '{app="demo-api"}', "after": "5s"}
    manifest["spec"]["notifications"] = [{"channel": CHANNEL}]
    return manifest


class EndpointLogs:
    """The demo endpoint's application log, shipped to Loki every half second: a request line
    while healthy, the errors of a lost database while failing."""

    def __init__(self, target: TargetServer, loki: LokiServer) -> None:
        self._target = target
        self._loki = loki
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-logs", daemon=True)

    def __enter__(self) -> EndpointLogs:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            now = time.time_ns()
            if self._target.mode == "healthy":
                lines = [(now, 'level=info msg="GET /health 200" duration_ms=2')]
            else:
                lines = [
                    (now, 'level=error msg="database unavailable: connection refused"'),
                    (now + 1, 'level=error msg="GET /health 503" duration_ms=1'),
                    (now + 2, 'level=warning msg="retrying database connection"'),
                ]
            self._loki.push(LOG_LABELS, lines)


def notification_channel(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """A Secret with the webhook's signing secret and the channel that uses it."""
    secret = base64.b64encode(receiver.secret.encode()).decode()
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "demo-webhook-secret"},
            "data": {"secret": secret},
        },
        {
            "apiVersion": "monitoring.gatewayz.ai/v1",
            "kind": "NotificationChannel",
            "metadata": {"name": CHANNEL},
            "spec": {
                "type": "webhook",
                "webhook": {
                    "url": receiver.url,
                    "secretFrom": {"name": "demo-webhook-secret", "key": "secret"},
                },
                "groupWindow": "0s",
            },
        },
    ]


def curl(api_url: str, path: str) -> Any:
    """``curl`` the admin API with the demo's key; print the command and the answer."""
    url = f"{api_url}{path}"
    print(f'$ curl -s -H "Authorization: Bearer $ADMIN_KEY" {url}')
    proc = subprocess.run(
        ["curl", "-s", "--max-time", "10", "-H", f"Authorization: Bearer {API_KEY}", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    if proc.returncode != 0:
        raise DemoError(f"curl {url} failed ({proc.returncode}): {proc.stderr.strip()}")
    body = json.loads(proc.stdout)
    print(json.dumps(body, indent=2, default=str)[:1500], flush=True)
    return body


def demo(
    cp: ControlPlane,
    target: TargetServer,
    op: OperatorProcess,
    *,
    dsn: str,
    receiver: WebhookReceiver,
    api_url: str,
) -> None:
    step(f"NotificationChannel {CHANNEL}: signed webhooks to {receiver.url}")
    for body in notification_channel(receiver):
        cp.apply(body, namespace=NAMESPACE)
    manifest = load_example(target.url)
    name = manifest["metadata"]["name"]
    step(f"apply {EXAMPLE.relative_to(ROOT)} (spec.url -> {target.url})")
    print(yaml.safe_dump({"spec": manifest["spec"]}, sort_keys=False).rstrip())
    cp.apply(manifest, namespace=NAMESPACE)
    wait_for(lambda: monitor_state(cp, name) == "Up", within=60, what="state Up", op=op)
    show(cp, "get", "healthmonitors,downtimeincidents", "-n", NAMESPACE)

    step("the demo endpoint goes down (HTTP 503)")
    went_down = time.time()
    target.set_mode("failing")
    incident = wait_for(
        lambda: incident_with_status(cp, "ongoing"),
        within=30,
        what="an ongoing DowntimeIncident",
        op=op,
    )
    wait_for(
        lambda: [r for r in rows(dsn) if r["status"] == "ongoing"],
        within=30,
        what="the ongoing incident's PostgreSQL row",
        op=op,
    )
    step(f"incident open: {incident['metadata']['name']}")
    show(cp, "get", "healthmonitors,downtimeincidents", "-n", NAMESPACE)
    print()
    print_rows(dsn)

    remaining = went_down + OUTAGE_SECONDS - time.time()
    if remaining > 0:
        print(f"\n   (the endpoint stays down {remaining:.1f}s more)", flush=True)
        time.sleep(remaining)
    step("the demo endpoint comes back")
    target.set_mode("healthy")
    came_back = time.time()
    first_failure = min((t for t in target.request_times if t >= went_down), default=went_down)
    resolved = wait_for(
        lambda: incident_with_status(cp, "resolved"),
        within=30,
        what="the DowntimeIncident to be resolved",
        op=op,
    )
    wait_for(
        lambda: (found := rows(dsn)) and all(r["status"] == "resolved" for r in found),
        within=30,
        what="the PostgreSQL row to be resolved",
        op=op,
    )
    wait_for(lambda: monitor_state(cp, name) == "Up", within=30, what="state Up again", op=op)
    step(f"incident resolved: {resolved['metadata']['name']}")
    show(cp, "get", "healthmonitors,downtimeincidents", "-n", NAMESPACE)
    print()
    print_rows(dsn)
    print()
    show(cp, "get", "events", "-n", NAMESPACE)
    duration = (resolved.get("status") or {}).get("durationSeconds")
    print(
        f"\n   recorded duration {duration}s (first failed check -> first successful check);"
        f" the endpoint answered 503 for {came_back - first_failure:.1f}s after its first"
        " failed check, then the next check (within retryInterval) succeeded"
    )
    after_the_outage(cp, op, resolved=resolved, receiver=receiver, api_url=api_url)


def after_the_outage(
    cp: ControlPlane,
    op: OperatorProcess,
    *,
    resolved: dict[str, Any],
    receiver: WebhookReceiver,
    api_url: str,
) -> None:
    """The evidence and the rest of the product: logs, analysis, API, notifications."""
    incident_name = resolved["metadata"]["name"]
    incident_id = resolved["spec"]["incidentId"]

    def final_capture() -> dict[str, Any] | None:
        body = cp.api("GET", f"{API}/downtimeincidents/{incident_name}")
        logs = (body.get("status") or {}).get("logs") or {}
        window_end = (logs.get("window") or {}).get("end") or ""
        ended = (body.get("status") or {}).get("endedAt") or "~"
        done = logs.get("state") == "captured" and window_end > ended
        return logs if done else None

    step("the final log capture (5 s after the recovery)")
    logs = wait_for(final_capture, within=60, what="the final log capture", op=op)
    show(cp, "get", "downtimeincidents", "-n", NAMESPACE)
    print(f"\n   LOGS captured: {logs.get('lines')} lines ({logs.get('storage')})")

    step("the captured lines and their analysis, from the admin API")
    lines = curl(api_url, f"/admin/downtime/incidents/{incident_id}/logs?level=ERROR")
    print(f"\n   {lines.get('total_logs')} error lines of {lines.get('total_captured')} captured")
    analysis = curl(api_url, f"/admin/downtime/incidents/{incident_id}/analysis")["analysis"]
    top = (analysis.get("top_errors") or [["(none)", 0]])[0]
    print(f"\n   top error: {top[0]!r} x{top[1]} of {analysis.get('total_logs')} lines")

    step("the admin API: incidents and statistics")
    listed = curl(api_url, "/admin/downtime/incidents?limit=5")
    print(f"\n   {listed.get('total_incidents')} incident(s) listed")
    stats = curl(api_url, "/admin/downtime/statistics?days=1")
    print(f"\n   statistics: {stats.get('statistics', stats)}"[:300])

    step(f"notifications received by the webhook ({receiver.url})")
    wait_for(
        lambda: len(receiver.messages) >= 2,
        within=30,
        what="the opened and resolved webhooks",
        op=op,
    )
    for message in receiver.messages:
        payload = message.payload
        data = payload.get("data") or {}
        print(
            f"   {payload.get('type')}: {data.get('k8s_name')} {data.get('status')}"
            f" ({data.get('error_message')}) webhook-id {message.msg_id}"
        )
    print("   (each signature verified with the standardwebhooks package)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--admin-database-url",
        required=True,
        help="DSN of a role that may create databases (scripts/start-postgres.sh prints one)",
    )
    args = parser.parse_args(argv)

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the teardown below

    signal.signal(signal.SIGTERM, terminate)
    log_path = Path(tempfile.mkdtemp(prefix="downtime-demo-")) / "operator.log"
    print(f"operator log: {log_path}")
    try:
        step(f"database {DATABASE} (dropped and recreated)")
        dsn = asyncio.run(recreate_database(args.admin_database_url, DATABASE))
        print(f"   DATABASE_URL={dsn}")
        step("control plane: etcd + kube-apiserver, CRDs (binaries from the build cache)")
        with (
            ControlPlane() as cp,
            TargetServer() as target,
            LokiServer() as loki,
            WebhookReceiver() as receiver,
            EndpointLogs(target, loki),
        ):
            print(f"   apiserver {cp.server} up in {cp.timings['total']:.1f}s")
            print(f"   demo endpoint {target.url}, logging to Loki at {loki.url}")
            cp.kubectl("create", "namespace", NAMESPACE)
            api_port = free_port()
            api_url = f"http://127.0.0.1:{api_port}"
            step(f"operator: python -m downtime_operator run (WATCH_NAMESPACES={NAMESPACE})")
            print(f"   Loki {loki.url}; admin API {api_url}, key in ADMIN_API_KEYS (this run's)")
            op = OperatorProcess(
                cp,
                database_url=dsn,
                namespaces=[NAMESPACE],
                log_path=log_path,
                extra_env={
                    "LOKI_ENABLED": "true",
                    "LOKI_QUERY_URL": loki.url,
                    "ADMIN_API_KEYS": f"demo={API_KEY}",
                    "API_HOST": "127.0.0.1",
                    "API_PORT": str(api_port),
                },
            )
            op.start()
            try:
                demo(cp, target, op, dsn=dsn, receiver=receiver, api_url=api_url)
            finally:
                step("teardown: operator (SIGTERM), demo endpoint, control plane")
                code = op.stop()
                print(f"   operator exited with {code}")
    except (DemoError, ControlPlaneError, KubectlError, OSError, asyncpg.PostgresError) as err:
        print(f"\ndemo FAILED: {err}", file=sys.stderr)
        print(f"--- operator log (last 40 lines of {log_path}) ---", file=sys.stderr)
        print(tail(log_path, 40), file=sys.stderr)
        return 1
    print(f"\ndemo done in {time.monotonic() - _T0:.0f}s; operator log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
