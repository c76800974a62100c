"""The SQLite file's schema versions: an existing file is upgraded in place, nothing is lost."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.contract.stores import make_incident

from downtime_operator.adapters.sqlite import (
    SqliteIncidentQueries,
    SqliteIncidentStore,
    SqliteLogCaptures,
)
from downtime_operator.adapters.sqlite.kube_context import SqliteKubeContexts
from downtime_operator.adapters.sqlite.metric_captures import SqliteMetricCaptures
from downtime_operator.adapters.sqlite.schema import MIGRATIONS
from downtime_operator.domain.kube_context import ContextStage
from downtime_operator.domain.log_capture import CapturePlan
from downtime_operator.domain.prometheus import MetricQuery, MetricsPlan


def version_one_file(path: Path) -> None:
    """A file as the first release wrote it, holding one open incident."""
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO downtime_incidents (incident_id, started_at, detected_at,"
            " health_endpoint, severity, created_at, updated_at, monitor_namespace, monitor_name)"
            " VALUES ('6f1c1e0e-0000-4000-8000-000000000001',"
            " '2026-03-10T12:00:00.000000+00:00', '2026-03-10T12:00:20.000000+00:00',"
            " 'http://api/health', 'high', '2026-03-10T12:00:20.000000+00:00',"
            " '2026-03-10T12:00:20.000000+00:00', 'standalone', 'api')"
        )


async def test_a_version_one_file_is_upgraded_and_keeps_its_incident(tmp_path: Path) -> None:
    path = tmp_path / "downtime.db"
    version_one_file(path)
    store = await SqliteIncidentStore.open(path)
    try:
        [kept] = await store.get_ongoing_incidents()
        assert str(kept.incident_id) == "6f1c1e0e-0000-4000-8000-000000000001"
        captures = SqliteLogCaptures(store.database)
        await captures.schedule_log_capture(
            kept.incident_id,
            plan=CapturePlan(enabled=True, query='{app="api"}'),
            due_at=datetime(2026, 3, 10, 12, 0, 20, tzinfo=UTC),
        )
        stored = await captures.get_log_capture(kept.incident_id)
        assert stored is not None and stored.plan.query == '{app="api"}'
        await store.create_incident(make_incident("web"))
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("SELECT count(*) FROM downtime_audit_log").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM downtime_notifications").fetchone()[0] == 0


async def test_a_file_from_before_root_causes_keeps_its_incidents(tmp_path: Path) -> None:
    """Version 4 (the outbox's claim order) to 5 (root causes): the incident is kept and can
    be given a root cause."""
    path = tmp_path / "downtime.db"
    version_one_file(path)
    with sqlite3.connect(path) as conn:
        for statements in MIGRATIONS[1:4]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
    store = await SqliteIncidentStore.open(path)
    try:
        [kept] = await store.get_ongoing_incidents()
        assert (str(kept.incident_id), kept.root_cause) == (
            "6f1c1e0e-0000-4000-8000-000000000001",
            None,
        )
        queries = SqliteIncidentQueries(store.database)
        await queries.annotate_incident(kept.incident_id, root_cause="disk full", note=None)
        annotated = await store.get_incident(kept.incident_id)
        assert annotated is not None and annotated.root_cause == "disk full"
    finally:
        await store.close()


def file_at_version(path: Path, version: int) -> None:
    """A file as that version of the program left it, with version 1's ongoing incident."""
    version_one_file(path)
    with sqlite3.connect(path) as conn:
        for statements in MIGRATIONS[1:version]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")


async def test_a_file_from_before_playbooks_and_prometheus_keeps_its_incidents(
    tmp_path: Path,
) -> None:
    """Version 7 (before the playbook, escalations and Prometheus columns) to the newest: the
    incident is kept without them, and its Prometheus queries can be planned and recorded."""
    path = tmp_path / "downtime.db"
    file_at_version(path, 7)
    store = await SqliteIncidentStore.open(path)
    try:
        [kept] = await store.get_ongoing_incidents()
        assert kept.playbook is None
        details = await SqliteIncidentQueries(store.database).incident_details(kept.incident_id)
        assert details is not None and details["severity_changes"] is None
        captures = SqliteMetricCaptures(store.database)
        plan = MetricsPlan(
            queries=(MetricQuery(name="up", query="up"),), before=timedelta(0), after=timedelta(0)
        )
        await captures.schedule_metrics_capture(
            kept.incident_id, plan=plan, due_at=kept.detected_at
        )
        due = await captures.claim_due_metrics_capture(
            now=datetime.now(UTC), lease_until=datetime.now(UTC) + timedelta(minutes=1)
        )
        assert due is not None and due.plan == plan
        assert await captures.record_metrics_capture(
            kept.incident_id, capture={"queries": []}, due_at=due.due_at
        )
    finally:
        await store.close()


async def test_a_file_from_a_newer_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "downtime.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this program"):
        await SqliteIncidentStore.open(path)


async def test_a_file_from_before_kubernetes_context_keeps_its_incidents(tmp_path: Path) -> None:
    """Version 6 (before the context column) to the newest: the incident is kept, has no
    context, and gets one."""
    path = tmp_path / "downtime.db"
    file_at_version(path, 6)
    store = await SqliteIncidentStore.open(path)
    try:
        [kept] = await store.get_ongoing_incidents()
        queries = SqliteIncidentQueries(store.database)
        before = await queries.incident_details(kept.incident_id)
        assert before is not None and before["kube_context"] is None
        stored = await SqliteKubeContexts(store.database).record_kube_context(
            kept.incident_id, stage=ContextStage.DETECTION, snapshot={"target": "Service api"}
        )
        assert stored == {"detection": {"target": "Service api"}}
    finally:
        await store.close()


async def test_an_sqlite_library_too_old_for_the_store_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(RuntimeError, match=r"SQLite 3\.31\.1 is too old.*3\.33\.0 or newer"):
        await SqliteIncidentStore.open(tmp_path / "downtime.db")
