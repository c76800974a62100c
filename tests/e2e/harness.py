"""Helpers for e2e tests that run the operator: manifests, polling, the test's world."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tests.e2e.controlplane import ControlPlane, free_port
from tests.e2e.operator_process import OperatorProcess
from tests.support.api import KEYS

T = TypeVar("T")
FAST = {"interval": "1s", "timeout": "500ms", "retryInterval": "1s", "failureThreshold": 2}


def monitor(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.gatewayz.ai/v1",
        "kind": "HealthMonitor",
        "metadata": {"name": name},
        "spec": {"url": url, **FAST, **spec},
    }


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None], *, within: float, what: str
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.25)


@contextlib.contextmanager
def running_operator(
    cp: ControlPlane,
    namespace: str,
    *,
    dsn: str,
    log_path: Path,
    api_port: int | None = None,
    **extra_env: str,
) -> Iterator[Env]:
    """The operator as a process watching ``namespace``, stopped at the end with its log's
    tail printed (pytest shows it for a failed test); with ``api_port``, its admin API on it."""
    env = dict(extra_env)
    if api_port is not None:
        env |= {
            "ADMIN_API_KEYS": ",".join(f"{name}={key}" for name, key in KEYS.items()),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(api_port),
        }
    op = OperatorProcess(
        cp, database_url=dsn, namespaces=[namespace], log_path=log_path, extra_env=env
    )
    op.start()
    try:
        yield Env(
            cp,
            namespace,
            dsn,
            op,
            api_url=None if api_port is None else f"http://127.0.0.1:{api_port}",
        )
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.log_tail(120)}")


@contextlib.contextmanager
def operator_with_metrics(
    cp: ControlPlane, namespace: str, *, dsn: str, log_path: Path, **extra_env: str
) -> Iterator[tuple[Env, int]]:
    """The operator as a process watching ``namespace``, serving /metrics on a free port."""
    port = free_port()
    metrics = {"METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"}
    with running_operator(cp, namespace, dsn=dsn, log_path=log_path, **metrics, **extra_env) as env:
        yield env, port


class Env:
    """One test's world: its namespace, its database and its operator process."""

    def __init__(
        self,
        cp: ControlPlane,
        namespace: str,
        dsn: str,
        op: OperatorProcess,
        *,
        api_url: str | None = None,
    ) -> None:
        self.cp = cp
        self.namespace = namespace
        self.dsn = dsn
        self.op = op
        self.api_url = api_url

    def apply(self, body: dict[str, Any], namespace: str | None = None) -> None:
        self.cp.apply(body, namespace=namespace or self.namespace)

    def incidents(self, namespace: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cp.kubectl_json(
            "get", "downtimeincidents", "-n", namespace or self.namespace
        )["items"]
        return items

    def opened_incidents(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The incidents, once each has its status (the CR is created, then its status written)."""
        items = self.incidents(namespace)
        return items if items and all("status" in item for item in items) else []

    def monitor_status(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        body = self.cp.kubectl_json("get", "healthmonitor", name, "-n", namespace or self.namespace)
        status: dict[str, Any] = body.get("status") or {}
        return status

    async def rows(self) -> list[asyncpg.Record]:
        try:
            conn = await asyncpg.connect(self.dsn)
        except (OSError, asyncpg.PostgresError):
            return []
        try:
            return list(await conn.fetch("SELECT * FROM downtime_incidents ORDER BY started_at"))
        except asyncpg.UndefinedTableError:
            return []
        finally:
            await conn.close()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def resolved_rows(env: Env) -> list[asyncpg.Record]:
    rows = await env.rows()
    return rows if rows and all(r["status"] == "resolved" for r in rows) else []
