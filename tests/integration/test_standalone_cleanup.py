"""``downtime-operator cleanup`` as a real process, on the SQLite file and on PostgreSQL.

Only resolved incidents older than N days go, critical ones stay when asked, open ones always
stay, and each removed incident's captured-log file goes with its row.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.support.commands import open_command_store, run_command

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.domain.models import Incident, IncidentStatus, MonitorRef, Severity

Store = PostgresIncidentStore | SqliteIncidentStore
NOW = datetime.now(UTC)


def incident(name: str, *, age_days: int, severity: Severity, resolved: bool) -> Incident:
    started = NOW - timedelta(days=age_days, hours=1)
    return Incident(
        incident_id=uuid.uuid4(),
        monitor=MonitorRef(namespace="standalone", name=name),
        k8s_name=f"{name}-{started:%Y%m%d-%H%M%S}",
        health_endpoint=f"http://{name}.example/health",
        environment="production",
        started_at=started,
        detected_at=started,
        severity=severity,
        status=IncidentStatus.RESOLVED if resolved else IncidentStatus.ONGOING,
        ended_at=started + timedelta(hours=1) if resolved else None,
    )


FIXTURE = {
    "old": incident("old", age_days=200, severity=Severity.HIGH, resolved=True),
    "old-critical": incident(
        "old-critical", age_days=200, severity=Severity.CRITICAL, resolved=True
    ),
    "old-ongoing": incident("old-ongoing", age_days=300, severity=Severity.LOW, resolved=False),
    "recent": incident("recent", age_days=10, severity=Severity.HIGH, resolved=True),
}


@pytest.fixture
async def where(
    databases: DatabaseFactory | None, tmp_path: Path
) -> AsyncIterator[tuple[list[str], dict[str, str]]]:
    """The CLI arguments and environment that select one store, filled with ``FIXTURE``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SUPABASE_DB_URL", "KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env["LOG_FILES_DIR"] = str(tmp_path)
    store, args, env = await open_command_store(databases, tmp_path, env)
    try:
        for name, item in FIXTURE.items():
            await store.create_incident(item)
            log_file = tmp_path / f"{name}.json"
            log_file.write_text("[]")
            await store.update_incident(item.incident_id, {"logs_file_path": str(log_file)})
    finally:
        await store.close()
    yield args, env


def cleanup(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_command("cleanup", *args, env=env, cwd=cwd)


def remaining(tmp_path: Path) -> set[str]:
    return {name for name in FIXTURE if (tmp_path / f"{name}.json").exists()}


async def test_cleanup_removes_old_resolved_incidents_and_their_log_files(
    where: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    args, env = where

    kept_critical = cleanup([*args, "--days", "90", "--keep-critical"], env, tmp_path)
    assert kept_critical.returncode == 0, kept_critical.stderr
    assert "removed 1 resolved incident(s) older than 90 days (critical ones kept)" in (
        kept_critical.stdout
    )
    assert "and 1 log file(s)" in kept_critical.stdout
    assert remaining(tmp_path) == {"old-critical", "old-ongoing", "recent"}

    everything_old = cleanup([*args, "--days", "90"], env, tmp_path)
    assert everything_old.returncode == 0, everything_old.stderr
    assert "removed 1 resolved incident(s) older than 90 days and 1 log file(s)" in (
        everything_old.stdout
    )
    assert remaining(tmp_path) == {"old-ongoing", "recent"}

    store: Store
    if "DATABASE_URL" in env:
        store = await PostgresIncidentStore.connect(env["DATABASE_URL"], min_size=1, max_size=1)
    else:
        store = await SqliteIncidentStore.open(args[1])
    try:
        rows = {i.monitor.name for i in await store.get_recent_incidents()}
    finally:
        await store.close()
    assert rows == {"old-ongoing", "recent"}  # rows and files agree


def test_bad_days_exit_2(tmp_path: Path) -> None:
    result = cleanup(
        ["--days", "0", "--db-path", str(tmp_path / "x.db")], dict(os.environ), tmp_path
    )
    assert result.returncode == 2
    assert "downtime-operator cleanup: --days:" in result.stderr
